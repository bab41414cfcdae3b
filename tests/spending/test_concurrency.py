"""Requests sent by 8 worker processes at once (each its own app and connection, as gunicorn runs them).
MariaDB only. The same payment request: one payment, one debit, every copy answered with it. A recharge
refund racing payments: it goes through and holds exactly the buckets it records."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config
from tests.spending.helpers import PASSWORD, balance

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

COPIES = 8


def _request(database_url: str, overrides: dict[str, Any], call: tuple, barrier: Any, results: Any) -> None:
    """One worker process (its own app and connection): one request, sent at the barrier."""
    from mp_backend import create_app

    method, path, body, token = call
    app = create_app(make_config(database_url, WECHAT_SANDBOX=False, **overrides))
    client = app.test_client()
    barrier.wait(timeout=60)
    response = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {token}"})
    results.put((path, response.status_code, response.get_json()))


def race(database_url: str, fake: Any, calls: list[tuple]) -> list[tuple[str, int, Any]]:
    """Send each (method, path, body, token) from a process of its own, all at once; (path, status, body)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(calls)), context.Queue()
    overrides = {"PUBLIC_BASE_URL": "https://member.example.com", **fake.config()}
    workers = [context.Process(target=_request, args=(database_url, overrides, c, barrier, results)) for c in calls]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return answers


def test_eight_processes_send_one_payment_request(client, fake, payer, database_url):
    token, _ = payer("racer", principal_fen=10_000)
    body = {"order_no": "SO-RACE", "amount_fen": 3_000, "pay_password": PASSWORD, "request_id": "race-1"}
    answers = [
        (status, answer)
        for _, status, answer in race(database_url, fake, [("POST", "/api/payments", body, token)] * COPIES)
    ]
    odd = [(status, body) for status, body in answers if status != 201 or body["status"] != "paid"]
    assert odd == []
    assert sum(not body["replayed"] for _, body in answers) == 1
    assert balance(client, token)["available_fen"] == 7_000
    assert count_rows("order_payment") == 1 and count_rows("ledger_entry") == 2
    assert_ledger_ok()


def test_recharge_refund_racing_payments_holds_exactly_what_it_records(
    client, fake, payer, rule, staff_token, database_url
):  # type: ignore[no-untyped-def]
    # given a member with 50 yuan of her own and 30 of gift money, and a recharge of 100 + 10 bonus
    from sqlalchemy import text

    from mp_backend.extensions import db
    from tests.spending.test_refunds import recharge

    token, _ = payer("rosa", principal_fen=5_000, bonus_fen=3_000)
    no = recharge(client, fake, token, rule["id"])
    # when the merchant refunds the recharge while she pays seven orders of 25 yuan from her balance
    calls = [("POST", f"/admin/api/recharge-orders/{no}/refund", {"reason": "race"}, staff_token)] + [
        (
            "POST",
            "/api/payments",
            {"order_no": f"SO-{i}", "amount_fen": 2_500, "pay_password": PASSWORD, "request_id": f"race-{i}"},
            token,
        )  # fmt: skip
        for i in range(COPIES - 1)
    ]
    answers = race(database_url, fake, calls)
    # then the refund went through (its amounts are decided on the locked wallet, so a payment in
    # between can never make its hold fail)
    [(refund_status, refund)] = [(status, body) for path, status, body in answers if "recharge-orders" in path]
    assert refund_status == 201, refund
    # (a payment may find the balance gone under it: refused with a clear code, nothing taken)
    paid = [(status, body) for path, status, body in answers if path == "/api/payments"]
    assert all(s == 201 or body["error"]["code"] == "insufficient_balance" for s, body in paid), paid
    assert refund["principal_fen"] <= 10_000 and refund["bonus_fen"] <= 1_000
    # and its hold took exactly the buckets it recorded
    db.session.rollback()
    held = db.session.execute(
        text(
            "SELECT e.principal_delta_fen, e.bonus_delta_fen, e.split_principal_fen FROM ledger_entry e "
            "JOIN recharge_refund r ON r.hold_entry_id = e.id"
        )
    ).one()
    assert tuple(held) == (-refund["principal_fen"], -refund["bonus_fen"], refund["principal_fen"])
    assert_ledger_ok()
