"""Bad input is a clean 4xx with a stable code on every endpoint, never a 500 (DESIGN §6):
JSON sent the wrong way, nested too deep, text the database cannot store, ids beyond their column."""

from __future__ import annotations

import json

import pytest

from mp_backend.ledger import service as ledger
from tests.web.conftest import bearer, error_of, member_ids

BIG = [2**31, 2**64]


@pytest.fixture
def admin(client, org):  # type: ignore[no-untyped-def]
    response = client.post("/admin/api/auth/login", json={"username": "admin", "password": "password-1"})
    assert response.status_code == 200
    return bearer(response.get_json()["token"])


# -- how JSON is sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_json_sent_without_a_json_content_type_is_told_to_send_json(client, org, content_type):
    # given a correct login body, sent as text/plain (or with no Content-Type, or as a form)
    body = json.dumps({"username": "admin", "password": "password-1"})
    headers = {"Content-Type": content_type} if content_type else {}
    # when it is posted
    response = client.post("/admin/api/auth/login", data=body, headers=headers)
    # then the caller is told to send JSON, not that a field is missing
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "json_required"
    assert "application/json" in error["message"]
    assert "Missing data" not in response.get_data(as_text=True)


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_400_not_a_recursion_error(client, depth):
    body = "[" * depth + "]" * depth
    response = client.post("/api/auth/wxa-login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "json_too_deep"


def test_nesting_up_to_the_limit_is_parsed(client):
    # 32 levels (the object itself is the first) reach the schema, which refuses the unknown field
    nested: object = 1
    for _ in range(31):
        nested = [nested]
    response = client.post("/api/auth/wxa-login", json={"code": nested})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe{}", b"", b"   ", b'{"code": NaN'])
def test_broken_json_is_400(client, body):
    response = client.post("/api/auth/wxa-login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_json", "invalid_request")


def test_a_body_over_max_content_length_is_413(client, app):
    body = json.dumps({"code": "x" * app.config["MAX_CONTENT_LENGTH"]})
    response = client.post("/api/auth/wxa-login", data=body, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


# -- text the database cannot store -----------------------------------------------------------------


LONE_SURROGATE = '"\\ud800"'  # JSON's escape for a lone UTF-16 surrogate: valid JSON, invalid text


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/auth/wxa-login", '{"code": %s}'),
        ("/admin/api/auth/login", '{"username": %s, "password": "password-1"}'),
        ("/admin/api/auth/login", '{"username": "admin", "password": "password-1", %s: 1}'),
    ],
)
def test_a_lone_surrogate_anywhere_is_400(client, org, path, template):
    response = client.post(path, data=template % LONE_SURROGATE, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert member_ids() == []


@pytest.mark.parametrize("field", ["request_id", "reason"])
def test_a_lone_surrogate_in_a_withdrawal_is_400(client, admin, make_member, field):
    member_id = make_member(1_000)
    body = {"amount_fen": 100, "reason": "退还本金", "request_id": "w-1"}
    raw = json.dumps(body).replace(json.dumps(body[field]), LONE_SURROGATE)
    response = client.post(
        f"/admin/api/members/{member_id}/withdrawals", data=raw, content_type="application/json", headers=admin
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert ledger.get_balance(member_id).principal_fen == 1_000


# -- ids beyond their column ------------------------------------------------------------------------


@pytest.mark.parametrize("big", BIG)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/api/members/{id}", None),
        ("POST", "/admin/api/members/{id}/status", {"status": "frozen", "reason": "挂失"}),
        ("POST", "/admin/api/members/{id}/withdrawals", {"amount_fen": 1, "reason": "退还", "request_id": "w"}),
        ("POST", "/admin/api/ledger/{id}/reversal", {"reason": "冲正", "request_id": "r"}),
    ],
)
def test_an_id_beyond_its_column_is_404(client, admin, method, path, body, big):
    if "ledger" in path and big < 2**63:
        big = 2**63  # ledger entries have BIGINT ids: 2**31 is a legal (absent) one, see below
    response = client.open(path.format(id=big), method=method, json=body, headers=admin)
    assert response.status_code == 404
    assert error_of(response)["code"] in ("not_found", "member_not_found", "entry_not_found")


@pytest.mark.parametrize("entry_id", [2**31, 2**63 - 1])
def test_a_reversal_of_a_missing_entry_is_entry_not_found(client, admin, entry_id):
    response = client.post(
        f"/admin/api/ledger/{entry_id}/reversal", json={"reason": "冲正", "request_id": "r"}, headers=admin
    )
    assert response.status_code == 404
    assert error_of(response)["code"] == "entry_not_found"


@pytest.mark.parametrize("store_id", [2**31, 0])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/api/members/{id}/withdrawals", {"amount_fen": 100, "reason": "退还本金", "request_id": "w-1"}),
        ("/admin/api/members/{id}/status", {"status": "frozen", "reason": "挂失"}),
    ],
)
def test_a_store_id_beyond_its_column_is_400(client, admin, make_member, path, body, store_id):
    member_id = make_member(1_000)
    response = client.post(path.format(id=member_id), json={**body, "store_id": store_id}, headers=admin)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert ledger.get_balance(member_id).principal_fen == 1_000


# -- messages ---------------------------------------------------------------------------------------


def test_a_blank_withdrawal_reason_is_reason_required_and_speaks_of_withdrawal(client, admin, make_member):
    member_id = make_member(1_000)
    response = client.post(
        f"/admin/api/members/{member_id}/withdrawals",
        json={"amount_fen": 100, "reason": "   ", "request_id": "w-1"},
        headers=admin,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "reason_required"
    assert "退款" not in error["message"]  # a withdrawal hands back principal; it is no refund
    assert ledger.get_balance(member_id).principal_fen == 1_000


def test_an_undeclared_method_is_405_with_allow(client):
    response = client.open("/api/me", method="TRACE")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
