"""The official account's server URL: is this request from WeChat, what does it say, how to answer.

The ``/wechat/mp`` blueprint calls ``verify_url`` for WeChat's GET check and ``parse_message`` for
each POST, then answers ``inbound.reply(text or None)``. Everything here raises AppErrors:
``BadSignature`` / ``StaleRequest`` (403) and ``BadMessage`` (400) / ``MessageTooLarge`` (413).

Order of checks, cheapest and most decisive first: size, mode, signature, timestamp, XML safety
(defusedxml, before wechatpy's own parser sees a byte), then decryption, the sender's identity and
parsing; last, whether this nonce or message was already seen in the timestamp window (a repeat is
answered ``success`` and not acted on: ``InboundMessage.repeat``).

In plain mode the signature covers only token, timestamp and nonce, not the body: one signed query
string from any access log could carry any body for five minutes. So once an EncodingAESKey is
configured only safe mode is accepted (plain and compatible mode are refused: the plaintext copy of
compatible mode is unsigned too), and the official account must be set to safe mode in WeChat.
"""

from __future__ import annotations

import binascii
import logging
import re
import struct
import time
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from flask import has_request_context, request
from wechatpy import parse_message as wechatpy_parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import BaseReply, TextReply, create_reply
from wechatpy.utils import check_signature as wechatpy_check_signature
from wechatpy.utils import random_string

from .errors import BadMessage, BadSignature, MessageTooLarge, SafeModeRequired, StaleRequest
from .shared import SeenOnce
from .state import current_state

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # WeChat's largest messages (articles, location) are a few KiB
MAX_CLOCK_SKEW_SECONDS = 300
MAX_ECHOSTR_LENGTH = 256
MAX_TIMESTAMP_DIGITS = 12  # unix seconds; anything longer is no time WeChat would send
# A sender is an openid (28 characters today); the recipient is the account's original id (gh_...).
OPENID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
RECIPIENT_PATTERN = re.compile(r"[^\s<>&]{1,64}")
MSG_ID_PATTERN = re.compile(r"[0-9]{1,32}")
SAFE_ENVELOPE_TAGS = frozenset({"ToUserName", "Encrypt"})
# Nonces and message ids are remembered for as long as a timestamp is accepted, either side of now.
REPLAY_WINDOW_SECONDS = 2 * MAX_CLOCK_SKEW_SECONDS + 60
EMPTY_REPLY = "success"  # what WeChat expects when we have nothing to say (in every mode)


@dataclass(frozen=True)
class ServerCredentials:
    token: str
    aes_key: str
    appid: str


def current_credentials() -> ServerCredentials:
    settings = current_state().settings
    return ServerCredentials(settings.mp_token, settings.mp_aes_key, settings.mp_appid)


def _remote(remote_addr: str | None) -> str:
    if remote_addr:
        return remote_addr
    return (request.remote_addr or "?") if has_request_context() else "?"


def _reject(error: Exception, reason: str, remote_addr: str | None) -> Exception:
    log.warning("wechat server URL: rejected request from %s: %s", _remote(remote_addr), reason)
    return error


def check_signature(
    token: str,
    signature: str | None,
    timestamp: str | None,
    nonce: str | None,
    *,
    now: float | None = None,
    remote_addr: str | None = None,
) -> None:
    """WeChat's ``signature`` (sha1 of the sorted token, timestamp, nonce), then its age.

    Raises ``BadSignature`` when it does not match, ``StaleRequest`` when the timestamp is more than
    five minutes away from ``now`` (a replayed request, since the signature has no other freshness).
    """
    if not token:
        # An empty token would make every request "valid" for anyone who can compute sha1.
        raise _reject(BadSignature(), "no WECHAT_MP_TOKEN configured", remote_addr)
    if not signature or not timestamp or not nonce:
        raise _reject(BadSignature(), "signature, timestamp or nonce missing", remote_addr)
    try:
        wechatpy_check_signature(token, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise _reject(BadSignature(), "wrong signature", remote_addr) from None
    check_timestamp(timestamp, now=now, remote_addr=remote_addr)


def check_timestamp(timestamp: str | None, *, now: float | None = None, remote_addr: str | None = None) -> None:
    text = timestamp or ""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS):
        raise _reject(StaleRequest(), f"timestamp {text[:20]!r} is not unix seconds", remote_addr)
    sent_at = int(text)
    current = time.time() if now is None else now
    if abs(current - sent_at) > MAX_CLOCK_SKEW_SECONDS:
        raise _reject(StaleRequest(), f"timestamp {sent_at} is {int(current - sent_at)} s from now", remote_addr)


def verify_url(query_args: Any, *, credentials: ServerCredentials | None = None, now: float | None = None) -> str:
    """WeChat's GET check of the server URL: the ``echostr`` to send back, once the signature holds."""
    creds = credentials or current_credentials()
    check_signature(
        creds.token, query_args.get("signature"), query_args.get("timestamp"), query_args.get("nonce"), now=now
    )
    echostr = query_args.get("echostr") or ""
    if not echostr or len(echostr) > MAX_ECHOSTR_LENGTH:
        raise _reject(BadMessage(), "echostr missing or too long", None)
    return str(echostr)


def _safe_xml(text: str, remote_addr: str | None) -> Element:
    """Parse with defusedxml, refusing any DTD (and so every entity) before wechatpy's parser runs."""
    try:
        root = SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise _reject(BadMessage(), f"forbidden XML construct: {type(error).__name__}", remote_addr) from None
    except ParseError as error:
        raise _reject(BadMessage(), f"not XML: {error}", remote_addr) from None
    if root.tag != "xml":
        raise _reject(BadMessage(), f"root element is <{root.tag}>", remote_addr)
    return root


@dataclass
class InboundMessage:
    """A message or event from WeChat, and how to answer it in the mode it came in."""

    message: BaseMessage
    encrypted: bool
    _crypto: WeChatCrypto | None = None
    repeat: bool = False  # already received in the timestamp window: acknowledge, do not act again

    @property
    def openid(self) -> str:
        return str(self.message.source)

    def reply(self, content: str | BaseReply | None) -> str:
        """The response body: a text reply (or any wechatpy reply), encrypted in safe mode.

        ``None`` gives ``success``, which tells WeChat "received, nothing to say" in every mode.
        Serve it as ``text/xml`` (``text/plain`` for ``success``), status 200.
        """
        if content is None or content == "":
            return EMPTY_REPLY
        if isinstance(content, BaseReply):
            reply = create_reply(content, message=self.message)
        else:
            reply = TextReply(message=self.message, content=content)
        xml = reply.render()
        if self._crypto is None:
            return str(xml)
        return str(self._crypto.encrypt_message(xml, random_string(16)))


def parse_message(
    body: bytes,
    query_args: Any,
    *,
    credentials: ServerCredentials | None = None,
    now: float | None = None,
    remote_addr: str | None = None,
    seen_once: SeenOnce | None = None,
) -> InboundMessage:
    """Check and read one POST to the server URL: safe mode once an EncodingAESKey is configured,
    plain mode only without one.

    ``query_args`` is ``request.args`` (anything with ``.get``). ``seen_once`` (the app's, see
    ``shared.py``) detects repeats; without it nothing is remembered.
    """
    creds = credentials or current_credentials()
    if len(body) > MAX_BODY_BYTES:
        raise _reject(MessageTooLarge(), f"body of {len(body)} bytes", remote_addr)

    encrypt_type = (query_args.get("encrypt_type") or "raw").lower()
    timestamp = query_args.get("timestamp")
    nonce = query_args.get("nonce")
    if encrypt_type == "aes":
        msg_signature = query_args.get("msg_signature")
        if not msg_signature:
            raise _reject(BadSignature(), "msg_signature missing in AES mode", remote_addr)
        if query_args.get("signature"):  # WeChat sends both; a wrong one is a forgery either way
            check_signature(
                creds.token, query_args.get("signature"), timestamp, nonce, now=now, remote_addr=remote_addr
            )
        elif not timestamp or not nonce:
            raise _reject(BadSignature(), "timestamp or nonce missing", remote_addr)
        # Without ``signature`` the timestamp is checked once msg_signature holds (below): nothing an
        # unsigned request says is read before its signature.
    elif encrypt_type == "raw":
        if creds.aes_key:
            raise _reject(SafeModeRequired(), "plain mode while an EncodingAESKey is configured", remote_addr)
        msg_signature = None
        check_signature(creds.token, query_args.get("signature"), timestamp, nonce, now=now, remote_addr=remote_addr)
    else:
        raise _reject(BadMessage(), f"unknown encrypt_type {str(encrypt_type)[:20]!r}", remote_addr)

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _reject(BadMessage(), "body is not UTF-8", remote_addr) from None
    envelope = _safe_xml(text, remote_addr)

    crypto: WeChatCrypto | None = None
    root = envelope
    if msg_signature is not None:
        encrypted_part = envelope.findtext("Encrypt")
        if not encrypted_part:
            raise _reject(BadMessage(), "no <Encrypt> in AES mode", remote_addr)
        if not creds.aes_key:
            raise _reject(BadMessage(), "AES message but no WECHAT_MP_AES_KEY configured", remote_addr)
        crypto = WeChatCrypto(creds.token, creds.aes_key, creds.appid)
        try:
            # A dict, so that wechatpy does not parse the (already checked) envelope a second time.
            text = crypto.decrypt_message({"Encrypt": encrypted_part}, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise _reject(BadSignature(), "wrong msg_signature", remote_addr) from None
        except InvalidAppIdException:
            raise _reject(BadSignature(), "encrypted for another appid", remote_addr) from None
        except (ValueError, binascii.Error, struct.error, UnicodeDecodeError, IndexError) as error:
            raise _reject(BadMessage(), f"cannot decrypt: {type(error).__name__}", remote_addr) from None
        check_timestamp(timestamp, now=now, remote_addr=remote_addr)
        extra = {child.tag for child in envelope} - SAFE_ENVELOPE_TAGS
        if extra:  # compatible mode: an unsigned plaintext copy rides beside the ciphertext
            raise _reject(SafeModeRequired(), "compatible mode (plaintext beside <Encrypt>)", remote_addr)
        root = _safe_xml(text, remote_addr)

    sender = _identity(root, "FromUserName", OPENID_PATTERN, remote_addr)
    _identity(root, "ToUserName", RECIPIENT_PATTERN, remote_addr)
    repeat = _seen_before(seen_once, root, sender, str(timestamp), str(nonce))
    try:
        message = wechatpy_parse_message(text)
    except Exception as error:  # wechatpy raises KeyError/TypeError/... on a body without MsgType etc.
        raise _reject(BadMessage(), f"unreadable message: {type(error).__name__}", remote_addr) from None
    if message is None:
        raise _reject(BadMessage(), "empty message", remote_addr)
    if repeat:
        log.info("wechat server URL: repeated message from %s answered without acting", sender)
    return InboundMessage(message=message, encrypted=crypto is not None, _crypto=crypto, repeat=repeat)


def _identity(root: Element, tag: str, pattern: re.Pattern[str], remote_addr: str | None) -> str:
    """A sender or recipient: exactly one element, plain text (no children), of sane characters and length."""
    nodes = root.findall(tag)
    if len(nodes) != 1 or len(nodes[0]) or not pattern.fullmatch(nodes[0].text or ""):
        shown = [(node.text or "")[:20] for node in nodes[:3]]
        raise _reject(BadMessage(), f"{tag} is not one plain openid: {len(nodes)} element(s) {shown!r}", remote_addr)
    return str(nodes[0].text)


def _seen_before(seen_once: SeenOnce | None, root: Element, sender: str, timestamp: str, nonce: str) -> bool:
    """Remember the request's nonce and the message's id for the replay window; True if either was seen.

    WeChat retries a message it got no answer to (same MsgId, or for events the same sender and
    CreateTime) and an attacker may resend a request byte for byte (same nonce): both are repeats.
    """
    if seen_once is None:
        return False
    seen = not seen_once.first_time(f"wechat_mp:nonce:{timestamp}:{nonce}", REPLAY_WINDOW_SECONDS)
    msg_id = (root.findtext("MsgId") or "").strip()
    if MSG_ID_PATTERN.fullmatch(msg_id):
        message_key = f"wechat_mp:msg:{msg_id}"
    else:
        created = (root.findtext("CreateTime") or "").strip()[:16]
        event = (root.findtext("Event") or "").strip()[:32]
        message_key = f"wechat_mp:event:{sender}:{created}:{event}"
    # Both are recorded even when the first is a repeat, so a retry with a new nonce is caught too.
    return not seen_once.first_time(message_key, REPLAY_WINDOW_SECONDS) or seen
