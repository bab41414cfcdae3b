"""The open API under real concurrency on MariaDB, each till in its own worker PROCESS (as gunicorn
runs the app), all starting at one barrier: 50 charges on one member with retries of some keys sent at
the same moment, and tills racing for one payment code. SQLite serialises writers: MariaDB only."""

from __future__ import annotations

import multiprocessing
import random
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import text

from mp_backend.extensions import db
from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config
from tests.till.conftest import balance_of, new_till

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

PROCESSES = 8
TIMEOUT = 120


def _till_process(database_url: str, client_id: str, secret: str, calls: list, barrier: Any, results: Any) -> None:
    """One till: its own app, engine and connections; sends its calls one after the other after the barrier."""
    import json
    import secrets
    import time

    from mp_backend import create_app
    from mp_backend.clients.service import signature

    answers = []
    try:
        app = create_app(make_config(database_url))
        http = app.test_client()
        http.get("/open/api/v1/members")  # warm: imports, first connection (refused unsigned)
        barrier.wait(timeout=TIMEOUT)
        for path, body, key in calls:
            data = json.dumps(body).encode()
            ts, nonce = str(int(time.time())), secrets.token_hex(10)
            headers = {
                "X-Client-Id": client_id,
                "X-Timestamp": ts,
                "X-Nonce": nonce,
                "X-Signature": signature(secret, "POST", path, ts, nonce, data),
                "Idempotency-Key": key,
            }
            response = http.post(path, data=data, headers=headers, content_type="application/json")
            answers.append((key, response.status_code, response.get_json()))
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
        answers.append(("crash", 0, repr(error)))
    results.put(answers)


def race(database_url: str, till: Any, calls_per_process: list[list]) -> list[tuple[str, int, Any]]:
    db.session.commit()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(calls_per_process)), ctx.Queue()
    processes = [
        ctx.Process(target=_till_process, args=(database_url, till.client_id, till.secret, calls, barrier, results))
        for calls in calls_per_process
    ]
    for process in processes:
        process.start()
    answers = [answer for _ in processes for answer in results.get(timeout=TIMEOUT * 2)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    crashes = [a for a in answers if a[0] == "crash"]
    assert not crashes, crashes
    return answers


def test_fifty_concurrent_charges_on_one_member_with_retries(client, org, make_member, database_url):
    # given a member who can pay about four fifths of 50 charges, and 50 charges of 3.00-15.00,
    # 17 of them sent twice at the same moment by two different processes (a till retrying)
    till = new_till(client)
    rng = random.Random(13)
    amounts = {f"key-{i}": rng.randint(300, 1_500) for i in range(50)}
    funding_principal, funding_bonus = 24_000, 8_000
    assert sum(amounts.values()) * 0.7 < funding_principal + funding_bonus < sum(amounts.values())
    member_id = make_member(funding_principal, funding_bonus)
    from mp_backend.members.models import Member

    card_no = db.session.get(Member, member_id).card_no
    calls: list[list] = [[] for _ in range(PROCESSES)]
    for i, (key, amount) in enumerate(amounts.items()):
        body = {"member": {"card_no": card_no}, "amount_fen": amount, "order_no": f"ORD-{i}", "store_code": "sh01"}
        calls[i % PROCESSES].append(("/open/api/v1/charges", body, key))
        if i % 3 == 0:
            calls[(i + 1) % PROCESSES].append(("/open/api/v1/charges", body, key))
    for process_calls in calls:
        random.Random(len(process_calls)).shuffle(process_calls)
    # when 8 processes send them all at once
    answers = race(database_url, till, calls)
    # then every copy of a key got the same answer: a charge, or a refusal for the balance
    by_key: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for key, status, body in answers:
        by_key[key].append((status, body))
    assert len(answers) == 50 + 17 and len(by_key) == 50
    charged = {}
    for key, copies in by_key.items():
        statuses = {status for status, _ in copies}
        assert len(statuses) == 1, (key, copies)
        status, body = copies[0]
        if status == 201:
            assert all(copy_body == body for _, copy_body in copies), (key, copies)
            assert body["amount_fen"] == amounts[key]
            charged[key] = body
        else:
            assert (status, body["error"]["code"]) == (409, "insufficient_balance"), (key, copies)
    assert charged and len(charged) < 50
    # and each charged key is one ledger row and one till charge, and the balance is exact
    db.session.rollback()
    keys = db.session.execute(text("SELECT idempotency_key FROM ledger_entry WHERE kind = 'debit'")).scalars().all()
    assert sorted(keys) == sorted(f"open:{_client_pk(till)}:{key}" for key in charged)
    assert count_rows("till_charge") == len(charged)
    principal, bonus, held = balance_of(member_id)
    assert principal + bonus == funding_principal + funding_bonus - sum(amounts[k] for k in charged)
    assert principal - funding_principal == -sum(b["principal_fen"] for b in charged.values())
    assert held == 0
    assert principal + bonus < 1_500  # it ran dry: the refusals were real
    assert_ledger_ok()


def _client_pk(till: Any) -> int:
    return db.session.execute(
        text("SELECT id FROM open_client WHERE client_id = :c"), {"c": till.client_id}
    ).scalar_one()


def test_tills_racing_for_one_payment_code_charge_once(client, org, wxa_login, database_url):
    from mp_backend.ledger import service as ledger
    from tests.web.conftest import bearer

    # given a member with 100.00 and a till
    login = wxa_login("racer")
    member_id = login["member"]["id"]
    ledger.credit(member_id, 10_000, key="fund", operator="test")
    till = new_till(client)
    for round_ in range(3):
        # when the member shows a code and 8 tills charge it at the same moment (different orders)
        code = client.get("/api/me/pay-code", headers=bearer(login["token"])).get_json()["code"]
        calls = [
            [
                (
                    "/open/api/v1/charges",
                    {
                        "member": {"pay_code": code},
                        "amount_fen": 700,
                        "order_no": f"R{round_}-{n}",
                        "store_code": "sh01",
                    },
                    f"r{round_}-{n}",
                )
            ]
            for n in range(PROCESSES)
        ]
        answers = race(database_url, till, calls)
        # then exactly one charged, and each other till is told the code was used
        statuses = sorted((status, body.get("error", {}).get("code")) for _, status, body in answers)
        assert statuses == [(201, None)] + [(409, "pay_code_used")] * (PROCESSES - 1), statuses
    assert sum(balance_of(member_id)) == 10_000 - 3 * 700
    assert count_rows("till_charge") == 3
    assert_ledger_ok()
