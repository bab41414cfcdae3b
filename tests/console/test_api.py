"""The console API through HTTP: session, overview and charts, payments, members, management, audit,
and the refusals of issue #15's "bad input and security" (other stores, forged sessions, CSRF, ranges)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.org.models import Staff
from mp_backend.reports import summary
from tests.conftest import assert_ledger_ok
from tests.spending.conftest import payer  # noqa: F401
from tests.till.conftest import till  # noqa: F401
from tests.web.conftest import bearer, error_of

from .conftest import login


def entries() -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count(LedgerEntry.id))) or 0)


@pytest.fixture
def money(app, org, payer, till, client):  # type: ignore[no-untyped-def]  # noqa: F811
    """Member payments in sh01 and sh02, a till charge in sh01, recharges in sh01, sh02 and online."""
    stores = org["stores"]
    alice_token, alice = payer("alice", principal_fen=50_000)
    bob_token, bob = payer("bob", principal_fen=20_000)
    ledger.credit(alice, 10_000, key="c-sh01", operator="t", store_id=stores["sh01"])
    ledger.credit(bob, 7_000, key="c-sh02", operator="t", store_id=stores["sh02"])
    db.session.commit()
    client.post("/api/payments", json={"order_no": "A-1", "amount_fen": 1_000, "pay_password": "802413",
                                       "request_id": "a1", "store": "sh01"}, headers=bearer(alice_token))  # fmt: skip
    client.post("/api/payments", json={"order_no": "B-1", "amount_fen": 2_000, "pay_password": "802413",
                                       "request_id": "b1", "store": "sh02"}, headers=bearer(bob_token))  # fmt: skip
    from mp_backend.members.models import Member

    card = db.session.get(Member, alice).card_no
    charged = till.charge({"card_no": card}, 1_500, "POS-1", "sh01")
    assert charged.status_code == 201, charged.get_data(as_text=True)
    return {"alice": alice, "bob": bob}


# -- session ---------------------------------------------------------------------------------------


def test_me_names_role_stores_and_region(api, org):
    clerk = api("clerk", "GET", "/admin/api/me")
    assert (clerk["role"], [s["code"] for s in clerk["stores"]], clerk["region"]["code"]) == ("clerk", ["sh01"], "east")
    assert clerk["all_stores"] is False
    east = api("east", "GET", "/admin/api/me")
    assert [s["code"] for s in east["stores"]] == ["sh01", "sh02"]
    hq = api("admin", "GET", "/admin/api/me")
    assert hq["all_stores"] is True and len(hq["stores"]) == 3


def test_logout_revokes_this_token_only(client, org, tokens):
    other = login(client, "admin")
    assert client.post("/admin/api/auth/logout", headers=bearer(tokens["admin"])).status_code == 204
    gone = client.get("/admin/api/me", headers=bearer(tokens["admin"]))
    assert (gone.status_code, error_of(gone)["code"]) == (401, "token_revoked")
    assert client.get("/admin/api/me", headers=bearer(other)).status_code == 200


@pytest.mark.parametrize("token", ["forged.token.value", "", "eyJzdGFmZl9pZCI6MX0.ZZZZZZ.aaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_a_forged_session_is_401(client, org, token):
    response = client.get("/admin/api/overview", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert error_of(response)["code"] in ("token_invalid", "unauthorized")


def test_a_token_signed_with_another_key_or_expired_is_401(app, client, org):
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("not-our-key", salt="mp-backend/staff").dumps({"staff_id": org["staff"]["admin"]})
    response = client.get("/admin/api/me", headers=bearer(forged))
    assert (response.status_code, error_of(response)["code"]) == (401, "token_invalid")
    app.config["STAFF_TOKEN_MAX_AGE"] = -1
    old = login(client, "admin")
    response = client.get("/admin/api/me", headers=bearer(old))
    assert (response.status_code, error_of(response)["code"]) == (401, "token_expired")


def test_a_cross_site_form_post_without_the_bearer_header_is_401_and_changes_nothing(client, org, make_member):
    # given a member and the state of the ledger and the staff table
    member = make_member(phone="13900000009")
    db.session.commit()
    before_entries = entries()
    before_staff = db.session.scalar(select(func.count(Staff.id)))
    # when another site's form posts to state-changing console routes (the browser sends no Authorization)
    forms = {
        "/admin/api/offline-recharges": {"member": "13900000009", "store_code": "sh01", "method": "cash",
                                         "amount_fen": "100000", "receipt_no": "x"},
        "/admin/api/staff": {"username": "evil", "password": "password-9", "role": "hq_admin"},
        f"/admin/api/members/{member}/status": {"status": "frozen", "reason": "csrf"},
        "/admin/api/exports": {"kind": "members"},
    }  # fmt: skip
    for path, form in forms.items():
        response = client.post(path, data=form, headers={"Origin": "https://evil.example", "Cookie": "session=x"})
        # then each is refused as unauthenticated, before the body is even read
        assert response.status_code == 401, (path, response.get_data(as_text=True))
    assert entries() == before_entries
    assert db.session.scalar(select(func.count(Staff.id))) == before_staff
    assert_ledger_ok()


# -- overview -------------------------------------------------------------------------------------


def test_overview_for_hq_and_for_a_clerk(api, money, org):
    hq = api("admin", "GET", "/admin/api/overview")
    # balances: the wallets' sums (alice 50,000 + 10,000 - 1,000 - 1,500; bob 20,000 + 7,000 - 2,000)
    assert hq["balance"] == {"principal_fen": 82_500, "bonus_fen": 0, "held_fen": 0, "total_fen": 82_500,
                             "members_with_balance": 2}  # fmt: skip
    assert hq["today"]["recharge_fen"] == 87_000 and hq["today"]["consumption_fen"] == 4_500
    assert hq["cumulative"]["recharge_members"] == 2 and hq["points_liability"] == 0
    assert hq["as_of"].endswith("+08:00")
    codes = {s["store_code"]: s for s in hq["by_store"]}
    assert codes["sh01"]["consumption_today_fen"] == 2_500 and codes[None]["recharge_today_fen"] == 70_000
    clerk = api("clerk", "GET", "/admin/api/overview")
    # a clerk sees their store's flows, no merchant balance, no other store
    assert clerk["balance"] is None and clerk["points_liability"] is None
    assert [s["store_code"] for s in clerk["by_store"]] == ["sh01"]
    assert (clerk["today"]["recharge_fen"], clerk["today"]["consumption_fen"]) == (10_000, 2_500)
    # the same after the job folded everything
    summary.catch_up()
    assert api("clerk", "GET", "/admin/api/overview")["today"] == clerk["today"]
    assert api("admin", "GET", "/admin/api/overview")["balance"] == hq["balance"]


def test_overview_scope_filters(api, money):
    region = api("east", "GET", "/admin/api/overview?region=east")
    assert {s["store_code"] for s in region["by_store"]} == {"sh01", "sh02"}
    sh02 = api("admin", "GET", "/admin/api/overview?store=sh02")
    assert sh02["today"]["recharge_fen"] == 7_000 and sh02["balance"]["principal_fen"] == 82_500
    for who, query in (
        ("clerk", "store=sh02"),
        ("clerk", "region=east"),
        ("east", "region=north"),
        ("east", "store=bj01"),
    ):
        refused = api(who, "GET", f"/admin/api/overview?{query}", 403)
        assert refused["error"]["code"] == "store_out_of_scope"
    assert api("admin", "GET", "/admin/api/overview?store=nope", 404)["error"]["code"] == "store_not_found"


def test_daily_series_has_every_day(api, money):
    days = api("admin", "GET", "/admin/api/overview/daily?days=90")["items"]
    assert len(days) == 90 and all(d["recharge_fen"] == 0 for d in days[:-1])
    assert days[-1]["recharge_fen"] == 87_000 and days[-1]["consumption_fen"] == 4_500
    assert api("clerk", "GET", "/admin/api/overview/daily?days=30")["items"][-1]["recharge_fen"] == 10_000
    assert api("admin", "GET", "/admin/api/overview/daily?days=0", 400)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("from=2026-03-01&to=2026-01-01", 422, "invalid_range"),
        ("from=2020-01-01&to=2026-01-01", 422, "invalid_range"),
        ("from=0001-01-01&to=9999-12-31", 422, "invalid_range"),
        ("from=yesterday", 400, "invalid_date"),
    ],
)
def test_absurd_ranges_are_refused(api, org, query, status, code):
    for path in ("/admin/api/overview/by-source", "/admin/api/payments", "/admin/api/audit"):
        assert api("admin", "GET", f"{path}?{query}", status)["error"]["code"] == code
    if status == 422:
        created = query.replace("from=", "created_from=").replace("to=", "created_to=")
        created = created.replace("2026-03-01", "2026-03-01T00:00:00").replace("2026-01-01", "2026-01-01T00:00:00")
        if "0001" not in created:
            assert api("admin", "GET", f"/admin/api/ledger?{created}", 422)["error"]["code"] == "invalid_range"


def test_by_source(api, org):
    assert api("admin", "GET", "/admin/api/overview/by-source?from=2026-01-01&to=2026-12-31")["items"] == []


# -- records --------------------------------------------------------------------------------------


def test_payments_list_is_scoped_and_filtered(api, money):
    everything = api("admin", "GET", "/admin/api/payments")
    assert {(p["source"], p["order_no"], p["store_code"]) for p in everything["items"]} == {
        ("order", "A-1", "sh01"), ("order", "B-1", "sh02"), ("till", "POS-1", "sh01")}  # fmt: skip
    assert everything["total"] == 3 and everything["total_capped"] is False
    mine = api("clerk", "GET", "/admin/api/payments")
    assert {p["order_no"] for p in mine["items"]} == {"A-1", "POS-1"}
    page2 = api("admin", "GET", "/admin/api/payments?per_page=2&page=2")
    assert len(page2["items"]) == 1
    assert api("admin", "GET", "/admin/api/payments?source=till")["items"][0]["charge_id"] is not None
    # a clerk reaching another store: by filter 403, by id 404
    assert api("clerk", "GET", "/admin/api/payments?store=sh02", 403)["error"]["code"] == "store_out_of_scope"
    other = next(p for p in everything["items"] if p["order_no"] == "B-1")
    assert api("clerk", "GET", f"/admin/api/payments/{other['id']}", 404)["error"]["code"] == "payment_not_found"
    mine_one = next(p for p in everything["items"] if p["order_no"] == "A-1")
    assert api("clerk", "GET", f"/admin/api/payments/{mine_one['id']}")["order_no"] == "A-1"
    # and the existing lists refuse another store's filter too
    assert api("clerk", "GET", "/admin/api/ledger?store=sh02", 403)["error"]["code"] == "store_out_of_scope"
    assert api("clerk", "GET", "/admin/api/recharge-orders?store=sh02", 403)["error"]["code"] == "store_out_of_scope"


def test_members_search_and_history(api, money, make_member):
    make_member(name="张三丰", phone="13700001111")
    db.session.commit()
    found = api("admin", "GET", "/admin/api/members?q=张三")
    assert [m["name"] for m in found["items"]] == ["张三丰"] and found["items"][0]["phone"] == "13700001111"
    assert api("admin", "GET", "/admin/api/members?q=1370000")["items"][0]["name"] == "张三丰"
    assert api("admin", "GET", "/admin/api/members?q=%25")["items"] == []  # a LIKE wildcard is text
    clerk_view = api("clerk", "GET", "/admin/api/members?q=13700001111")["items"][0]
    assert clerk_view["phone"] == "137****1111"
    assert api("admin", "GET", "/admin/api/members")["total"] == 3
    # history: HQ sees every entry of alice; the sh02 clerk-like scope sees only its stores' entries
    alice = money["alice"]
    history = api("admin", "GET", f"/admin/api/members/{alice}/ledger")
    assert history["total"] == 4
    assert api("clerk", "GET", f"/admin/api/members/{alice}/ledger")["total"] == 3  # sh01 only
    assert api("admin", "GET", "/admin/api/members/999999/ledger", 404)["error"]["code"] == "member_not_found"
    assert api("admin", "GET", f"/admin/api/members/{alice}/points-history")["items"] == []
    # a clerk reading a member by id sees the phone masked too, as in the list and exports
    zhang = found["items"][0]["id"]
    assert api("admin", "GET", f"/admin/api/members/{zhang}")["phone"] == "13700001111"
    assert api("clerk", "GET", f"/admin/api/members/{zhang}")["phone"] == "137****1111"


def test_points_history_shows_store_staff_no_references(api, money):
    from mp_backend.ledger import points

    alice = money["alice"]
    points.award_points(alice, 50, key="offline:2:S2-RECEIPT", source="recharge", reference="offline:2:S2-RECEIPT")
    db.session.commit()
    assert api("admin", "GET", f"/admin/api/members/{alice}/points-history")["items"][0]["reference"]
    assert api("clerk", "GET", f"/admin/api/members/{alice}/points-history")["items"][0]["reference"] is None


@pytest.mark.parametrize(
    "query",
    ["created_from=1970-01-01T00:00:00", "created_to=9999-01-01T00:00:00", "paid_from=1970-01-01T00:00:00"],
)
def test_a_one_sided_absurd_bound_is_refused(api, org, query):
    for path in ("/admin/api/ledger", "/admin/api/recharge-orders"):
        if path == "/admin/api/ledger" and query.startswith("paid"):
            continue
        assert api("admin", "GET", f"{path}?{query}", 422)["error"]["code"] == "invalid_range"
    assert api("admin", "GET", "/admin/api/recharge-stats?from=1970-01-01", 422)["error"]["code"] == "invalid_range"


# -- management and audit --------------------------------------------------------------------------


def test_hq_manages_regions_stores_and_staff_and_the_audit_log_finds_it(api, client, org):
    api("admin", "POST", "/admin/api/regions", 201, json={"code": "south", "name": "华南区"})
    store = api(
        "admin", "POST", "/admin/api/stores", 201, json={"code": "gz01", "name": "广州一店", "region_code": "south"}
    )
    assert store["region_code"] == "south"
    api("admin", "PATCH", f"/admin/api/stores/{store['id']}", json={"name": "广州天河店"})
    assert api("admin", "POST", "/admin/api/stores", 409, json={"code": "gz01", "name": "x", "region_code": "south"})
    new = api("admin", "POST", "/admin/api/staff", 201,
              json={"username": "gzc", "password": "password-2", "role": "clerk", "store_code": "gz01"})  # fmt: skip
    assert [s["code"] for s in new["stores"]] == ["gz01"]
    token = login(client, "gzc", "password-2")
    # deactivating ends the person's sessions at once
    api("admin", "PATCH", f"/admin/api/staff/{new['id']}", json={"active": False})
    assert client.get("/admin/api/me", headers=bearer(token)).status_code == 401
    assert api("admin", "PATCH", f"/admin/api/staff/{org['staff']['admin']}", 409, json={"active": False})
    # only HQ manages
    for who in ("east", "clerk"):
        assert api(who, "POST", "/admin/api/regions", 403, json={"code": "x", "name": "x"})["error"]["code"] == (
            "permission_denied"
        )
        api(who, "GET", "/admin/api/staff", 403)
        api(who, "GET", "/admin/api/audit", 403)
    assert [s["code"] for s in api("clerk", "GET", "/admin/api/stores")["items"]] == ["sh01"]
    # the audit log finds what happened, by text, action and staff
    found = api("admin", "GET", "/admin/api/audit?q=gz01&action=store_create")
    assert [a["action"] for a in found["items"]] == ["store_create"]
    by_admin = api("admin", "GET", "/admin/api/audit?staff=admin")["items"]
    assert {"region_create", "store_create", "store_update", "staff_create", "staff_update"} <= {
        a["action"] for a in by_admin
    }
