"""Mini-program codes of recharge rules (wxacode.getUnlimited through wechatpy), made by the fake WeChat
and read back with zxing-cpp; the scene they carry, resolved by the members' API."""

from __future__ import annotations

import pytest

from tests.qr import decode_qr
from tests.recharge.helpers import bearer, error_of, member_login, order_row, start_recharge

PATH = "wxa/getwxacodeunlimit"
PAGE = "pages/recharge/index"


def png_size(image: bytes) -> tuple[int, int]:
    import png

    width, height, _rows, _info = png.Reader(bytes=image).read()
    return width, height


def staff_token(client, username: str) -> str:  # type: ignore[no-untyped-def]
    answer = client.post("/admin/api/auth/login", json={"username": username, "password": "password-1"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["token"]  # type: ignore[no-any-return]


def test_a_rules_code_opens_the_recharge_page_with_its_scene_and_is_made_once(client, fake, admin, rule):
    # given an active rule
    # when HQ downloads its mini-program code for a poster
    made = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src=poster7")
    # then it is the image WeChat drew, for the recharge page, with the rule's code and the source tag
    scene = f"{rule['code']}*poster7"
    assert made.mimetype == "image/png" and made.headers["X-Wxacode-Scene"] == scene
    assert decode_qr(made.data) == [f"{PAGE}?scene={scene}"]
    assert (
        "filename*=UTF-8''%E5%85%85100%E9%80%8110_%E5%B0%8F%E7%A8%8B%E5%BA%8F%E7%A0%81.png"
        in (made.headers["Content-Disposition"])
    )
    (call,) = fake.calls_to(PATH)
    assert call.json["scene"] == scene and call.json["page"] == PAGE and call.json["width"] == 430
    # and the same code again is served as made, without asking WeChat again
    again = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src=poster7")
    assert again.data == made.data and len(fake.calls_to(PATH)) == 1
    # while another width is another image
    wider = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src=poster7&width=860")
    assert len(fake.calls_to(PATH)) == 2 and fake.calls_to(PATH)[1].json["width"] == 860
    assert png_size(wider.data)[0] > png_size(made.data)[0] and png_size(wider.data)[0] <= 860
    assert decode_qr(wider.data) == [f"{PAGE}?scene={scene}"]


def test_the_mini_program_turns_the_scene_into_the_rule_and_the_order_keeps_the_source(client, fake, admin, rule):
    # given a rule's code for store sh01's counter
    scene = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src=counter&store=sh01").headers["X-Wxacode-Scene"]
    assert scene == f"{rule['code']}*counter*sh01"
    # when a member scans it and the mini program asks what the scene names
    answer = client.get("/api/rules", query_string={"scene": scene})
    # then it is that rule, and the scene's fields to send with the recharge
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert [r["id"] for r in body["items"]] == [rule["id"]]
    assert body["scene"] == {"code": rule["code"], "src": "counter", "store": "sh01"}
    token, _ = member_login(client, "scanner")
    started = start_recharge(client, token, rule_id=rule["id"], src=body["scene"]["src"], store="sh01")
    order = order_row(started["out_trade_no"])
    assert order.src == "counter" and order.store_id is not None


def test_the_recharge_homes_code_lists_every_active_rule(client, fake, admin, rule):
    other = admin("POST", "/admin/api/rules", {"name": "充200", "amount_fen": 20_000}, 201)
    made = admin("GET", "/admin/api/recharge-home/wxacode?src=hall&width=280")
    assert made.headers["X-Wxacode-Scene"] == "*hall"
    assert decode_qr(made.data) == [f"{PAGE}?scene=*hall"]
    body = client.get("/api/rules", query_string={"scene": "*hall"}).get_json()
    assert {r["id"] for r in body["items"]} == {rule["id"], other["id"]}
    assert body["scene"] == {"code": None, "src": "hall", "store": None}
    plain = admin("GET", "/admin/api/recharge-home/wxacode")
    assert plain.headers["X-Wxacode-Scene"] == "*" and decode_qr(plain.data) == [f"{PAGE}?scene=*"]


def test_staff_make_codes_within_their_scope_only(client, fake, admin, org):
    sh02_only = admin("POST", "/admin/api/rules", {"name": "二店", "amount_fen": 100, "store_codes": ["sh02"]}, 201)
    bj01_only = admin("POST", "/admin/api/rules", {"name": "北京", "amount_fen": 100, "store_codes": ["bj01"]}, 201)
    everywhere = admin("POST", "/admin/api/rules", {"name": "全部", "amount_fen": 100}, 201)
    clerk, east = staff_token(client, "sh01c"), staff_token(client, "east")

    def code(token: str, path: str) -> tuple[int, str | None]:
        response = client.get(path, headers=bearer(token))
        return response.status_code, error_of(response)["code"] if response.status_code != 200 else None

    # a clerk of sh01: the rules offered everywhere, for their own store or none
    assert code(clerk, f"/admin/api/rules/{everywhere['id']}/wxacode?store=sh01") == (200, None)
    assert code(clerk, f"/admin/api/rules/{everywhere['id']}/wxacode?store=sh02") == (403, "store_out_of_scope")
    assert code(clerk, f"/admin/api/rules/{sh02_only['id']}/wxacode") == (403, "store_out_of_scope")
    assert code(clerk, "/admin/api/recharge-home/wxacode?store=bj01") == (403, "store_out_of_scope")
    # the QR codes follow the same scope
    assert code(clerk, f"/admin/api/rules/{everywhere['id']}/qrcode.png?store=sh02") == (403, "store_out_of_scope")
    assert code(clerk, f"/admin/api/rules/{sh02_only['id']}/qrcode.svg") == (403, "store_out_of_scope")
    # the east region's manager: the region's stores, not the north's
    assert code(east, f"/admin/api/rules/{sh02_only['id']}/wxacode?store=sh02") == (200, None)
    assert code(east, f"/admin/api/rules/{bj01_only['id']}/wxacode") == (403, "store_out_of_scope")
    # a store the rule is not offered at would print a code whose page refuses to recharge
    assert code(east, f"/admin/api/rules/{sh02_only['id']}/wxacode?store=sh01") == (409, "rule_not_in_store")
    assert code(east, f"/admin/api/rules/{everywhere['id']}/wxacode?store=nope") == (404, "store_not_found")
    # without a token nothing is made
    assert client.get(f"/admin/api/rules/{everywhere['id']}/wxacode").status_code == 401
    assert [call.json["scene"] for call in fake.calls_to(PATH)] == [
        f"{everywhere['code']}**sh01",
        f"{sh02_only['code']}**sh02",
    ]


@pytest.mark.parametrize("width", ["279", "1281", "0", "abc", "430.5"])
def test_a_width_wechat_cannot_draw_is_refused_before_asking_it(fake, admin, rule, width):
    refused = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?width={width}", status=400)
    assert refused["error"]["code"] == "invalid_request" and "width" in refused["error"]["details"]["query"]
    assert fake.calls_to(PATH) == []


def test_a_scene_over_32_characters_or_a_bad_tag_is_refused(fake, admin, rule):
    long_src = "x" * (32 - len(rule["code"]))  # the code, "*" and this: 33
    refused = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src={long_src}", status=400)
    assert refused["error"]["code"] == "scene_too_long" and refused["error"]["details"]["scene_length"] == 33
    admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src={long_src[1:]}")  # 32: fine
    bad = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?src=a%2Ab", status=400)  # "*" is the separator
    assert bad["error"]["code"] == "invalid_request"
    assert len(fake.calls_to(PATH)) == 1


def test_unknown_and_archived_rules_get_no_code(fake, admin, rule):
    assert admin("GET", "/admin/api/rules/999/wxacode", status=404)["error"]["code"] == "rule_not_found"
    admin("POST", f"/admin/api/rules/{rule['id']}/archive")
    assert admin("GET", f"/admin/api/rules/{rule['id']}/wxacode", status=409)["error"]["code"] == "rule_archived"
    assert fake.calls_to(PATH) == []


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ({"errcode": 45009}, 429, "wechat_rate_limited"),
        ({"errcode": 41030, "errmsg": "invalid page"}, 502, "wxacode_page_invalid"),
        ({"errcode": -1, "errmsg": "system error"}, 502, "wechat_unavailable"),
        ({"status": 500}, 502, "wechat_unavailable"),
    ],
)
def test_wechats_refusal_is_a_clear_error_and_nothing_is_kept(client, fake, admin, rule, failure, status, code):
    # given WeChat refuses the next mini-program code
    fake.fail_next(PATH, **failure)
    # when HQ asks for one, then the refusal has a stable code and says nothing of WeChat's internals
    refused = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode", status=status)
    assert refused["error"]["code"] == code and "access_token" not in str(refused)
    # and the next request asks WeChat again (a refusal is not kept) and gets the image
    made = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode")
    assert decode_qr(made.data) == [f"{PAGE}?scene={rule['code']}"]
    assert len(fake.calls_to(PATH)) == 2


@pytest.mark.parametrize("app_overrides", [{"WECHAT_WXA_RECHARGE_PAGE": "pages/unpublished/index"}])
def test_a_page_the_published_mini_program_lacks_is_wxacode_page_invalid(fake, admin, rule):
    refused = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode", status=502)
    assert refused["error"]["code"] == "wxacode_page_invalid"
    (call,) = fake.calls_to(PATH)
    assert call.json["page"] == "pages/unpublished/index"


@pytest.mark.parametrize("app_overrides", [{"WECHAT_WXA_RECHARGE_PAGE": "pages/points/index"}])
def test_the_page_is_configurable(fake, admin, rule):
    made = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode")
    assert decode_qr(made.data) == [f"pages/points/index?scene={rule['code']}"]


def test_an_expired_access_token_is_refreshed_once_and_the_code_made(fake, admin, rule):
    # given the mini program's token was issued, then expired at WeChat
    admin("GET", f"/admin/api/rules/{rule['id']}/wxacode")
    tokens_before = len(fake.calls_to("cgi-bin/stable_token"))
    fake.expire_tokens()
    # when another code is asked for
    made = admin("GET", f"/admin/api/rules/{rule['id']}/wxacode?width=500")
    # then WeChat's 42001 made the app fetch a new token once and ask again with it
    assert decode_qr(made.data) == [f"{PAGE}?scene={rule['code']}"]
    calls = fake.calls_to(PATH)
    assert len(calls) == 3 and calls[1].args["access_token"] != calls[2].args["access_token"]
    assert len(fake.calls_to("cgi-bin/stable_token")) == tokens_before + 1


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"scene": "a*b*c*d"}, 400, "invalid_scene"),
        ({"scene": "a b"}, 400, "invalid_scene"),
        ({"scene": "a*b%3Ac"}, 400, "invalid_scene"),  # still URL-encoded: the client must decode it first
        ({"scene": "x" * 33}, 400, "invalid_request"),
        ({"scene": "demo", "code": "demo"}, 400, "invalid_request"),
        ({"scene": "nosuchrule*src"}, 404, "rule_not_found"),
        ({"scene": "*src*nosuchstore"}, 404, "store_not_found"),
    ],
)
def test_a_scene_the_backend_did_not_make_is_refused(client, rule, query, status, code):
    answer = client.get("/api/rules", query_string=query)
    assert (answer.status_code, error_of(answer)["code"]) == (status, code)


def test_an_archived_rules_scene_says_so(client, admin, rule):
    admin("POST", f"/admin/api/rules/{rule['id']}/archive")
    answer = client.get("/api/rules", query_string={"scene": f"{rule['code']}*poster"})
    assert (answer.status_code, error_of(answer)["code"]) == (409, "rule_archived")
