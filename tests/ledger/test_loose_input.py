"""Inputs of the wrong Python type get an error code, never a TypeError or a silent coercion."""

import pytest

from mp_backend.errors import ValidationFailed
from mp_backend.ledger import service as ledger
from tests.conftest import count_rows


@pytest.mark.parametrize("operator", [123, 4.5])
def test_non_string_operator_is_refused_with_a_code(make_member, operator):
    # given a funded member
    member_id = make_member(1_000)
    rows = count_rows("ledger_entry")
    # when a debit names an operator that is not a string
    with pytest.raises(ValidationFailed) as refused:
        ledger.debit(member_id, 100, key="k", operator=operator)
    # then it is refused with invalid_operator and nothing is written
    assert refused.value.code == "invalid_operator"
    assert count_rows("ledger_entry") == rows
    assert ledger.get_balance(member_id).available_fen == 1_000
