"""The open API sends each operation's answer as it was stored (``web.open._idempotent``), not through
its route's response schema: every answer must therefore have exactly what the schema documents."""

from __future__ import annotations

from mp_backend.web.open_schemas import CaptureOut, ChargeOut, HoldOut, RefundOut, VoidOut


def _as_documented(schema, response) -> dict:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert response.mimetype == "application/json"
    # the schema's dump keeps only documented fields, as the route would have sent before
    assert schema().dump(body) == body
    assert not schema().validate(body)
    return body  # type: ignore[no-any-return]


def test_every_mutating_answer_is_its_documented_schema(till, member):
    card = {"card_no": member["card_no"]}
    charge = _as_documented(ChargeOut, till.charge(card, 1_000, "SC-1", status=201))
    _as_documented(RefundOut, till.post("/open/api/v1/refunds", {"charge_id": charge["charge_id"], "amount_fen": 100},
                                        status=201))  # fmt: skip
    hold = _as_documented(HoldOut, till.hold(card, 500, "SC-2", status=201))
    _as_documented(CaptureOut, till.post(f"/open/api/v1/holds/{hold['hold_id']}/capture", {"amount_fen": 200},
                                         status=200))  # fmt: skip
    other = _as_documented(HoldOut, till.hold(card, 300, "SC-3", status=201))
    _as_documented(VoidOut, till.post(f"/open/api/v1/holds/{other['hold_id']}/void", status=200))


def test_a_replayed_answer_is_the_same_bytes(till, member):
    card = {"card_no": member["card_no"]}
    first = till.charge(card, 1_000, "SC-4", key="same-key", status=201)
    again = till.charge(card, 1_000, "SC-4", key="same-key", status=201)
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.get_data() == first.get_data()
