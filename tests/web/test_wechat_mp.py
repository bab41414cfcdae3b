"""The official account's server URL (/wechat/mp), driven by the fake WeChat as WeChat drives it:
URL verification, the balance reply in plain, compatible and safe (AES) mode, subscribe / unsubscribe,
events we only acknowledge, and requests we refuse (never with a 500, never creating a member)."""

from __future__ import annotations

import secrets
import time

import pytest
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.members import service as members
from mp_backend.members.models import Member, MemberOpenid
from mp_backend.wechat.fake import FakeWeChatServer
from tests.conftest import assert_ledger_ok, count_rows
from tests.web.conftest import PUBLIC_BASE_URL, error_of, member_ids, member_row

MP_APPID = "wxsandboxmp0000001"
ORIGINAL_ID = "gh_sandbox000001"
MEMBER_CENTRE = f"{PUBLIC_BASE_URL}/member"
# Plain mode is served only while no EncodingAESKey is configured; with one, only safe mode.
PLAIN_ONLY = {"WECHAT_MP_AES_KEY": ""}
MODES = [
    pytest.param({"encrypt": False}, PLAIN_ONLY, id="plain"),
    pytest.param({"encrypt": True}, {}, id="safe"),
]


def mp_member(openid: str, principal_fen: int = 0, bonus_fen: int = 0, hold_fen: int = 0) -> int:
    """A follower known to us through the official account, funded through the ledger."""
    member_id = members.login_with_openid(MP_APPID, openid, subscribed=True).member.id
    if principal_fen:
        ledger.credit(member_id, principal_fen, key=f"{openid}-p", operator="test")
    if bonus_fen:
        ledger.credit(member_id, bonus_fen, bucket="bonus", key=f"{openid}-b", operator="test")
    if hold_fen:
        ledger.hold(member_id, hold_fen, key=f"{openid}-h", operator="test")
    return member_id


def snapshot() -> tuple:
    """Everything a message could change: members (with subscription and status), openids, ledger rows."""
    db.session.rollback()
    people = db.session.execute(select(Member.id, Member.subscribed, Member.status, Member.name).order_by(Member.id))
    ids = db.session.execute(select(MemberOpenid.member_id, MemberOpenid.appid, MemberOpenid.openid))
    return list(people), sorted(ids), count_rows("ledger_entry")


def signed_query(fake: FakeWeChatServer, **extra: str) -> dict[str, str]:
    return {**fake.mp_query(), **extra}


def aes_request(fake: FakeWeChatServer, xml: str) -> tuple[dict[str, str], str]:
    """What WeChat sends in safe mode: the signed query and the envelope with ``<Encrypt>``."""
    s = fake.settings
    query = fake.mp_query()
    crypto = WeChatCrypto(s.mp_token, s.mp_aes_key, s.mp_appid)
    envelope = crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
    encrypted = envelope.split("<Encrypt><![CDATA[")[1].split("]]></Encrypt>")[0]
    msg_signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]></MsgSignature>")[0]
    body = (
        f"<xml><ToUserName><![CDATA[{s.mp_original_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    return {**query, "encrypt_type": "aes", "msg_signature": msg_signature}, body


def image_message(openid: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
        "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x.jpg]]></PicUrl><MediaId><![CDATA[media_id_1]]></MediaId>"
        f"<MsgId>{secrets.randbelow(10**18)}</MsgId></xml>"
    )


# ---------------------------------------------------------------------------------------------------
# URL verification


def test_url_verification_echoes_echostr(client, fake: FakeWeChatServer):
    # when WeChat checks the server URL with a correct signature
    status, body = fake.mp_verify(client, echostr="7023432489742390")
    # then the echostr comes back as it was, alone
    assert (status, body) == (200, "7023432489742390")


def test_url_verification_with_a_wrong_signature_is_403(client, fake: FakeWeChatServer):
    query = signed_query(fake, echostr="7023432489742390")
    query["signature"] = "0" * 40
    response = client.get("/wechat/mp", query_string=query)
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_bad_signature"
    assert "7023432489742390" not in response.get_data(as_text=True)


def test_url_verification_with_a_stale_timestamp_is_403(client, fake: FakeWeChatServer):
    # given a correctly signed check sent ten minutes ago (a replay)
    query = {**fake.mp_query(timestamp=str(int(time.time()) - 600)), "echostr": "7023432489742390"}
    response = client.get("/wechat/mp", query_string=query)
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_stale_request"


def test_url_verification_without_a_signature_is_403(client):
    response = client.get("/wechat/mp", query_string={"echostr": "7023432489742390"})
    assert response.status_code == 403
    error_of(response)


# ---------------------------------------------------------------------------------------------------
# The balance reply


def expected_balance_lines(card_no: str) -> list[str]:
    # principal 10.00 and bonus 2.30, then a 1.00 hold split proportionally: bonus 100 * 230 / 1230 = 18.7
    # -> 19 to the nearest fen, principal 81; left: principal 9.19, bonus 2.11, available 11.30, held 1.00.
    return [
        "余额：11.30 元",
        "其中本金：9.19 元，赠送：2.11 元",
        "冻结中（待结算）：1.00 元",
        "积分：0",
        f"会员卡：{card_no}（普通会员，正常）",
        f"会员中心：{MEMBER_CENTRE}",
    ]


@pytest.mark.parametrize(("mode", "app_overrides"), MODES)
@pytest.mark.parametrize(
    "make_message",
    [
        pytest.param(lambda fake, openid: fake.click_event(openid, "MY_BALANCE"), id="click-MY_BALANCE"),
        pytest.param(lambda fake, openid: fake.text_message(openid, "余额"), id="text-余额"),
    ],
)
def test_balance_reply(client, fake: FakeWeChatServer, mode, make_message):
    # given a follower with 10.00 principal, 2.30 bonus and a 1.00 hold
    member_id = mp_member("o-alice", 1_000, 230, 100)
    card_no = member_row(member_id).card_no
    before = snapshot()
    # when they press "my balance" (or type 余额)
    reply = fake.mp_post(client, make_message(fake, "o-alice"), **mode)
    # then the answer is a text to them, from the official account, stating each figure
    assert reply.status == 200
    assert reply.encrypted is mode["encrypt"]
    assert reply.fields is not None
    assert reply.fields["ToUserName"] == "o-alice"
    assert reply.fields["FromUserName"] == ORIGINAL_ID
    assert reply.fields["MsgType"] == "text"
    assert abs(int(reply.fields["CreateTime"]) - time.time()) < 60
    assert reply.content is not None
    assert reply.content.split("\n") == expected_balance_lines(card_no)
    # and asking changed nothing
    assert snapshot() == before
    assert_ledger_ok()


def test_balance_reply_without_a_hold_has_no_held_line(client, fake: FakeWeChatServer):
    member_id = mp_member("o-bob", 1_230)
    reply = fake.mp_post(client, fake.text_message("o-bob", "余额"), encrypt=True)
    assert reply.content is not None
    assert reply.content.split("\n") == [
        "余额：12.30 元",
        "其中本金：12.30 元，赠送：0.00 元",
        "积分：0",
        f"会员卡：{member_row(member_id).card_no}（普通会员，正常）",
        f"会员中心：{MEMBER_CENTRE}",
    ]


def test_balance_reply_is_only_about_the_sender(client, fake: FakeWeChatServer):
    # given two followers with different balances
    mp_member("o-alice", 1_000, 230, 100)
    mp_member("o-bob", 7_700)
    # when bob asks
    reply = fake.mp_post(client, fake.click_event("o-bob", "MY_BALANCE"), encrypt=True)
    # then he hears his own balance, addressed to him
    assert reply.fields is not None and reply.fields["ToUserName"] == "o-bob"
    assert reply.content is not None and reply.content.startswith("余额：77.00 元\n")


def test_balance_reply_states_a_frozen_card(client, fake: FakeWeChatServer, org):
    member_id = mp_member("o-alice", 1_000)
    members.set_status(member_id, "frozen", staff_id=org["staff"]["admin"], reason="挂失前冻结")
    reply = fake.mp_post(client, fake.text_message("o-alice", "余额"))
    assert reply.content is not None
    assert f"会员卡：{member_row(member_id).card_no}（普通会员，已冻结）" in reply.content.split("\n")


def test_other_text_gets_no_reply(client, fake: FakeWeChatServer):
    mp_member("o-alice", 1_000)
    before = snapshot()
    reply = fake.mp_post(client, fake.text_message("o-alice", "你好"))
    assert (reply.status, reply.body) == (200, "success")
    assert snapshot() == before


# ---------------------------------------------------------------------------------------------------
# Subscribe / unsubscribe


@pytest.mark.parametrize(("mode", "app_overrides"), MODES)
def test_subscribe_creates_the_member_and_welcomes_them(client, fake: FakeWeChatServer, mode):
    # given a stranger
    assert member_ids() == []
    # when they follow the official account
    reply = fake.mp_post(client, fake.event("o-new", "subscribe"), **mode)
    # then they are a subscribed member, tied to the official account's openid
    assert reply.status == 200
    [member_id] = member_ids()
    member = member_row(member_id)
    assert member.subscribed is True
    assert {(o.appid, o.openid) for o in member.openids} == {(MP_APPID, "o-new")}
    # and the welcome text, addressed to them, carries the member centre and recharge links
    assert reply.fields is not None and reply.fields["ToUserName"] == "o-new"
    assert reply.fields["MsgType"] == "text"
    content = reply.content or ""
    assert MEMBER_CENTRE in content
    assert f"{PUBLIC_BASE_URL}/r" in content
    assert_ledger_ok()


def test_welcome_links_lead_to_pages_that_exist(client, fake: FakeWeChatServer):
    # given the welcome text
    content = fake.mp_post(client, fake.event("o-new", "subscribe")).content or ""
    links = [word for line in content.split("\n") for word in line.split("：") if word.startswith(PUBLIC_BASE_URL)]
    assert len(links) >= 2
    # when each link is opened, then it is served (a page or a redirect), never a 404
    for link in links:
        response = client.get(link[len(PUBLIC_BASE_URL) :] or "/")
        assert response.status_code in (200, 301, 302, 303), f"{link} answered {response.status_code}"


def test_subscribe_through_a_parametric_qr_code(client, fake: FakeWeChatServer):
    reply = fake.mp_post(client, fake.event("o-new", "subscribe", EventKey="qrscene_123", Ticket="TICKET123"))
    assert reply.status == 200
    [member_id] = member_ids()
    assert member_row(member_id).subscribed is True
    assert reply.content is not None and MEMBER_CENTRE in reply.content


def test_subscribing_again_keeps_the_member(client, fake: FakeWeChatServer):
    # given a member who unfollowed, with money
    member_id = mp_member("o-alice", 1_000)
    members.set_subscribed(MP_APPID, "o-alice", False)
    # when they follow again
    fake.mp_post(client, fake.event("o-alice", "subscribe"), encrypt=True)
    # then they are the same member, subscribed, with the same money
    assert member_ids() == [member_id]
    assert member_row(member_id).subscribed is True
    assert ledger.get_balance(member_id).principal_fen == 1_000


@pytest.mark.parametrize(("mode", "app_overrides"), MODES)
def test_unsubscribe_keeps_the_member_and_the_money(client, fake: FakeWeChatServer, mode):
    # given a subscribed member with money
    member_id = mp_member("o-alice", 1_000, 230)
    # when they unfollow
    reply = fake.mp_post(client, fake.event("o-alice", "unsubscribe"), **mode)
    # then WeChat gets "success", the member is no longer subscribed, and nothing else changed
    assert (reply.status, reply.body) == (200, "success")
    assert member_ids() == [member_id]
    assert member_row(member_id).subscribed is False
    balance = ledger.get_balance(member_id)
    assert (balance.principal_fen, balance.bonus_fen) == (1_000, 230)
    assert_ledger_ok()


def test_unsubscribe_of_a_stranger_creates_nobody(client, fake: FakeWeChatServer):
    reply = fake.mp_post(client, fake.event("o-stranger", "unsubscribe"))
    assert (reply.status, reply.body) == (200, "success")
    assert member_ids() == []


# ---------------------------------------------------------------------------------------------------
# Acknowledged, nothing else


@pytest.mark.parametrize(("mode", "app_overrides"), MODES)
@pytest.mark.parametrize("sender", ["o-alice", "o-stranger"])
@pytest.mark.parametrize(
    "make_message",
    [
        pytest.param(lambda fake, o: fake.event(o, "VIEW", EventKey="https://member.example.com/member"), id="VIEW"),
        pytest.param(lambda fake, o: fake.event(o, "SCAN", EventKey="123", Ticket="TICKET123"), id="SCAN"),
        pytest.param(lambda fake, o: fake.event(o, "SOMETHING_NEW", EventKey="x"), id="unknown-event"),
        pytest.param(lambda fake, o: fake.click_event(o, "OTHER_KEY"), id="other-click"),
        pytest.param(lambda fake, o: image_message(o), id="image"),
    ],
)
def test_events_we_only_acknowledge(client, fake: FakeWeChatServer, mode, sender, make_message):
    # given one known follower
    mp_member("o-alice", 1_000)
    before = snapshot()
    # when WeChat sends an event or message we have nothing to say to
    reply = fake.mp_post(client, make_message(fake, sender), **mode)
    # then the answer is WeChat's "success" and nothing in the database changed
    assert (reply.status, reply.body) == (200, "success")
    assert snapshot() == before


# ---------------------------------------------------------------------------------------------------
# Refused


def test_wrong_msg_signature_is_403(client, fake: FakeWeChatServer):
    query, body = aes_request(fake, fake.event("o-new", "subscribe"))
    query["msg_signature"] = "0" * 40
    response = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_bad_signature"
    assert member_ids() == []


def test_correct_aes_request_passes(client, fake: FakeWeChatServer):
    # the control for the test above: the same request with its real msg_signature creates the member
    query, body = aes_request(fake, fake.event("o-new", "subscribe"))
    response = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    assert response.status_code == 200
    assert len(member_ids()) == 1


@pytest.mark.parametrize("app_overrides", [PLAIN_ONLY])
def test_wrong_plain_signature_is_403(client, fake: FakeWeChatServer):
    query = signed_query(fake)
    query["signature"] = "0" * 40
    response = client.post(
        "/wechat/mp", query_string=query, data=fake.event("o-new", "subscribe"), content_type="text/xml"
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_bad_signature"
    assert member_ids() == []


def test_stale_message_is_403(client, fake: FakeWeChatServer):
    reply = fake.mp_post(client, fake.event("o-new", "subscribe"), timestamp=str(int(time.time()) - 600))
    assert reply.status == 403
    assert member_ids() == []


def test_compatible_mode_is_refused_once_an_aes_key_is_set(client, fake: FakeWeChatServer):
    # given a compatible-mode request whose plaintext copy was altered to another openid (not signed)
    mp_member("o-victim", 9_900)
    before = snapshot()
    query, _body = aes_request(fake, fake.click_event("o-alice", "MY_BALANCE"))
    encrypted = _body.split("<Encrypt>")[1].split("</Encrypt>")[0]
    forged_plain = fake.click_event("o-victim", "MY_BALANCE")
    body = forged_plain.replace("</xml>", f"<Encrypt>{encrypted}</Encrypt></xml>")
    # when it arrives
    response = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    # then it is refused (only safe mode is read), says nothing about anyone, and changes nothing
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_safe_mode_required"
    assert "99.00" not in response.get_data(as_text=True)
    assert snapshot() == before


def test_plain_mode_is_refused_once_an_aes_key_is_set(client, fake: FakeWeChatServer):
    # given a correctly signed plain-mode query (its signature covers no body) naming a member
    mp_member("o-victim", 9_900)
    before = snapshot()
    # when it is sent with a body asking for that member's balance
    reply = fake.mp_post(client, fake.click_event("o-victim", "MY_BALANCE"), encrypt=False)
    # then it is refused without a word about the member
    assert reply.status == 403
    assert "wechat_safe_mode_required" in reply.body
    assert "99.00" not in reply.body
    assert snapshot() == before


def test_oversized_body_is_413(client, fake: FakeWeChatServer):
    padding = "x" * (65 * 1024)
    xml = fake.text_message("o-new", padding)
    response = client.post("/wechat/mp", query_string=signed_query(fake), data=xml, content_type="text/xml")
    assert response.status_code == 413
    error_of(response)
    assert member_ids() == []


@pytest.mark.parametrize("app_overrides", [PLAIN_ONLY])
def test_body_just_under_the_limit_is_read(client, fake: FakeWeChatServer):
    mp_member("o-alice", 100)
    xml = fake.text_message("o-alice", "余额")
    xml = xml.replace("</xml>", "<Pad>" + "x" * (60 * 1024) + "</Pad></xml>")
    response = client.post("/wechat/mp", query_string=signed_query(fake), data=xml, content_type="text/xml")
    assert response.status_code == 200
    assert "余额：1.00 元" in response.get_data(as_text=True)


ENTITY_BODIES = [
    pytest.param(
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY who "o-new">]>'
        "<xml><ToUserName>gh_sandbox000001</ToUserName><FromUserName>&who;</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>",
        id="internal-entity",
    ),
    pytest.param(
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><FromUserName>o-new</FromUserName><MsgType>text</MsgType><Content>&b;</Content></xml>",
        id="entity-expansion",
    ),
    pytest.param(
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
        "<xml><FromUserName>o-new</FromUserName><MsgType>text</MsgType><Content>&ext;</Content></xml>",
        id="external-entity",
    ),
    pytest.param(
        '<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml><FromUserName>o-new</FromUserName>'
        "<MsgType>event</MsgType><Event>subscribe</Event></xml>",
        id="external-dtd",
    ),
]


@pytest.mark.parametrize("app_overrides", [PLAIN_ONLY])
@pytest.mark.parametrize("body", ENTITY_BODIES)
def test_doctype_and_entities_are_400_in_plain_mode(client, fake: FakeWeChatServer, body):
    response = client.post("/wechat/mp", query_string=signed_query(fake), data=body, content_type="text/xml")
    assert response.status_code == 400
    assert error_of(response)["code"] == "wechat_bad_message"
    assert member_ids() == []


@pytest.mark.parametrize("body", ENTITY_BODIES)
def test_doctype_and_entities_are_400_inside_the_encrypted_part(client, fake: FakeWeChatServer, body):
    query, envelope = aes_request(fake, body)
    response = client.post("/wechat/mp", query_string=query, data=envelope, content_type="text/xml")
    assert response.status_code == 400
    assert error_of(response)["code"] == "wechat_bad_message"
    assert member_ids() == []


@pytest.mark.parametrize("app_overrides", [PLAIN_ONLY])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"hello, this is not XML", id="text"),
        pytest.param(b'{"MsgType": "event", "Event": "subscribe"}', id="json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"<xml><FromUserName>o-new</FromUserName>", id="truncated"),
        pytest.param(b"<root><FromUserName>o-new</FromUserName></root>", id="other-root"),
        pytest.param(b"<xml></xml>", id="no-fields"),
        pytest.param(b"\xff\xfe<\x00x\x00", id="not-utf8"),
    ],
)
def test_non_xml_or_unreadable_body_is_400(client, fake: FakeWeChatServer, body):
    response = client.post("/wechat/mp", query_string=signed_query(fake), data=body, content_type="text/xml")
    assert response.status_code == 400, response.get_data(as_text=True)
    error_of(response)
    assert member_ids() == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(
            lambda q, b: (q, b.replace("<Encrypt>", "<Other>").replace("</Encrypt>", "</Other>")), id="no-Encrypt"
        ),
        pytest.param(lambda q, b: ({k: v for k, v in q.items() if k != "msg_signature"}, b), id="no-msg_signature"),
        pytest.param(lambda q, b: ({**q, "encrypt_type": "rsa"}, b), id="unknown-encrypt_type"),
    ],
)
def test_broken_safe_mode_requests_are_4xx(client, fake: FakeWeChatServer, mangle):
    query, body = mangle(*aes_request(fake, fake.event("o-new", "subscribe")))
    response = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    assert 400 <= response.status_code < 500
    error_of(response)
    assert member_ids() == []


def test_ciphertext_for_another_app_is_refused(client, fake: FakeWeChatServer):
    # given a message encrypted with our token and key but for another appid
    s = fake.settings
    query = fake.mp_query()
    crypto = WeChatCrypto(s.mp_token, s.mp_aes_key, "wxotherapp00000001")
    envelope = crypto.encrypt_message(fake.event("o-new", "subscribe"), query["nonce"], query["timestamp"])
    msg_signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    query.update(encrypt_type="aes", msg_signature=msg_signature)
    response = client.post("/wechat/mp", query_string=query, data=envelope, content_type="text/xml")
    assert response.status_code == 403
    error_of(response)
    assert member_ids() == []


def test_no_ledger_rows_from_any_message(client, fake: FakeWeChatServer):
    # a whole conversation moves no money
    mp_member("o-alice", 1_000, 230, 100)
    rows = count_rows("ledger_entry")
    for xml in (
        fake.event("o-alice", "subscribe"),
        fake.text_message("o-alice", "余额"),
        fake.click_event("o-alice", "MY_BALANCE"),
        fake.event("o-alice", "unsubscribe"),
    ):
        assert fake.mp_post(client, xml, encrypt=True).status == 200
    assert count_rows("ledger_entry") == rows
    assert db.session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.id)).all() == ["credit", "credit", "hold"]


# ---------------------------------------------------------------------------------------------------
# Replays, absurd timestamps, forged identities, bodies refused before they are read


def test_a_safe_mode_request_replayed_byte_for_byte_is_acted_on_once(client, fake: FakeWeChatServer):
    # given a follower asking for their balance in safe mode
    mp_member("o-alice", 1_000)
    query, body = aes_request(fake, fake.text_message("o-alice", "余额"))
    first = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    # when the very same request arrives again within the timestamp window
    again = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    # then the first is answered with the balance, the repeat only with WeChat's "success"
    assert first.status_code == 200 and "<Encrypt>" in first.get_data(as_text=True)
    assert (again.status_code, again.get_data(as_text=True)) == (200, "success")


def test_wechats_retry_of_a_message_with_a_new_nonce_is_acted_on_once(client, fake: FakeWeChatServer):
    # given a text message WeChat delivers twice (its retry has the same MsgId, a new signature)
    mp_member("o-alice", 1_000)
    xml = fake.text_message("o-alice", "余额", msg_id=1234567890123)
    # when both arrive
    first = fake.mp_post(client, xml)
    retry = fake.mp_post(client, xml)
    # then only the first is answered
    assert first.content is not None and "余额：10.00 元" in first.content
    assert (retry.status, retry.body) == (200, "success")


def test_a_repeated_subscribe_event_creates_one_member(client, fake: FakeWeChatServer):
    # events have no MsgId: FromUserName + CreateTime identify them
    xml = fake.event("o-new", "subscribe")
    assert "欢迎" in (fake.mp_post(client, xml).content or "")
    assert fake.mp_post(client, xml).body == "success"
    assert len(member_ids()) == 1


@pytest.mark.parametrize(
    "timestamp",
    ["9" * 320, "1" * 13, "-1", "1e9", "١٧٠٠٠٠٠٠٠٠"],
    ids=["320-digits", "13-digits", "neg", "exp", "arabic"],
)
def test_an_unsigned_aes_request_with_an_absurd_timestamp_is_a_clean_403(client, fake: FakeWeChatServer, timestamp):
    # given an AES-mode request without a valid msg_signature, whose timestamp no clock could hold
    query = {"encrypt_type": "aes", "msg_signature": "0" * 40, "timestamp": timestamp, "nonce": "1"}
    body = f"<xml><ToUserName>{ORIGINAL_ID}</ToUserName><Encrypt>AAAA</Encrypt></xml>"
    response = client.post("/wechat/mp", query_string=query, data=body, content_type="text/xml")
    # then the signature is checked first: a 403, never an OverflowError
    assert response.status_code == 403
    assert error_of(response)["code"] == "wechat_bad_signature"


def test_a_signed_request_with_a_320_digit_timestamp_is_stale(client, fake: FakeWeChatServer):
    mp_member("o-alice", 1_000)
    reply = fake.mp_post(client, fake.text_message("o-alice", "余额"), timestamp="9" * 320)
    assert reply.status == 403
    assert "wechat_stale_request" in reply.body


def _with_sender(fake: FakeWeChatServer, sender_xml: str) -> str:
    good = fake.text_message("o-placeholder", "余额")
    return good.replace("<FromUserName><![CDATA[o-placeholder]]></FromUserName>", sender_xml)


@pytest.mark.parametrize(
    "sender_xml",
    [
        pytest.param("", id="missing"),
        pytest.param("<FromUserName><a>1</a></FromUserName>", id="nested"),
        pytest.param("<FromUserName>x</FromUserName><FromUserName>y</FromUserName>", id="repeated"),
        pytest.param(f"<FromUserName>{'o' * 60_000}</FromUserName>", id="huge"),
        pytest.param("<FromUserName>o-" + "x" * 63 + "</FromUserName>", id="65-chars"),
        pytest.param("<FromUserName>o alice</FromUserName>", id="space"),
        pytest.param("<FromUserName></FromUserName>", id="empty"),
        pytest.param("<FromUserName>None</FromUserName><FromUserName>None</FromUserName>", id="twice-same"),
    ],
)
def test_a_message_whose_sender_is_not_one_plain_openid_is_refused(client, fake: FakeWeChatServer, sender_xml):
    # given a correctly encrypted and signed message whose FromUserName is not one sane openid
    xml = _with_sender(fake, sender_xml)
    # when it arrives, then it is refused and nobody is created
    reply = fake.mp_post(client, xml)
    assert reply.status in (400, 413), reply.body
    assert member_ids() == []


@pytest.mark.parametrize(
    "recipient_xml",
    [
        pytest.param("", id="missing"),
        pytest.param(f"<ToUserName><x>{ORIGINAL_ID}</x></ToUserName>", id="nested"),
        pytest.param(f"<ToUserName>{ORIGINAL_ID}</ToUserName><ToUserName>gh_other</ToUserName>", id="repeated"),
        pytest.param(f"<ToUserName>{'g' * 5_000}</ToUserName>", id="huge"),
    ],
)
def test_a_message_whose_recipient_is_not_one_plain_id_is_refused(client, fake: FakeWeChatServer, recipient_xml):
    xml = fake.event("o-new", "subscribe")
    xml = xml.replace(f"<ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>", recipient_xml)
    reply = fake.mp_post(client, xml)
    assert reply.status == 400, reply.body
    assert member_ids() == []


class _UnreadableStream:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):  # type: ignore[no-untyped-def]
        raise AssertionError("the body was read")

    readline = readlines = read

    def tell(self) -> int:
        return 0

    def seek(self, *args) -> int:  # type: ignore[no-untyped-def]
        return 0


@pytest.mark.parametrize("path", ["/wechat/mp", "/api/auth/wxa-login", "/admin/api/auth/login"])
def test_a_huge_declared_body_is_413_before_it_is_read(client, fake: FakeWeChatServer, path):
    # given a request declaring 300 MB (an unsigned POST to the server URL, or a JSON login)
    query = fake.mp_query() if path == "/wechat/mp" else {}
    response = client.post(
        path,
        query_string=query,
        environ_overrides={"wsgi.input": _UnreadableStream(), "CONTENT_LENGTH": str(300 * 1024 * 1024)},
        content_type="text/xml" if path == "/wechat/mp" else "application/json",
    )
    # then it is refused by its declared length, with the JSON error body, without reading a byte
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert member_ids() == []


def test_a_mini_program_member_asking_the_official_account_is_found_by_unionid(client, fake_with_unionid):
    # given alice, known from the mini program only (unionid sandbox-union-alice), with 10.00
    login = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    member_id = login.get_json()["member"]["id"]
    ledger.credit(member_id, 1_000, key="alice-p", operator="test")
    # when she asks the official account for her balance (its messages carry her openid, no unionid)
    reply = fake_with_unionid.mp_post(client, fake_with_unionid.text_message("alice", "余额"))
    # then WeChat's user info gives her unionid: she is the same member, with her 10.00
    assert reply.content is not None and "余额：10.00 元" in reply.content
    assert member_ids() == [member_id]
