"""The same payment request sent by 8 worker processes at once (each its own app and connection, as
gunicorn runs them): one payment, one debit, every copy answered with it. MariaDB only."""

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


def _send(database_url: str, overrides: dict[str, Any], token: str, body: dict, barrier: Any, results: Any) -> None:
    from mp_backend import create_app

    app = create_app(make_config(database_url, WECHAT_SANDBOX=False, **overrides))
    client = app.test_client()
    barrier.wait(timeout=60)
    response = client.post("/api/payments", json=body, headers={"Authorization": f"Bearer {token}"})
    results.put((response.status_code, response.get_json()))


def test_eight_processes_send_one_payment_request(client, fake, payer, database_url):
    token, _ = payer("racer", principal_fen=10_000)
    body = {"order_no": "SO-RACE", "amount_fen": 3_000, "pay_password": PASSWORD, "request_id": "race-1"}
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(COPIES), context.Queue()
    overrides = {"PUBLIC_BASE_URL": "https://member.example.com", **fake.config()}
    workers = [
        context.Process(target=_send, args=(database_url, overrides, token, body, barrier, results))
        for _ in range(COPIES)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in range(COPIES)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    odd = [(status, body) for status, body in answers if status != 201 or body["status"] != "paid"]
    assert odd == []
    assert sum(not body["replayed"] for _, body in answers) == 1
    assert balance(client, token)["available_fen"] == 7_000
    assert count_rows("order_payment") == 1 and count_rows("ledger_entry") == 2
    assert_ledger_ok()
