"""Without Redis a POST's nonce is written in its operation's own transaction (one commit): it is still
single use when the operation is refused, when the request never reaches it, and under races between
worker processes. (A deactivated client, cached by a worker or not: tests/till/test_clients_cli.py.)"""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import pytest

from mp_backend.extensions import db, jobs
from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config
from tests.till.conftest import balance_of
from tests.web.conftest import error_of

PATH = "/open/api/v1/charges"


def signed(till, body: Any, key: str = "n-1", nonce: str = "nonce-0123456789abcdef") -> tuple[bytes, dict[str, str]]:  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode()
    return data, {**till.headers("POST", PATH, data, nonce=nonce), "Idempotency-Key": key}


def nonce_rows(expected: int) -> bool:
    """Nonces are rows without Redis (TEST_REDIS_URL puts them in Redis: nothing to count here)."""
    return jobs.redis is not None or count_rows("open_nonce") == expected


def post(till, data: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return till.http.post(PATH, data=data, headers=headers, content_type="application/json")


def charge_body(member: dict[str, Any], amount_fen: int, order_no: str = "NT-1") -> dict[str, Any]:
    return {
        "member": {"card_no": member["card_no"]},
        "amount_fen": amount_fen,
        "order_no": order_no,
        "store_code": "sh01",
    }


def test_a_refused_charge_still_burns_its_nonce(till, member):
    # given a signed charge the balance cannot pay (refused, its transaction rolled back)
    data, headers = signed(till, charge_body(member, 50_000))
    first = post(till, data, headers)
    assert first.status_code == 409 and error_of(first)["code"] == "insufficient_balance"
    # when the same signed request is sent again as captured
    again = post(till, data, headers)
    # then the nonce is spent: 401, nothing moved
    assert again.status_code == 401 and error_of(again)["code"] == "nonce_reused"
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    assert nonce_rows(1)
    assert_ledger_ok()


@pytest.mark.parametrize(
    "change",
    [
        {"amount_fen": "lots"},  # refused by the schema before the view runs
        {"store_code": "nowhere"},  # refused by the service (404)
    ],
)
def test_a_request_refused_before_or_in_its_operation_burns_its_nonce(till, member, change):
    body = {**charge_body(member, 500), **change}
    data, headers = signed(till, body)
    first = post(till, data, headers)
    assert first.status_code in (400, 404), first.get_data(as_text=True)
    again = post(till, data, headers)
    assert again.status_code == 401 and error_of(again)["code"] == "nonce_reused"
    assert balance_of(member["id"]) == (30_000, 10_000, 0)


def test_a_missing_idempotency_key_burns_the_nonce(till, member):
    data, headers = signed(till, charge_body(member, 500))
    del headers["Idempotency-Key"]
    assert post(till, data, headers).status_code == 400
    again = post(till, data, headers)
    assert again.status_code == 401 and error_of(again)["code"] == "nonce_reused"


def test_a_replayed_key_with_a_new_nonce_is_answered_and_its_nonce_kept(till, member):
    # given a charge that went through
    data, headers = signed(till, charge_body(member, 500), key="k-same", nonce="nonce-first-0123456789")
    assert post(till, data, headers).status_code == 201
    # when the till retries it with the same key and a new nonce, then with that nonce once more
    data, retry = signed(till, charge_body(member, 500), key="k-same", nonce="nonce-retry-0123456789")
    replayed = post(till, data, retry)
    reused = post(till, data, retry)
    # then the first answer comes back once, and the retry's nonce is spent like any other
    assert replayed.status_code == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
    assert reused.status_code == 401 and error_of(reused)["code"] == "nonce_reused"
    assert balance_of(member["id"]) == (29_625, 9_875, 0)
    assert nonce_rows(2)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Races between worker processes (MariaDB: SQLite serialises writers)

TIMEOUT = 120


def _resend(
    database_url: str, redis_url: str | None, data: bytes, headers: dict[str, str], barrier: Any, results: Any
) -> None:
    """One worker process sends the same captured request at the barrier."""
    try:
        from mp_backend import create_app

        app = create_app(make_config(database_url, REDIS_URL=redis_url))
        http = app.test_client()
        http.get("/open/api/v1/members")  # warm: imports, first connection (refused unsigned)
        barrier.wait(timeout=TIMEOUT)
        response = http.post(PATH, data=data, headers=headers, content_type="application/json")
        results.put((response.status_code, (response.get_json() or {}).get("error", {}).get("code")))
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
        results.put((0, repr(error)))


def _race(
    database_url: str, redis_url: str | None, data: bytes, headers: dict[str, str], copies: int
) -> list[tuple[int, Any]]:
    db.session.commit()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(copies), ctx.Queue()
    processes = [
        ctx.Process(target=_resend, args=(database_url, redis_url, data, headers, barrier, results))
        for _ in range(copies)
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=TIMEOUT * 2) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return answers


@pytest.mark.mysql
@pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://...")
@pytest.mark.parametrize("amount_fen, answer", [(500, 201), (50_000, 409)])
@pytest.mark.parametrize("nonces", ["table", "redis"])
def test_one_nonce_sent_by_six_processes_at_once_is_used_once(till, member, database_url, amount_fen, answer, nonces):
    redis_url = os.environ.get("TEST_REDIS_URL") if nonces == "redis" else None
    if nonces == "redis" and not redis_url:
        pytest.skip("needs Redis: set TEST_REDIS_URL=redis://...")
    # given one signed request (a charge that succeeds, or one the balance refuses), captured
    data, headers = signed(till, charge_body(member, amount_fen, "NT-RACE"), key="race")
    # when six worker processes send it at the same moment
    answers = _race(database_url, redis_url, data, headers, 6)
    # then one is answered, every other copy is refused as a reused nonce
    assert sorted(status for status, _ in answers) == sorted([answer] + [401] * 5), answers
    assert [code for status, code in answers if status == 401] == ["nonce_reused"] * 5
    assert nonces == "redis" or count_rows("open_nonce") == 1
    expected = (29_625, 9_875, 0) if answer == 201 else (30_000, 10_000, 0)
    assert balance_of(member["id"]) == expected
    assert_ledger_ok()
