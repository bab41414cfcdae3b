"""Ten copies of one payment notification at the same moment, each in its own worker process (as
gunicorn runs them), each process with its own app and database connection: one credits, every copy
is acknowledged, and the ledger holds. MariaDB only (SQLite serialises writers on the file)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config
from tests.recharge.helpers import me, member_login, start_recharge

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

COPIES = 10


def _deliver(database_url: str, overrides: dict[str, Any], xml: str, barrier: Any, results: Any) -> None:
    from mp_backend import create_app

    app = create_app(make_config(database_url, WECHAT_SANDBOX=False, **overrides))
    client = app.test_client()
    barrier.wait(timeout=60)
    response = client.post("/wechat/pay/notify", data=xml.encode(), content_type="text/xml")
    results.put((response.status_code, response.get_data(as_text=True)))


def test_ten_concurrent_copies_in_processes_credit_once(client, fake, admin, database_url):
    rule = admin(
        "POST", "/admin/api/rules", {"name": "充100送10", "amount_fen": 10_000, "bonus_fen": 1_000, "points": 100}, 201
    )
    token, _ = member_login(client, "racer")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    xml = fake.payment_notification(no)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(COPIES), context.Queue()
    overrides = {"PUBLIC_BASE_URL": "https://member.example.com", **fake.config()}
    workers = [
        context.Process(target=_deliver, args=(database_url, overrides, xml, barrier, results)) for _ in range(COPIES)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in range(COPIES)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert all(status == 200 and "SUCCESS" in body for status, body in answers), answers
    assert me(client, token)["balance"]["available_fen"] == 11_000
    assert me(client, token)["points"] == 100
    assert count_rows("ledger_entry") == 2 and count_rows("points_entry") == 1
    assert count_rows("recharge_anomaly") == 0
    assert_ledger_ok()
