"""The merchant console's API (/admin/api): staff login, member detail and status, offline withdrawal
and reversal, each with its role and store scope, all through HTTP. The ledger's invariants are
checked after every scenario."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mp_backend.errors import MemberFrozen
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.org.models import AuditLog
from tests.conftest import assert_ledger_ok
from tests.web.conftest import bearer, error_of, member_row

USERS = {"admin": "admin", "east_manager": "east", "sh01_manager": "sh01m", "sh01_clerk": "sh01c"}


@pytest.fixture
def login(client, org):  # type: ignore[no-untyped-def]
    """login("admin") -> headers with that staff member's console token, obtained through HTTP."""

    def log_in(who: str) -> dict[str, str]:
        response = client.post("/admin/api/auth/login", json={"username": USERS[who], "password": "password-1"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return bearer(response.get_json()["token"])

    return log_in


def entries(member_id: int, kind: str | None = None) -> list[LedgerEntry]:
    db.session.rollback()
    query = select(LedgerEntry).where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id)
    if kind:
        query = query.where(LedgerEntry.kind == kind)
    return list(db.session.scalars(query))


def audit_actions() -> list[tuple[int | None, str, str]]:
    db.session.rollback()
    return [
        (a.staff_id, a.action, a.subject)
        for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))
        if a.action != "staff_create"
    ]


# ---------------------------------------------------------------------------------------------------
# Login


def test_staff_login_answers_a_token_that_identifies_them(client, org):
    # when the HQ admin logs in
    response = client.post("/admin/api/auth/login", json={"username": "admin", "password": "password-1"})
    # then a token comes back, and /admin/api/me says who it belongs to
    assert response.status_code == 200
    token = response.get_json()["token"]
    me = client.get("/admin/api/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.get_json()["username"] == "admin"
    assert me.get_json()["role"] == "hq_admin"
    assert me.get_json()["id"] == org["staff"]["admin"]
    assert "password_hash" not in me.get_json()


def test_store_staff_me_shows_their_store(client, org, login):
    me = client.get("/admin/api/me", headers=login("sh01_clerk")).get_json()
    assert (me["role"], me["store_id"]) == ("clerk", org["stores"]["sh01"])


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("admin", "password-2", id="bad-password"),
        pytest.param("nobody", "password-1", id="unknown-user"),
        pytest.param("admin", "password-1 ", id="trailing-space"),
    ],
)
def test_bad_login_is_401_with_one_message(client, org, username, password):
    # given the answer to a bad password, as the reference
    reference = error_of(client.post("/admin/api/auth/login", json={"username": "admin", "password": "wrong-pass"}))
    # when someone logs in with a wrong password or an unknown user
    response = client.post("/admin/api/auth/login", json={"username": username, "password": password})
    # then it is 401 invalid_credentials, with the same message (it does not tell which users exist)
    assert response.status_code == 401
    assert error_of(response) == reference
    assert reference["code"] == "invalid_credentials"
    assert "token" not in response.get_json()


@pytest.mark.parametrize("username", ["ADMIN", "Admin", "admin ", " admin"])
def test_username_is_matched_exactly_on_every_backend(client, org, username):
    # given staff "admin" (SQLite compares usernames byte for byte; the same code on MariaDB must too)
    # when someone logs in with a username that differs in case or spaces
    response = client.post("/admin/api/auth/login", json={"username": username, "password": "password-1"})
    # then it is not admin's account
    assert response.status_code == 401, f"{username!r} logged in as admin"
    assert error_of(response)["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"username": "admin"}, id="no-password"),
        pytest.param({"username": "admin", "password": ""}, id="empty-password"),
        pytest.param({"username": "admin", "password": 123456789}, id="number-password"),
        pytest.param({"username": ["admin"], "password": "password-1"}, id="list-username"),
    ],
)
def test_malformed_login_is_400(client, org, body):
    response = client.post("/admin/api/auth/login", json=body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
        pytest.param({"Authorization": "Basic YWRtaW46cGFzc3dvcmQtMQ=="}, id="basic-auth"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="garbage"),
    ],
)
def test_console_without_a_valid_token_is_401(client, org, make_member, headers):
    member_id = make_member(1_000)
    for method, path, body in [
        ("get", "/admin/api/me", None),
        ("get", f"/admin/api/members/{member_id}", None),
        ("post", f"/admin/api/members/{member_id}/status", {"status": "frozen", "reason": "x"}),
        ("post", f"/admin/api/members/{member_id}/withdrawals", {"amount_fen": 100, "reason": "x", "request_id": "a"}),
    ]:
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 401, (path, response.get_data(as_text=True))
        error_of(response)
    assert member_row(member_id).status == "active"
    assert entries(member_id, "withdrawal") == []


# ---------------------------------------------------------------------------------------------------
# Member detail and status


def test_member_detail(client, login, make_member):
    # given a member with money
    member_id = make_member(1_000, 230, name="张三")
    # when the admin looks them up
    response = client.get(f"/admin/api/members/{member_id}", headers=login("admin"))
    # then the detail shows the member and each bucket
    assert response.status_code == 200
    detail = response.get_json()
    assert (detail["id"], detail["name"], detail["status"]) == (member_id, "张三", "active")
    assert detail["balance"] == {"principal_fen": 1_000, "bonus_fen": 230, "held_fen": 0, "available_fen": 1_230}
    assert detail["card_no"] == member_row(member_id).card_no


def test_member_detail_of_an_unknown_member_is_404(client, login):
    response = client.get("/admin/api/members/999999", headers=login("admin"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "member_not_found"


def test_store_manager_freezes_a_member_then_the_card_cannot_pay(client, org, login, make_member):
    # given a member with money
    member_id = make_member(1_000)
    # when the store manager of sh01 freezes the card at their store
    response = client.post(
        f"/admin/api/members/{member_id}/status",
        json={"status": "frozen", "reason": "会员报告卡片丢失", "store_id": org["stores"]["sh01"]},
        headers=login("sh01_manager"),
    )
    # then the member is frozen, and the change is audited with the manager and the member
    assert response.status_code == 200
    assert response.get_json()["status"] == "frozen"
    assert member_row(member_id).status == "frozen"
    assert audit_actions() == [(org["staff"]["sh01_manager"], "member_frozen", f"member:{member_id}")]
    # and a debit is refused with member_frozen, taking nothing
    with pytest.raises(MemberFrozen) as refused:
        ledger.debit(member_id, 100, key="frozen-debit", operator="test")
    assert refused.value.code == "member_frozen"
    assert ledger.get_balance(member_id).principal_fen == 1_000
    assert entries(member_id, "debit") == []
    assert_ledger_ok()


def test_reactivated_member_can_pay_again(client, org, login, make_member):
    member_id = make_member(1_000)
    headers = login("admin")
    for status in ("frozen", "active"):
        response = client.post(
            f"/admin/api/members/{member_id}/status", json={"status": status, "reason": "核实后解冻"}, headers=headers
        )
        assert response.status_code == 200
    posting = ledger.debit(member_id, 100, key="after-unfreeze", operator="test")
    assert posting.balance.principal_fen == 900
    assert_ledger_ok()


def test_clerk_cannot_freeze(client, org, login, make_member):
    member_id = make_member(1_000)
    response = client.post(
        f"/admin/api/members/{member_id}/status",
        json={"status": "frozen", "reason": "试试", "store_id": org["stores"]["sh01"]},
        headers=login("sh01_clerk"),
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert member_row(member_id).status == "active"
    assert audit_actions() == []


@pytest.mark.parametrize("store", ["sh02", "bj01", None])
def test_store_manager_cannot_freeze_outside_their_store(client, org, login, make_member, store):
    member_id = make_member(1_000)
    body = {"status": "frozen", "reason": "越权"}
    if store:
        body["store_id"] = org["stores"][store]
    response = client.post(f"/admin/api/members/{member_id}/status", json=body, headers=login("sh01_manager"))
    assert response.status_code == 403
    assert error_of(response)["code"] == "store_out_of_scope"
    assert member_row(member_id).status == "active"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "deleted", "reason": "x"}, id="unknown-status"),
        pytest.param({"status": "frozen"}, id="no-reason"),
        pytest.param({"status": "frozen", "reason": ""}, id="empty-reason"),
        pytest.param({"status": "frozen", "reason": "x", "store_id": "sh01"}, id="store-code-not-id"),
    ],
)
def test_bad_status_change_is_400(client, org, login, make_member, body):
    member_id = make_member(1_000)
    response = client.post(f"/admin/api/members/{member_id}/status", json=body, headers=login("admin"))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert member_row(member_id).status == "active"


# ---------------------------------------------------------------------------------------------------
# Offline withdrawal


def withdraw(client, headers, member_id, **body):  # type: ignore[no-untyped-def]
    payload = {"amount_fen": 300, "reason": "会员退卡，现金退还", "request_id": "w-1", **body}
    return client.post(f"/admin/api/members/{member_id}/withdrawals", json=payload, headers=headers)


def test_offline_withdrawal_posts_once_and_replays(client, org, login, make_member):
    # given a member with 10.00 principal and 2.30 bonus
    member_id = make_member(1_000, 230)
    headers = login("sh01_manager")
    store = org["stores"]["sh01"]
    # when the store manager records 3.00 handed back in cash
    first = withdraw(client, headers, member_id, store_id=store)
    # then it is posted from principal only
    assert first.status_code == 201
    posting = first.get_json()
    assert posting["kind"] == "withdrawal"
    assert posting["member_id"] == member_id
    assert posting["amount_fen"] == 300
    assert (posting["principal_delta_fen"], posting["bonus_delta_fen"], posting["held_delta_fen"]) == (-300, 0, 0)
    assert posting["balance"] == {"principal_fen": 700, "bonus_fen": 230, "held_fen": 0, "available_fen": 930}
    assert posting["replayed"] is False
    # when the console retries the same request (a lost answer)
    again = withdraw(client, headers, member_id, store_id=store)
    # then it answers the same posting, marked as a replay, and nothing more is taken
    assert again.status_code in (200, 201)
    replay = again.get_json()
    assert replay["entry_id"] == posting["entry_id"]
    assert replay["replayed"] is True
    assert [e.id for e in entries(member_id, "withdrawal")] == [posting["entry_id"]]
    assert ledger.get_balance(member_id).principal_fen == 700
    # and the row and the audit say who did it, where, and why
    [row] = entries(member_id, "withdrawal")
    assert (row.store_id, row.operator, row.note) == (
        store,
        f"staff:{org['staff']['sh01_manager']}",
        "会员退卡，现金退还",
    )
    assert audit_actions() == [(org["staff"]["sh01_manager"], "withdraw_offline", f"member:{member_id}")]
    assert_ledger_ok()


def test_same_request_id_with_another_amount_is_a_conflict(client, org, login, make_member):
    member_id = make_member(1_000)
    headers = login("admin")
    assert withdraw(client, headers, member_id).status_code == 201
    response = withdraw(client, headers, member_id, amount_fen=400)
    assert response.status_code == 409
    assert error_of(response)["code"] == "idempotency_conflict"
    assert len(entries(member_id, "withdrawal")) == 1
    assert ledger.get_balance(member_id).principal_fen == 700
    assert_ledger_ok()


def test_withdrawal_cannot_pay_out_bonus(client, org, login, make_member):
    # given 10.00 principal and 2.30 bonus
    member_id = make_member(1_000, 230)
    # when 10.01 is recorded as handed back
    response = withdraw(client, login("admin"), member_id, amount_fen=1_001)
    # then it is refused: gift money is never paid out
    assert response.status_code == 409
    assert error_of(response)["code"] == "insufficient_balance"
    assert entries(member_id, "withdrawal") == []
    assert_ledger_ok()


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param(1.5, id="fraction"),
        pytest.param("100", id="string"),
        pytest.param(True, id="true"),
        pytest.param(0, id="zero"),
        pytest.param(-5, id="negative"),
        pytest.param(None, id="null"),
        pytest.param(100.0, id="float-whole"),
        pytest.param(100_000_001, id="above-max"),
        pytest.param(2**63, id="huge"),
    ],
)
def test_bad_withdrawal_amount_is_400_and_posts_nothing(client, org, login, make_member, amount):
    member_id = make_member(1_000)
    response = withdraw(client, login("admin"), member_id, amount_fen=amount)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert error_of(response)["code"] in ("invalid_request", "invalid_amount")
    assert entries(member_id, "withdrawal") == []
    assert ledger.get_balance(member_id).principal_fen == 1_000
    assert_ledger_ok()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"reason": ""}, id="empty-reason"),
        pytest.param({"reason": None}, id="null-reason"),
        pytest.param({"request_id": ""}, id="empty-request-id"),
        pytest.param({"request_id": "r" * 65}, id="long-request-id"),
    ],
)
def test_withdrawal_without_reason_or_request_id_is_400(client, org, login, make_member, body):
    member_id = make_member(1_000)
    response = withdraw(client, login("admin"), member_id, **body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert entries(member_id, "withdrawal") == []


def test_clerk_cannot_record_a_withdrawal(client, org, login, make_member):
    member_id = make_member(1_000)
    response = withdraw(client, login("sh01_clerk"), member_id, store_id=org["stores"]["sh01"])
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert entries(member_id, "withdrawal") == []
    assert audit_actions() == []
    assert_ledger_ok()


def test_region_manager_cannot_withdraw_at_a_store_of_another_region(client, org, login, make_member):
    # given the east region's manager, and a member at the till of bj01 (north region)
    member_id = make_member(1_000)
    # when the east manager records a withdrawal at bj01
    response = withdraw(client, login("east_manager"), member_id, store_id=org["stores"]["bj01"])
    # then it is outside their scope
    assert response.status_code == 403
    assert error_of(response)["code"] == "store_out_of_scope"
    assert entries(member_id, "withdrawal") == []
    assert_ledger_ok()


def test_region_manager_may_withdraw_at_a_store_of_their_region(client, org, login, make_member):
    member_id = make_member(1_000)
    response = withdraw(client, login("east_manager"), member_id, store_id=org["stores"]["sh02"])
    assert response.status_code == 201
    assert response.get_json()["balance"]["principal_fen"] == 700
    assert_ledger_ok()


def test_withdrawal_at_an_unknown_store_is_refused(client, org, login, make_member):
    member_id = make_member(1_000)
    response = withdraw(client, login("admin"), member_id, store_id=999_999)
    assert response.status_code in (400, 403, 404)
    error_of(response)
    assert entries(member_id, "withdrawal") == []


def test_withdrawal_for_an_unknown_member_is_404(client, org, login):
    response = withdraw(client, login("admin"), 999_999)
    assert response.status_code == 404
    assert error_of(response)["code"] == "member_not_found"


# ---------------------------------------------------------------------------------------------------
# Reversal


def reverse(client, headers, entry_id, **body):  # type: ignore[no-untyped-def]
    payload = {"reason": "误充值，冲正", "request_id": "r-1", **body}
    return client.post(f"/admin/api/ledger/{entry_id}/reversal", json=payload, headers=headers)


def test_reversal_of_a_credit(client, org, login, make_member):
    # given a member with 10.00, then a mistaken 5.00 credit
    member_id = make_member(1_000)
    credit = ledger.credit(member_id, 500, key="mistake", operator="test")
    headers = login("admin")
    # when the admin reverses it
    response = reverse(client, headers, credit.entry_id)
    # then a reversing row takes exactly that credit back
    assert response.status_code == 201
    posting = response.get_json()
    assert posting["kind"] == "reversal"
    assert posting["amount_fen"] == 500
    assert (posting["principal_delta_fen"], posting["bonus_delta_fen"]) == (-500, 0)
    assert posting["balance"]["principal_fen"] == 1_000
    assert posting["replayed"] is False
    # and a retry answers the same row, while a second reversal under a new request id is refused
    again = reverse(client, headers, credit.entry_id)
    assert (again.get_json()["entry_id"], again.get_json()["replayed"]) == (posting["entry_id"], True)
    twice = reverse(client, headers, credit.entry_id, request_id="r-2")
    assert twice.status_code == 409
    assert error_of(twice)["code"] == "already_reversed"
    assert len(entries(member_id, "reversal")) == 1
    assert ledger.get_balance(member_id).principal_fen == 1_000
    assert audit_actions() == [(org["staff"]["admin"], "reverse_entry", f"entry:{credit.entry_id}")]
    assert_ledger_ok()


def test_reversal_of_a_bonus_credit(client, org, login, make_member):
    member_id = make_member(1_000)
    gift = ledger.credit(member_id, 230, bucket="bonus", key="gift", operator="test")
    response = reverse(client, login("admin"), gift.entry_id)
    assert response.status_code == 201
    assert (response.get_json()["principal_delta_fen"], response.get_json()["bonus_delta_fen"]) == (0, -230)
    assert_ledger_ok()


def test_store_manager_cannot_reverse(client, org, login, make_member):
    member_id = make_member(1_000)
    credit = ledger.credit(member_id, 500, key="mistake", operator="test")
    response = reverse(client, login("sh01_manager"), credit.entry_id, store_id=org["stores"]["sh01"])
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert entries(member_id, "reversal") == []
    assert_ledger_ok()


def test_reversal_of_a_debit_is_refused(client, org, login, make_member):
    member_id = make_member(1_000)
    debit = ledger.debit(member_id, 100, key="sale", operator="test")
    response = reverse(client, login("admin"), debit.entry_id)
    assert response.status_code == 409
    assert error_of(response)["code"] == "entry_not_reversible"
    assert entries(member_id, "reversal") == []
    assert_ledger_ok()


def test_reversal_of_a_spent_credit_is_refused(client, org, login, make_member):
    member_id = make_member()
    credit = ledger.credit(member_id, 500, key="mistake", operator="test")
    ledger.debit(member_id, 400, key="spent", operator="test")
    response = reverse(client, login("admin"), credit.entry_id)
    assert response.status_code == 409
    assert error_of(response)["code"] == "insufficient_balance"
    assert_ledger_ok()


@pytest.mark.parametrize(
    "spell",
    [lambda n: str(n).translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"}), lambda n: f"000{n}",
     lambda n: f"+{n}", lambda n: f"{n}.0"],
    ids=["full-width", "leading-zeros", "plus", "decimal"],
)  # fmt: skip
def test_an_id_is_written_one_way_only(client, org, login, make_member, spell):
    # given a member, found at its plain id
    member_id = make_member()
    assert client.get(f"/admin/api/members/{member_id}", headers=login("admin")).status_code == 200
    # when the console asks for it spelled another way (full-width digits, leading zeros, ...)
    response = client.get(f"/admin/api/members/{spell(member_id)}", headers=login("admin"))
    # then it is not found: one resource, one address
    assert response.status_code == 404
