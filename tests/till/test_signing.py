"""Every open-API request is signed (DESIGN.md section 5); each way of getting it wrong is a 401 with a
stable code, is logged without the secret, and changes nothing."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.conftest import assert_ledger_ok, count_rows
from tests.till.conftest import balance_of, new_till
from tests.web.conftest import error_of

PATH = "/open/api/v1/charges"


def charge_body(member, order_no="S-1"):  # type: ignore[no-untyped-def]
    return {"member": {"card_no": member["card_no"]}, "amount_fen": 500, "order_no": order_no, "store_code": "sh01"}


def send(till, body, headers, path=PATH):  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode()
    return till.http.post(
        path, data=data, headers={**headers, "Idempotency-Key": "sig-1"}, content_type="application/json"
    )


def test_a_good_signature_is_accepted(till, member):
    # given a till's correctly signed request
    data = json.dumps(charge_body(member)).encode()
    headers = till.headers("POST", PATH, data)
    # when it is sent
    response = send(till, charge_body(member), headers)
    # then the charge is made
    assert response.status_code == 201, response.get_data(as_text=True)
    assert balance_of(member["id"]) == (29_625, 9_875, 0)


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("signature", "signature_invalid"),
        ("uppercase", "signature_invalid"),
        ("body", "signature_invalid"),
        ("path", "signature_invalid"),
        ("method", "signature_invalid"),
        ("stale", "timestamp_expired"),
        ("future", "timestamp_expired"),
        ("timestamp_text", "timestamp_invalid"),
        ("short_nonce", "nonce_invalid"),
        ("long_nonce", "nonce_invalid"),
        ("unknown_client", "client_unknown"),
        ("other_clients_secret", "signature_invalid"),
    ],
)
def test_a_bad_request_is_refused_and_changes_nothing(till, member, client, tamper, code, caplog):
    body = charge_body(member)
    data = json.dumps(body).encode()
    method, path, timestamp, nonce = "POST", PATH, int(time.time()), "n" * 20
    if tamper == "stale":
        timestamp -= 301
    elif tamper == "future":
        timestamp += 301
    elif tamper == "short_nonce":
        nonce = "n" * 15
    elif tamper == "long_nonce":
        nonce = "n" * 65
    elif tamper == "path":
        path = "/open/api/v1/holds"
    elif tamper == "method":
        method = "PUT"
    headers = till.headers(method, path, data, timestamp=timestamp, nonce=nonce)
    if tamper == "signature":
        headers["X-Signature"] = headers["X-Signature"][:-1] + ("0" if headers["X-Signature"][-1] != "0" else "1")
    elif tamper == "uppercase":
        headers["X-Signature"] = headers["X-Signature"].upper()
    elif tamper == "body":
        body = {**body, "amount_fen": 50_000}
    elif tamper == "timestamp_text":
        headers["X-Timestamp"] = "soon"
    elif tamper == "unknown_client":
        headers["X-Client-Id"] = "tc_nobody"
    elif tamper == "other_clients_secret":
        other = new_till(client, "另一台")
        headers = other.headers("POST", PATH, data)
        headers["X-Client-Id"] = till.client_id
    rows = count_rows("ledger_entry")
    # when the request is sent
    with caplog.at_level(logging.WARNING, logger="mp_backend.clients.service"):
        response = send(till, body, headers)
    # then it is refused with the stable code, and nothing moved
    assert response.status_code == 401, response.get_data(as_text=True)
    assert error_of(response)["code"] == code
    assert count_rows("ledger_entry") == rows
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    # and the refusal is logged, without the secret or the signature
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert code in logged
    assert till.secret not in logged and headers["X-Signature"] not in logged


@pytest.mark.parametrize("missing", ["X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature"])
def test_a_missing_header_is_refused(till, member, missing):
    body = charge_body(member)
    headers = till.headers("POST", PATH, json.dumps(body).encode())
    del headers[missing]
    response = send(till, body, headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "signature_missing" and missing in error["message"]


def test_a_reused_nonce_is_refused_even_for_a_new_request(till, member):
    # given a request that went through with a nonce
    first = charge_body(member, "N-1")
    data = json.dumps(first).encode()
    headers = till.headers("POST", PATH, data, nonce="same-nonce-0123456789")
    assert send(till, first, headers).status_code == 201
    # when the same request is replayed as captured, and a new request is signed with the same nonce
    replay = send(till, first, headers)
    second = charge_body(member, "N-2")
    again = send(till, second, till.headers("POST", PATH, json.dumps(second).encode(), nonce="same-nonce-0123456789"))
    # then both are refused, and only the first charge happened
    for response in (replay, again):
        assert response.status_code == 401
        assert error_of(response)["code"] == "nonce_reused"
    assert balance_of(member["id"]) == (29_625, 9_875, 0)
    assert_ledger_ok()


def test_a_get_is_signed_over_its_query(till, member):
    # given a lookup signed for one phone number
    path = f"/open/api/v1/members?phone={member['phone']}"
    headers = till.headers("GET", path, b"")
    # when the query is changed after signing
    response = till.http.get("/open/api/v1/members?phone=13900000000", headers=headers)
    # then it is refused; the signed query is answered
    assert response.status_code == 401 and error_of(response)["code"] == "signature_invalid"
    ok = till.http.get(path, headers=till.headers("GET", path, b""))
    assert ok.status_code == 200 and ok.get_json()["member_id"] == member["id"]


def test_the_signature_is_checked_before_the_body(till):
    # given a body that would fail validation, unsigned
    response = till.http.post(PATH, json={"amount_fen": "lots"})
    # then the answer is the missing signature, not the body's problems
    assert response.status_code == 401 and error_of(response)["code"] == "signature_missing"


def test_the_secret_is_not_stored_in_plain_text(till):
    from sqlalchemy import text

    from mp_backend.extensions import db

    stored = db.session.execute(text("SELECT secret_ciphertext FROM open_client")).scalar_one()
    assert till.secret not in stored


def test_a_client_from_another_secret_key_is_unknown(app, client, org, member):
    # given a client whose secret was encrypted under a different SECRET_KEY (a rotated key)
    till = new_till(client)
    app.config["SECRET_KEY"] = "rotated"
    body = charge_body(member)
    # when it signs a request
    response = send(till, body, till.headers("POST", PATH, json.dumps(body).encode()))
    # then it is refused as unknown (it must be created again), without a 500
    assert response.status_code == 401 and error_of(response)["code"] == "client_unknown"
