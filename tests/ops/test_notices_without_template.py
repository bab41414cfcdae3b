"""Without a template (WECHAT_TEMPLATE_BALANCE_CHANGE unset) no notice can be sent: the posting's own
transaction records it as skipped, with the reason the job would give, and no job runs."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.notices import service as notices
from mp_backend.notices.models import BalanceNotice
from mp_backend.transaction import transactional
from tests.conftest import assert_ledger_ok

from .conftest import run_jobs
from .test_notices_records import with_mp_openid


@transactional
def _credit(member_id: int, key: str, fail: bool = False) -> ledger.Posting:
    posting = ledger.credit(member_id, 500, key=key, operator="test")
    notices.notify_after_commit(posting)
    if fail:
        raise RuntimeError("the payment failed after the credit")
    return posting


def rows() -> list[tuple[int, int, str, str | None, str | None, str, int]]:
    db.session.rollback()
    return [
        (n.entry_id, n.member_id, n.status, n.openid, n.template_id, n.detail, n.attempts)
        for n in db.session.scalars(select(BalanceNotice).order_by(BalanceNotice.id))
    ]


@pytest.mark.parametrize("app_overrides", [{"WECHAT_TEMPLATE_BALANCE_CHANGE": ""}])
def test_without_a_template_each_posting_is_recorded_skipped_in_its_own_transaction(app, fake, make_member):
    following, stranger = make_member(), make_member()
    with_mp_openid(app, following, "o_mp_carol")
    # when a credit asks for a notice and rolls back, then two credits commit
    with pytest.raises(RuntimeError):
        _credit(following, "nt-rolled-back", fail=True)
    first = _credit(following, "nt-1")
    second = _credit(stranger, "nt-2")
    # and a retry of the first credit replays it
    assert _credit(following, "nt-1").replayed
    run_jobs(app)
    # then each committed posting has one skipped row, with the reason the job gives; nothing was sent
    assert rows() == [
        (first.entry_id, following, "skipped", "o_mp_carol", None, notices.NO_TEMPLATE, 1),
        (second.entry_id, stranger, "skipped", None, None, notices.NO_OPENID, 1),
    ]
    assert fake.template_messages == []
    # and a job that runs for it all the same (queued before a deployment dropped its template) does nothing
    assert notices.send(first.entry_id) == "done"
    assert_ledger_ok()
