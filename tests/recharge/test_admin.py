"""The merchant's side: rules (scope, archive never delete, reorder), QR codes, coupon templates."""

from __future__ import annotations

from tests.conftest import assert_ledger_ok
from tests.recharge.helpers import bearer, error_of, member_login, start_recharge


def test_rules_create_edit_archive_reorder(client, fake, admin):
    a = admin("POST", "/admin/api/rules", {"name": "充100", "amount_fen": 10_000}, 201)
    b = admin("POST", "/admin/api/rules", {"name": "充200", "amount_fen": 20_000, "store_codes": ["sh01"]}, 201)
    assert a["code"] != b["code"] and a["link"].endswith("/r/" + a["code"])
    assert b["store_codes"] == ["sh01"] and not b["all_stores"]
    admin("POST", "/admin/api/rules/order", {"rule_ids": [b["id"], a["id"]]})
    assert [r["id"] for r in admin("GET", "/admin/api/rules")["items"]] == [b["id"], a["id"]]
    # a store-only rule is offered at its store only
    assert [r["id"] for r in client.get("/api/rules?store=sh02").get_json()["items"]] == [a["id"]]
    token, _ = member_login(client, "mia")
    refused = client.post("/api/recharges", json={"rule_id": b["id"], "store": "sh02"}, headers=bearer(token))
    assert error_of(refused)["code"] == "rule_not_in_store"
    start_recharge(client, token, rule_id=b["id"], store="sh01")
    # archive keeps the rule (it has an order) and hides it from members
    archived = admin("POST", f"/admin/api/rules/{b['id']}/archive")
    assert archived["status"] == "archived" and archived["order_count"] == 1
    assert admin("PATCH", f"/admin/api/rules/{b['id']}", {"name": "x"}, 409)["error"]["code"] == "rule_archived"
    assert client.delete(f"/admin/api/rules/{b['id']}").status_code == 405
    assert admin("POST", "/admin/api/rules", {"name": "零", "amount_fen": 0}, 400)["error"]["code"] == "invalid_request"
    assert_ledger_ok()


def test_only_hq_and_region_managers_manage_rules(client, org):
    def token(username: str) -> str:
        answer = client.post("/admin/api/auth/login", json={"username": username, "password": "password-1"})
        return answer.get_json()["token"]

    clerk = client.post("/admin/api/rules", json={"name": "x", "amount_fen": 100}, headers=bearer(token("sh01c")))
    assert (clerk.status_code, error_of(clerk)["code"]) == (403, "permission_denied")
    region = token("east")
    everywhere = client.post("/admin/api/rules", json={"name": "x", "amount_fen": 100}, headers=bearer(region))
    assert error_of(everywhere)["code"] == "store_out_of_scope"
    other = client.post(
        "/admin/api/rules", json={"name": "x", "amount_fen": 100, "store_codes": ["bj01"]}, headers=bearer(region)
    )
    assert error_of(other)["code"] == "store_out_of_scope"
    own = client.post(
        "/admin/api/rules",
        json={"name": "x", "amount_fen": 100, "store_codes": ["sh01", "sh02"]},
        headers=bearer(region),
    )
    assert own.status_code == 201
    assert client.get("/admin/api/rules").status_code == 401


def test_qr_codes_png_and_svg_with_a_download_name(client, admin):
    rule = admin("POST", "/admin/api/rules", {"name": "充100送10", "amount_fen": 10_000}, 201)
    png = admin("GET", f"/admin/api/rules/{rule['id']}/qrcode.png?size=4&margin=2&src=staff7")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    disposition = png.headers["Content-Disposition"]
    assert "filename*=UTF-8''%E5%85%85100%E9%80%8110.png" in disposition
    svg = admin("GET", f"/admin/api/rules/{rule['id']}/qrcode.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    bigger = admin("GET", f"/admin/api/rules/{rule['id']}/qrcode.png?size=8&margin=2&src=staff7")
    assert len(bigger.data) > len(png.data)
    home = admin("GET", "/admin/api/recharge-home/qrcode.png")
    assert home.data.startswith(b"\x89PNG")
    assert admin("GET", f"/admin/api/rules/{rule['id']}/qrcode.png?size=0", status=400)["error"]["code"]
    assert admin("GET", "/admin/api/rules/999/qrcode.svg", status=404)["error"]["code"] == "rule_not_found"


def test_coupon_templates_crud_and_bad_input(admin):
    made = admin(
        "POST", "/admin/api/coupon-templates", {"name": "九折券", "kind": "discount", "value": 90, "stock": 5}, 201
    )
    changed = admin("PATCH", f"/admin/api/coupon-templates/{made['id']}", {"stock": 7})
    assert changed["stock"] == 7
    bad = admin("POST", "/admin/api/coupon-templates", {"name": "x", "kind": "discount", "value": 120}, 400)
    assert bad["error"]["code"] == "invalid_coupon_value"
    bad = admin(
        "POST", "/admin/api/coupon-templates", {"name": "x", "kind": "amount_off", "value": 1, "stock": -1}, 400
    )
    assert bad["error"]["code"] == "invalid_request"
    assert [t["name"] for t in admin("GET", "/admin/api/coupon-templates")["items"]] == ["九折券"]


def test_editing_a_rule_to_name_a_card_or_coupon_that_does_not_exist_is_404_and_changes_nothing(admin):
    # given a rule (found by the second review: this was a 500, the bad foreign key flushed by a lookup)
    rule = admin("POST", "/admin/api/rules", {"name": "充100", "amount_fen": 10_000}, 201)
    # when it is edited to give a card type or a coupon that does not exist
    card = admin("PATCH", f"/admin/api/rules/{rule['id']}", {"card_type_id": 999}, 404)
    coupon = admin("PATCH", f"/admin/api/rules/{rule['id']}", {"coupon_template_id": 999, "coupon_qty": 1}, 404)
    # then each is a clear not-found, and the rule is as it was
    assert card["error"]["code"] == "card_type_not_found"
    assert coupon["error"]["code"] == "coupon_template_not_found"
    again = admin("GET", f"/admin/api/rules/{rule['id']}")
    assert again["card"] is None and again["coupon"] is None


def test_rule_ids_beyond_the_column_are_404(admin):
    for path in ("/admin/api/rules/9223372036854775808", "/admin/api/rules/2147483648/archive"):
        method = "POST" if path.endswith("archive") else "GET"
        admin(method, path, None, 404)
