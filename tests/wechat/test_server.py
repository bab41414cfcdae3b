"""The server URL: signatures (WeChat's own examples), freshness, XML safety, plain / compatible / safe mode."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import pytest
from flask import Flask, Response, request
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.messages import TextMessage, VideoMessage
from werkzeug.datastructures import MultiDict

from mp_backend import wechat
from mp_backend.wechat import server
from mp_backend.wechat.errors import BadMessage, BadSignature, MessageTooLarge, SafeModeRequired, StaleRequest
from mp_backend.wechat.fake import FakeWeChat, server_signature
from mp_backend.wechat.server import ServerCredentials, check_signature, parse_message, verify_url

# -- WeChat's official examples --------------------------------------------------------------------
# The plain signature example from wechatpy's tests (tests/test_utils.py): sha1 of the sorted
# token, timestamp and nonce.
PLAIN_TOKEN, PLAIN_SIGNATURE, PLAIN_TIMESTAMP, PLAIN_NONCE = (
    "test",
    "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff",
    "1410685589",
    "test",
)

# Tencent's own sample for the official account's message encryption (WXBizMsgCrypt, Python
# Sample.py of the "消息加解密" download, also in the Java sample): a compatible-mode message.
SAMPLE_CREDENTIALS = ServerCredentials("spamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2")
SAMPLE_TIMESTAMP, SAMPLE_NONCE = "1409735669", "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_FROM_XML = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]>"
    "</FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]>"
    "</Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655H"
    "uD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWN"
    "lZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tC"
    "Op3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo"
    "5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>"
)

# Tencent's Java sample test (WXBizMsgCryptTest.java): fixed random prefix "aaaabbbbccccdddd".
JAVA_CREDENTIALS = ServerCredentials("pamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxb11529c136998cb6")
JAVA_TIMESTAMP, JAVA_NONCE, JAVA_RANDOM = "1409304348", "xxxxxx", "aaaabbbbccccdddd"
JAVA_REPLY = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]>"
    "</FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1Mb"
    "wPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></T"
    "itle><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
JAVA_ENCRYPTED = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaU"
    "zpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNA"
    "Yxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44Y"
    "feEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ"
    "6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP"
    "5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
)


def sha1_signature(*parts: str) -> str:
    """WeChat's documented algorithm, written out here independently of wechatpy."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def test_plain_signature_official_example() -> None:
    check_signature(PLAIN_TOKEN, PLAIN_SIGNATURE, PLAIN_TIMESTAMP, PLAIN_NONCE, now=int(PLAIN_TIMESTAMP))
    assert sha1_signature(PLAIN_TOKEN, PLAIN_TIMESTAMP, PLAIN_NONCE) == PLAIN_SIGNATURE


@pytest.mark.parametrize(
    ("token", "signature", "nonce"),
    [
        (PLAIN_TOKEN, PLAIN_SIGNATURE[:-1] + "e", PLAIN_NONCE),  # one digit off
        (PLAIN_TOKEN, PLAIN_SIGNATURE, "tesu"),  # another nonce
        ("other", PLAIN_SIGNATURE, PLAIN_NONCE),  # another token
        (PLAIN_TOKEN, "", PLAIN_NONCE),
        ("", PLAIN_SIGNATURE, PLAIN_NONCE),  # no token configured: nothing can be verified
    ],
)
def test_plain_signature_mismatch(token: str, signature: str, nonce: str) -> None:
    with pytest.raises(BadSignature) as refused:
        check_signature(token, signature, PLAIN_TIMESTAMP, nonce, now=int(PLAIN_TIMESTAMP))
    assert type(refused.value) is BadSignature and refused.value.status == 403


def test_official_compatible_mode_sample_is_refused() -> None:
    # Compatible mode's plaintext copy is not signed: with an EncodingAESKey, only safe mode is read.
    args = {
        "encrypt_type": "aes",
        "msg_signature": SAMPLE_MSG_SIGNATURE,
        "timestamp": SAMPLE_TIMESTAMP,
        "nonce": SAMPLE_NONCE,
    }
    with pytest.raises(SafeModeRequired) as refused:
        parse_message(SAMPLE_FROM_XML.encode(), args, credentials=SAMPLE_CREDENTIALS, now=int(SAMPLE_TIMESTAMP) + 1)
    assert refused.value.status == 403


def test_official_sample_ciphertext_is_decrypted_in_safe_mode() -> None:
    args = {
        "encrypt_type": "aes",
        "msg_signature": SAMPLE_MSG_SIGNATURE,
        "timestamp": SAMPLE_TIMESTAMP,
        "nonce": SAMPLE_NONCE,
    }
    encrypted = SAMPLE_FROM_XML.split("<Encrypt>")[1].split("</Encrypt>")[0]
    envelope = f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt>{encrypted}</Encrypt></xml>"

    inbound = parse_message(envelope.encode(), args, credentials=SAMPLE_CREDENTIALS, now=int(SAMPLE_TIMESTAMP) + 1)

    message = inbound.message
    assert isinstance(message, TextMessage)
    assert (message.source, message.target, message.content) == (
        "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "gh_10f6c3c3ac5a",
        "abcdteT",
    )
    assert message.id == 6054768590064713728
    assert inbound.encrypted and inbound.openid == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


def test_official_sample_with_a_wrong_msg_signature_is_refused() -> None:
    args = {"encrypt_type": "aes", "msg_signature": "0" * 40, "timestamp": SAMPLE_TIMESTAMP, "nonce": SAMPLE_NONCE}
    with pytest.raises(BadSignature):
        parse_message(SAMPLE_FROM_XML.encode(), args, credentials=SAMPLE_CREDENTIALS, now=int(SAMPLE_TIMESTAMP))


def test_official_sample_for_another_appid_is_refused() -> None:
    args = {
        "encrypt_type": "aes",
        "msg_signature": SAMPLE_MSG_SIGNATURE,
        "timestamp": SAMPLE_TIMESTAMP,
        "nonce": SAMPLE_NONCE,
    }
    other_app = ServerCredentials(SAMPLE_CREDENTIALS.token, SAMPLE_CREDENTIALS.aes_key, "wx0000000000000bad")
    with pytest.raises(BadSignature):
        parse_message(SAMPLE_FROM_XML.encode(), args, credentials=other_app, now=int(SAMPLE_TIMESTAMP))


def test_official_java_sample_ciphertext(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the sample's fixed random prefix, so that the ciphertext is deterministic
    monkeypatch.setattr(PrpCrypto, "get_random_string", lambda self: JAVA_RANDOM)
    crypto = WeChatCrypto(JAVA_CREDENTIALS.token, JAVA_CREDENTIALS.aes_key, JAVA_CREDENTIALS.appid)

    # when
    envelope = crypto.encrypt_message(JAVA_REPLY, JAVA_NONCE, JAVA_TIMESTAMP)

    # then: byte for byte the sample's ciphertext, and its signature by the documented algorithm
    expected_signature = sha1_signature(JAVA_CREDENTIALS.token, JAVA_TIMESTAMP, JAVA_NONCE, JAVA_ENCRYPTED)
    assert f"<Encrypt><![CDATA[{JAVA_ENCRYPTED}]]></Encrypt>" in envelope
    assert f"<MsgSignature><![CDATA[{expected_signature}]]></MsgSignature>" in envelope


def test_official_java_sample_is_read_in_safe_mode() -> None:
    body = f"<xml><ToUserName><![CDATA[toUser]]></ToUserName><Encrypt><![CDATA[{JAVA_ENCRYPTED}]]></Encrypt></xml>"
    args = {
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(JAVA_CREDENTIALS.token, JAVA_TIMESTAMP, JAVA_NONCE, JAVA_ENCRYPTED),
        "timestamp": JAVA_TIMESTAMP,
        "nonce": JAVA_NONCE,
    }

    inbound = parse_message(body.encode(), args, credentials=JAVA_CREDENTIALS, now=int(JAVA_TIMESTAMP))

    assert isinstance(inbound.message, VideoMessage)
    # (the sample is a passive reply, so its media sits in <Video>, not where a message keeps it)
    assert (inbound.message.source, inbound.message.target) == (
        "gh_7f083739789a",
        "oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw",
    )
    assert inbound.message.create_time.timestamp() == 1407743423


# -- replies ------------------------------------------------------------------------------------


def test_safe_mode_reply_round_trip() -> None:
    # given
    body = f"<xml><ToUserName><![CDATA[toUser]]></ToUserName><Encrypt><![CDATA[{JAVA_ENCRYPTED}]]></Encrypt></xml>"
    args = {
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(JAVA_CREDENTIALS.token, JAVA_TIMESTAMP, JAVA_NONCE, JAVA_ENCRYPTED),
        "timestamp": JAVA_TIMESTAMP,
        "nonce": JAVA_NONCE,
    }
    inbound = parse_message(body.encode(), args, credentials=JAVA_CREDENTIALS, now=int(JAVA_TIMESTAMP))

    # when
    reply = inbound.reply("余额：12.30 元")

    # then: WeChat (holding the same key) can check and decrypt it
    assert "余额" not in reply and "<Encrypt>" in reply
    envelope = _fields(reply)
    crypto = WeChatCrypto(JAVA_CREDENTIALS.token, JAVA_CREDENTIALS.aes_key, JAVA_CREDENTIALS.appid)
    plain = crypto.decrypt_message(reply, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    fields = _fields(plain)
    assert fields["Content"] == "余额：12.30 元"
    assert (fields["ToUserName"], fields["FromUserName"], fields["MsgType"]) == (
        "gh_7f083739789a",
        "oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw",
        "text",
    )


def _fields(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ElementTree.fromstring(xml)}


def test_nothing_to_say_is_success_in_every_mode() -> None:
    fake = FakeWeChat()
    creds = ServerCredentials(fake.settings.mp_token, "", fake.settings.mp_appid)
    inbound = parse_message(fake.text_message("alice", "hi").encode(), fake.mp_query(), credentials=creds)
    assert inbound.reply(None) == "success"
    assert not inbound.encrypted


# -- refusals ----------------------------------------------------------------------------------------

CREDS = ServerCredentials("sandboxtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxsandboxmp0000001")
# Plain mode is read only while no EncodingAESKey is configured.
PLAIN_CREDS = ServerCredentials(CREDS.token, "", CREDS.appid)


def signed_args(timestamp: int | None = None, **extra: str) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"signature": server_signature(CREDS.token, stamp, "4242"), "timestamp": stamp, "nonce": "4242", **extra}


TEXT = FakeWeChat().text_message("alice", "余额").encode()


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400])
def test_stale_or_future_timestamp_is_refused(offset: int) -> None:
    now = int(time.time())
    with pytest.raises(StaleRequest) as refused:
        parse_message(TEXT, signed_args(now + offset), credentials=PLAIN_CREDS, now=now)
    assert refused.value.status == 403


@pytest.mark.parametrize("offset", [-299, 0, 299])
def test_timestamp_within_five_minutes_is_accepted(offset: int) -> None:
    now = int(time.time())
    assert parse_message(TEXT, signed_args(now + offset), credentials=PLAIN_CREDS, now=now).message.content == "余额"


def test_non_numeric_timestamp_is_refused() -> None:
    args = {"signature": server_signature(CREDS.token, "soon", "1"), "timestamp": "soon", "nonce": "1"}
    with pytest.raises(StaleRequest):
        parse_message(TEXT, args, credentials=PLAIN_CREDS)


def test_wrong_signature_is_refused(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # Alembic's fileConfig (migrations/env.py) disables loggers that exist when migrations run.
    monkeypatch.setattr(server.log, "disabled", False)
    args = signed_args()
    args["signature"] = "0" * 40
    with pytest.raises(BadSignature):
        parse_message(TEXT, args, credentials=PLAIN_CREDS, remote_addr="203.0.113.9")
    assert "203.0.113.9" in caplog.text and "wrong signature" in caplog.text


def test_missing_signature_is_refused() -> None:
    args = signed_args()
    del args["signature"]
    with pytest.raises(BadSignature):
        parse_message(TEXT, args, credentials=PLAIN_CREDS)


def test_oversized_body_is_refused_before_anything_else() -> None:
    body = TEXT.replace(b"</xml>", b"<Pad>" + b"x" * (64 * 1024) + b"</Pad></xml>")
    args = signed_args()
    args["signature"] = "0" * 40  # even before the signature: we do not hash what we will not read
    with pytest.raises(MessageTooLarge) as refused:
        parse_message(body, args, credentials=PLAIN_CREDS)
    assert refused.value.status == 413


def test_body_of_exactly_64_kib_is_read() -> None:
    padding = 64 * 1024 - len(TEXT) - len(b"<Pad></Pad>")
    body = TEXT.replace(b"</xml>", b"<Pad>" + b"x" * padding + b"</Pad></xml>")
    assert len(body) == 64 * 1024
    assert parse_message(body, signed_args(), credentials=PLAIN_CREDS).message.content == "余额"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>alice</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&b;</Content><MsgId>1</MsgId></xml>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>alice</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&secret;</Content><MsgId>1</MsgId></xml>"""
BARE_DOCTYPE = b"""<!DOCTYPE xml><xml><MsgType>text</MsgType></xml>"""


@pytest.fixture
def wechatpy_parser_must_not_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Recorded rather than raised: parse_message turns any parser exception into BadMessage, which
    # would hide a body that reached wechatpy's parser.
    reached: list[Any] = []
    monkeypatch.setattr(server, "wechatpy_parse_message", reached.append)
    yield
    assert reached == [], "wechatpy parsed a body that defusedxml should have refused"


@pytest.mark.usefixtures("wechatpy_parser_must_not_run")
@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, BARE_DOCTYPE], ids=["entities", "xxe", "doctype"])
def test_doctype_and_entities_are_refused_in_plain_mode(body: bytes) -> None:
    with pytest.raises(BadMessage) as refused:
        parse_message(body, signed_args(), credentials=PLAIN_CREDS)
    assert refused.value.status == 400


@pytest.mark.usefixtures("wechatpy_parser_must_not_run")
@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE], ids=["entities", "xxe"])
def test_doctype_and_entities_are_refused_inside_the_ciphertext(body: bytes) -> None:
    # given: a correctly encrypted and signed message whose plaintext carries a DTD
    stamp, nonce = str(int(time.time())), "77"
    envelope = WeChatCrypto(CREDS.token, CREDS.aes_key, CREDS.appid).encrypt_message(body.decode(), nonce, stamp)
    fields = _fields(envelope)
    wrapped = f"<xml><ToUserName>gh</ToUserName><Encrypt>{fields['Encrypt']}</Encrypt></xml>".encode()
    args = {"encrypt_type": "aes", "msg_signature": fields["MsgSignature"], "timestamp": stamp, "nonce": nonce}

    with pytest.raises(BadMessage):
        parse_message(wrapped, args, credentials=CREDS)


@pytest.mark.parametrize(
    "body",
    [b"not xml", b"<xml><MsgType>text</MsgType>", b"<root><MsgType>text</MsgType></root>", b"<xml></xml>", b"\xff\xfe"],
    ids=["text", "truncated", "other-root", "no-msgtype", "not-utf8"],
)
def test_unreadable_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(BadMessage):
        parse_message(body, signed_args(), credentials=PLAIN_CREDS)


def test_unknown_encrypt_type_is_refused() -> None:
    with pytest.raises(BadMessage):
        parse_message(TEXT, signed_args(encrypt_type="rot13"), credentials=CREDS)


def test_aes_mode_without_encrypt_element_is_refused() -> None:
    with pytest.raises(BadMessage):
        parse_message(TEXT, signed_args(encrypt_type="aes", msg_signature="0" * 40), credentials=CREDS)


def test_aes_mode_with_wrong_plain_signature_is_refused() -> None:
    args = signed_args(encrypt_type="aes", msg_signature="0" * 40)
    args["signature"] = "1" * 40
    with pytest.raises(BadSignature):
        parse_message(TEXT, args, credentials=PLAIN_CREDS)


# -- URL verification -------------------------------------------------------------------------------


def test_verify_url_returns_echostr() -> None:
    args = MultiDict(signed_args(echostr="5837397520112348763"))
    assert verify_url(args, credentials=CREDS) == "5837397520112348763"


def test_verify_url_with_a_wrong_signature() -> None:
    args = signed_args(echostr="5837397520112348763")
    args["nonce"] = "4243"
    with pytest.raises(BadSignature):
        verify_url(args, credentials=CREDS)


# -- through HTTP, as WeChat sends it: plain, compatible and safe mode ---------------------------------


def make_mp_app(**overrides: Any) -> Flask:
    """A stand-in for the /wechat/mp blueprint: parse, answer the balance question."""
    app = Flask(__name__)
    config = {**FakeWeChat().app_config("http://x/", "http://x/"), **overrides}
    app.config.update(TESTING=True, WECHAT_SANDBOX=False, **config)
    wechat.init_app(app)

    @app.route("/wechat/mp", methods=["GET", "POST"])
    def mp() -> Any:
        if request.method == "GET":
            return Response(verify_url(request.args), mimetype="text/plain")
        inbound = parse_message(request.get_data(), request.args)
        wants_balance = getattr(inbound.message, "content", None) == "余额" or (
            getattr(inbound.message, "key", None) == "MY_BALANCE"
        )
        body = inbound.reply("余额：12.30 元" if wants_balance else None)
        return Response(body, mimetype="text/plain" if body == "success" else "text/xml")

    @app.errorhandler(BadSignature)
    @app.errorhandler(BadMessage)
    def refused(error: Any) -> Any:
        return {"error": {"code": error.code}}, error.status

    return app


@pytest.fixture
def mp_app() -> Flask:
    return make_mp_app()


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_balance_question_in_each_mode(mode: str) -> None:
    # plain mode is served only by an app without an EncodingAESKey
    app = make_mp_app(WECHAT_MP_AES_KEY="") if mode == "plain" else make_mp_app()
    fake = FakeWeChat()
    reply = fake.mp_post(app.test_client(), fake.text_message("alice", "余额"), encrypt=mode == "safe")

    assert reply.status == 200
    assert reply.content == "余额：12.30 元"
    assert reply.encrypted is (mode != "plain")
    assert reply.fields is not None and reply.fields["ToUserName"] == "alice"


def test_click_event_in_safe_mode(mp_app: Flask) -> None:
    fake = FakeWeChat()
    reply = fake.mp_post(mp_app.test_client(), fake.click_event("alice", "MY_BALANCE"), encrypt=True)
    assert reply.encrypted and reply.content == "余额：12.30 元"


def test_nothing_to_say_in_safe_mode(mp_app: Flask) -> None:
    fake = FakeWeChat()
    reply = fake.mp_post(mp_app.test_client(), fake.text_message("alice", "hello"), encrypt=True)
    assert (reply.status, reply.text) == (200, "success")


def test_url_verification_through_http(mp_app: Flask) -> None:
    assert FakeWeChat().mp_verify(mp_app.test_client(), "1234567890") == (200, "1234567890")


def test_stale_message_through_http(mp_app: Flask) -> None:
    fake = FakeWeChat()
    reply = fake.mp_post(
        mp_app.test_client(), fake.text_message("alice", "余额"), timestamp=str(int(time.time()) - 600)
    )
    assert reply.status == 403
