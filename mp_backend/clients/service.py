"""Open-API clients: creation, the request signature of DESIGN.md section 5, nonces, idempotent replays.

The signature is the lowercase hex HMAC-SHA256, keyed with the client's secret, of::

    METHOD \\n PATH_WITH_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA256(body))

HMAC needs the secret itself on our side, so it cannot be stored as a one-way hash. It is stored
encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with a key derived from ``SECRET_KEY``: a database dump
alone gives no secret away, and the key never sits next to the data. Rotating ``SECRET_KEY`` makes
the stored secrets unreadable: the clients are then created again (README).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from .. import hotpath
from ..errors import AppError, Forbidden, IdempotencyConflict, NotFound, Unauthorized, ValidationFailed
from ..extensions import db, jobs
from ..hotpath import Sql
from ..models_base import utcnow
from ..org.models import Staff, Store
from ..org.service import audit, store_by_code
from ..transaction import RetryTransaction, transactional
from .models import OpenClient

log = logging.getLogger(__name__)

TIMESTAMP_WINDOW = 300  # seconds either side of our clock
NONCE_TTL = 2 * TIMESTAMP_WINDOW  # a nonce must be remembered as long as its timestamp could still pass
NONCE_MIN, NONCE_MAX = 16, 64
IDEMPOTENCY_KEY_MAX = 64
HEADERS = ("X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature")
_PRUNE_EVERY = 200  # without Redis, about one nonce insert in this many also deletes expired nonces


class SignatureRejected(Unauthorized):
    """401 with a stable code: signature_missing, client_unknown, timestamp_invalid, timestamp_expired,
    nonce_invalid, nonce_reused, signature_invalid."""


class ClientDeactivated(Forbidden):
    """A correctly signed request of a client the merchant deactivated (``flask clients deactivate``)."""

    code, message = "client_deactivated", "该客户端已被商户停用，请联系商户管理员"


@dataclass(frozen=True)
class Client:
    id: int
    client_id: str
    name: str
    store_id: int | None
    store_code: str | None

    @property
    def operator(self) -> str:
        return f"open:{self.client_id}"[:64]

    def ledger_key(self, idempotency_key: str) -> str:
        """The ledger's idempotency key for this client's request: unique across clients."""
        return f"open:{self.id}:{idempotency_key}"


@dataclass(frozen=True)
class CreatedClient:
    client: Client
    secret: str


# ---------------------------------------------------------------------------------------------------
# The signature (the README's worked example is checked against these two functions and against an
# independent client written from the README)


def string_to_sign(method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join((method.upper(), path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()))


def signature(secret: str, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = string_to_sign(method, path_with_query, timestamp, nonce, body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Secrets at rest


def _fernet() -> Fernet:
    # A key of its own, derived from SECRET_KEY for this one purpose (a token signer never sees it).
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), b"open-api client secrets v1", hashlib.sha256)
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def _encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def _decrypt(ciphertext: str) -> str | None:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None  # SECRET_KEY changed since the client was created: it must be created again


@transactional
def create_client(name: str, store_code: str | None = None) -> CreatedClient:
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ValidationFailed("客户端名称必须是 1-64 个字符", code="invalid_client_name")
    store = store_by_code(store_code) if store_code else None
    secret = secrets.token_urlsafe(32)
    row = OpenClient(
        client_id="tc_" + secrets.token_hex(12),
        name=name,
        store_id=store.id if store else None,
        secret_ciphertext=_encrypt(secret),
    )
    db.session.add(row)
    db.session.flush()
    return CreatedClient(Client(row.id, row.client_id, row.name, row.store_id, store_code), secret)


@dataclass(frozen=True)
class ClientInfo:
    """A client as ``flask clients list`` shows it."""

    client_id: str
    name: str
    store_code: str | None
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


def list_clients() -> list[ClientInfo]:
    rows = db.session.execute(
        select(OpenClient, Store.code).outerjoin(Store, Store.id == OpenClient.store_id).order_by(OpenClient.id)
    ).all()
    return [ClientInfo(c.client_id, c.name, code, bool(c.active), c.created_at, c.deactivated_at) for c, code in rows]


class ClientAmbiguous(ValidationFailed):
    code, message = "client_ambiguous", "有多个客户端使用这个名称，请用 client_id 指定"


@transactional
def set_active(ref: str, active: bool, *, by: str, reason: str = "") -> tuple[ClientInfo, bool]:
    """Deactivate or reactivate a client named by its ``client_id`` or its name; (the client, whether it
    changed). A change is one audit row (who: ``by``, a staff username when it is one; when: the row's
    time; why: ``reason``) in the same transaction. A deactivated client moves no money from the commit on
    (``_run_idempotent``); a worker's cache lets it read, or a reactivated one back in, within
    ``OPEN_CLIENT_CACHE_SECONDS``."""
    by = (by or "").strip()
    if not by or len(by) > 64:
        raise ValidationFailed("请用 --by 写明操作人（最长 64 个字符）", code="invalid_operator")
    if not isinstance(reason, str) or len(reason) > 200:
        raise ValidationFailed("原因最长 200 个字符", code="invalid_reason")
    found = db.session.scalars(
        select(OpenClient).where(or_(OpenClient.client_id == ref, OpenClient.name == ref)).with_for_update()
    ).all()
    by_id = [c for c in found if c.client_id == ref]
    if by_id:
        found = by_id
    if not found:
        raise NotFound("客户端不存在", code="client_not_found")
    if len(found) > 1:
        raise ClientAmbiguous(details={"client_ids": [c.client_id for c in found]})
    client = found[0]
    changed = bool(client.active) != active
    if changed:
        client.active = active
        if not active:
            client.deactivated_at = utcnow()
        staff_id = db.session.scalar(select(Staff.id).where(Staff.username == by))
        action = "open_client_reactivate" if active else "open_client_deactivate"
        audit(staff_id, action, f"open_client:{client.client_id}", f"by {by}" + (f": {reason}" if reason else ""))
        db.session.flush()
    code = db.session.scalar(select(Store.code).where(Store.id == client.store_id)) if client.store_id else None
    info = ClientInfo(client.client_id, client.name, code, active, client.created_at, client.deactivated_at)
    return info, changed


# ---------------------------------------------------------------------------------------------------
# Verifying a request


def _reject(code: str, message: str, client_id: str, path: str, remote: str | None) -> SignatureRejected:
    # Never the secret, the signature or the body: who, which path, and why.
    log.warning("open api request rejected: %s (client %r, %s, from %s)", code, client_id[:40], path[:200], remote)
    return SignatureRejected(message, code=code)


def verify_request(
    *,
    method: str,
    path_with_query: str,
    headers: Any,
    body: bytes,
    remote_addr: str | None = None,
    remember_nonce: bool = True,
) -> Client:
    """Check the four X-* headers and the signature; remember the nonce. Raises ``SignatureRejected``.

    ``remember_nonce=False`` leaves the nonce to the caller's transaction (``run_idempotent(nonce=...)``,
    or ``remember_nonce`` when the request ends before it): see ``nonce_in_transaction``."""
    values = {name: headers.get(name) for name in HEADERS}
    client_id = values["X-Client-Id"] or ""
    path = path_with_query.split("?", 1)[0]

    def reject(code: str, message: str) -> SignatureRejected:
        return _reject(code, message, client_id, path, remote_addr)

    missing = [name for name, value in values.items() if not value]
    if missing:
        raise reject("signature_missing", f"缺少签名请求头：{', '.join(missing)}")
    known = _known_client(client_id)
    if known is None:
        raise reject("client_unknown", "客户端不存在或已停用")
    row, secret = known
    timestamp = values["X-Timestamp"]
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise reject("timestamp_invalid", "X-Timestamp 必须是 Unix 秒数")
    if abs(int(timestamp) - time.time()) > TIMESTAMP_WINDOW:
        raise reject("timestamp_expired", "请求时间与服务器相差超过 300 秒，请校准时钟后重试")
    nonce = values["X-Nonce"]
    if not (NONCE_MIN <= len(nonce) <= NONCE_MAX and nonce.isascii() and nonce.isprintable() and " " not in nonce):
        raise reject("nonce_invalid", "X-Nonce 必须是 16-64 个可见 ASCII 字符")
    if secret is None:
        log.error("open api client %s: its secret cannot be decrypted (SECRET_KEY changed?)", row.client_id)
        raise reject("client_unknown", "客户端不存在或已停用")
    expected = signature(secret, method, path_with_query, timestamp, nonce, body)
    given = values["X-Signature"]
    if not (given.isascii() and hmac.compare_digest(expected, given)):
        raise reject("signature_invalid", "签名错误")
    if not row.active:  # told only to the holder of the secret: others learn nothing about the client
        log.warning("open api request rejected: client_deactivated (client %r, %s, from %s)", client_id, path[:200],
                    remote_addr)  # fmt: skip
        raise ClientDeactivated()
    client = Client(row.id, row.client_id, row.name, row.store_id, row.store_code)
    if remember_nonce:
        _remember_nonce(client, nonce, remote_addr)
    return client


@dataclass(frozen=True)
class _ClientRow:
    id: int
    client_id: str
    name: str
    store_id: int | None
    secret_ciphertext: str
    store_code: str | None
    active: bool


# Inactive clients too: a deactivated one that signs correctly is told so (403 client_deactivated).
_CLIENT_BY_ID = Sql(
    "SELECT c.id, c.client_id, c.name, c.store_id, c.secret_ciphertext, s.code, c.active FROM open_client c "
    "LEFT OUTER JOIN store s ON s.id = c.store_id WHERE c.client_id = ?"
)
_CACHE_MAX = 1000


def client_cache_seconds() -> float:
    """How long a worker process may keep a client row and its decrypted secret (``OPEN_CLIENT_CACHE_SECONDS``,
    default 5). A deactivated client moves no money from the moment the deactivation commits (``_stored``
    reads the flag in the operation's own transaction); within this time it may still read (member
    lookup, charge query).
    A reactivated client is let in again within this time."""
    value = current_app.config.get("OPEN_CLIENT_CACHE_SECONDS")
    if value is None:
        value = os.environ.get("OPEN_CLIENT_CACHE_SECONDS") or 5
    return max(0.0, float(value))


def _known_client(client_id: str) -> tuple[_ClientRow, str | None] | None:
    """The active client and its secret (None when it cannot be decrypted), from this process's short-lived
    cache: one round trip and one decryption fewer per request. Unknown ids are never cached."""
    if len(client_id) > 40:
        return None
    cache: dict[tuple[str, str], tuple[float, _ClientRow, str | None]] = current_app.extensions.setdefault(
        "open_client_cache", {}
    )
    key = (client_id, current_app.config["SECRET_KEY"])  # a rotated key decrypts nothing it did not encrypt
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    row = _load_client(client_id)
    if row is None:
        cache.pop(key, None)
        return None
    secret = _decrypt(row.secret_ciphertext)
    ttl = client_cache_seconds()
    if ttl > 0:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = (now + ttl, row, secret)
    return row, secret


def _load_client(client_id: str) -> _ClientRow | None:
    found = _CLIENT_BY_ID.one(hotpath.cursor(), (client_id,))
    return None if found is None else _ClientRow(*found[:6], active=bool(found[6]))


def nonce_in_transaction() -> bool:
    """Without Redis a nonce is a row in ``open_nonce``: a mutating request takes it into its own
    transaction (one commit instead of two) and a refused one still burns it (``run_idempotent``).
    With Redis it is a SET NX, done at once by ``verify_request``."""
    return jobs.redis is None


def remember_nonce(client: Client, nonce: str, remote_addr: str | None = None) -> None:
    """Burn a nonce that ``verify_request`` left to the caller, in its own transaction (a request that
    ended before its operation ran). ``SignatureRejected`` (nonce_reused) when it was used already."""
    _remember_nonce(client, nonce, remote_addr)


def _remember_nonce(client: Client, nonce: str, remote_addr: str | None) -> None:
    """Record a nonce the first time it is seen within its window; ``nonce_reused`` after (also under races)."""
    if jobs.redis is not None:
        fresh = bool(jobs.redis.set(f"open:nonce:{client.id}:{nonce}", b"1", nx=True, ex=NONCE_TTL))
    else:
        try:
            _insert_nonce_alone(client.id, nonce)
            fresh = True
        except IntegrityError:
            fresh = False
    if not fresh:
        raise _nonce_reused(client, remote_addr)


def _nonce_reused(client: Client, remote_addr: str | None) -> SignatureRejected:
    return _reject(
        "nonce_reused", "X-Nonce 已使用过，每个请求须用新的随机串", client.client_id, "(open api)", remote_addr
    )


_INSERT_NONCE = Sql("INSERT INTO open_nonce (client_id, nonce, created_at) VALUES (?, ?, ?)")
# The nonce, and in the same round trip what ``_stored`` would say: inserted only while the client is active
# and the Idempotency-Key has no answer (a new request, the usual case). Consistent reads of open_client and
# open_request at READ COMMITTED, as ``_stored`` makes them: no lock taken.
_INSERT_NONCE_IF_NEW = Sql(
    "INSERT INTO open_nonce (client_id, nonce, created_at) SELECT ?, ?, ? FROM open_client c WHERE c.id = ? "
    "AND c.active = 1 AND NOT EXISTS (SELECT 1 FROM open_request r WHERE r.client_id = ? AND r.idempotency_key = ?)"
)
_PRUNE_NONCES = Sql("DELETE FROM open_nonce WHERE created_at < ?")


def _insert_nonce(client_pk: int, nonce: str, *, if_new: str | None = None) -> bool:
    """In the caller's transaction; a nonce seen before fails on the UNIQUE (client_id, nonce).

    ``if_new``: an Idempotency-Key; False (nothing inserted) when it has a stored answer or the client is
    deactivated (``_stored`` tells which)."""
    tx = hotpath.cursor()
    if if_new is None:
        _INSERT_NONCE.run(tx, (client_pk, nonce, tx.timestamp()))
    else:
        params = (client_pk, nonce, tx.timestamp(), client_pk, client_pk, if_new)
        if _INSERT_NONCE_IF_NEW.run(tx, params).rowcount != 1:
            return False
    if random.randrange(_PRUNE_EVERY) == 0:
        cutoff = utcnow() - timedelta(seconds=NONCE_TTL + 60)
        _PRUNE_NONCES.run(tx, (cutoff.strftime("%Y-%m-%d %H:%M:%S.%f") if tx.sql.sqlite else cutoff,))
    return True


_insert_nonce_alone = transactional(_insert_nonce)


# ---------------------------------------------------------------------------------------------------
# Idempotency-Key


def check_idempotency_key(value: str | None) -> str:
    if not value:
        raise ValidationFailed("缺少 Idempotency-Key 请求头（每笔操作一个唯一请求号）", code="idempotency_key_required")
    # Visible ASCII: printable and no space (a key with spaces is too easily retyped differently).
    if len(value) > IDEMPOTENCY_KEY_MAX or not (value.isascii() and value.isprintable()) or " " in value:
        raise ValidationFailed("Idempotency-Key 必须是 1-64 个可见 ASCII 字符", code="invalid_idempotency_key")
    return value


def request_hash(method: str, path: str, body: Any) -> str:
    """What defines a request under one key: method, path and the JSON body (key order does not matter)."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    text: str = ""  # the body as stored: compact JSON, what the response sends


def run_idempotent(
    client: Client,
    key: str,
    fingerprint: str,
    operation: Callable[[], tuple[int, dict[str, Any]]],
    *,
    nonce: str | None = None,
) -> Answer:
    """Run ``operation`` (which writes through the ledger with keys derived from ``key``) once per key.

    The answer is stored with the operation in one transaction. A retry finds it; a racing copy loses
    on the ledger's UNIQUE key (``RetryTransaction``) and then finds it; a copy that failed for a
    reason the first one changed (the payment code it consumed) also looks again before answering.

    ``nonce``: the request's nonce, left by ``verify_request(remember_nonce=False)``. It is the
    transaction's first row, so a reused one is refused (401) before anything else and a racing copy
    waits on its UNIQUE key; when the operation is refused and rolled back, it is burnt on its own."""
    try:
        return _run_idempotent(client.id, key, fingerprint, operation, nonce)
    except _NonceTaken:
        raise _nonce_reused(client, None) from None
    except IdempotencyConflict:
        if nonce is not None:
            remember_nonce(client, nonce)
        raise
    except AppError:
        db.session.rollback()
        if nonce is not None:
            remember_nonce(client, nonce)
        try:
            stored = _stored(client.id, key)
        finally:
            db.session.rollback()
        if stored is None:
            raise
        return _replay(stored, fingerprint)


class _NonceTaken(Exception):
    """The request's nonce is in ``open_nonce`` already: the transaction is rolled back, the answer is 401."""


# The key's stored answer, and the client's active flag as the operation's own transaction reads it
# (whatever a worker's cache says), in the one statement the operation starts with anyway.
_STORED = Sql(
    "SELECT c.active, r.request_hash, r.status_code, r.response_json FROM open_client c "
    "LEFT OUTER JOIN open_request r ON r.client_id = c.id AND r.idempotency_key = ? WHERE c.id = ?"
)
_STORE_ANSWER = Sql(
    "INSERT INTO open_request (client_id, idempotency_key, request_hash, status_code, response_json, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


@transactional
def _run_idempotent(
    client_pk: int,
    key: str,
    fingerprint: str,
    operation: Callable[[], tuple[int, dict[str, Any]]],
    nonce: str | None,
) -> Answer:
    stored = None
    if nonce is not None:
        try:
            if not _insert_nonce(client_pk, nonce, if_new=key):  # a retry, or a deactivated client
                _insert_nonce(client_pk, nonce)  # burnt all the same
                stored = _stored(client_pk, key)
        except IntegrityError:
            raise _NonceTaken() from None
    else:  # the nonce is in Redis already
        stored = _stored(client_pk, key)
    if stored is not None:
        return _replay(stored, fingerprint)
    status, body = operation()
    tx = hotpath.cursor()
    answer = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        _STORE_ANSWER.run(tx, (client_pk, key, fingerprint, status, answer, tx.timestamp()))
    except IntegrityError as error:  # a racing copy with the same key committed first
        raise RetryTransaction() from error
    return Answer(status, body, text=answer)


def _stored(client_pk: int, key: str) -> tuple[str, int, str] | None:
    """The answer stored under ``key``, if any. ``ClientDeactivated`` when the client is stopped: a
    deactivated client moves no money and gets no stored answer from the moment that commits."""
    row = _STORED.one(hotpath.cursor(), (key, client_pk))
    if row is None or not row[0]:
        raise ClientDeactivated()
    return None if row[1] is None else (row[1], row[2], row[3])


def _replay(stored: tuple[str, int, str], fingerprint: str) -> Answer:
    first_hash, status, body = stored
    if first_hash != fingerprint:
        raise IdempotencyConflict("该 Idempotency-Key 已用于另一笔内容不同的请求")
    return Answer(status, json.loads(body), replayed=True, text=body)
