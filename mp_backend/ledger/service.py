"""The ledger service: the only code that changes a wallet.

Every operation is one ledger row plus one UPDATE of the wallet, in one transaction:

1. lock the wallet row (``SELECT ... FOR UPDATE``; SQLite transactions begin IMMEDIATE instead), which
   serialises everything that touches one wallet and nothing else;
2. decide the deltas per bucket from the locked values (the spending policy needs them);
3. ``INSERT`` the ledger row, whose ``idempotency_key`` is UNIQUE;
4. ``UPDATE wallet SET bucket = bucket + delta``; named CHECK constraints refuse a negative bucket.

The hot path issues these statements on the transaction's own driver cursor, pre-rendered once per
dialect, with SQLAlchemy's error translation kept (``DBAPIError.instance``: a duplicate key is an
``IntegrityError``, a deadlock an ``OperationalError`` that ``transactional`` retries). SQLAlchemy's
execution layer cost more CPU per debit than the database's own commit (``shared/PERF.md``); the ORM
is used everywhere else.

Idempotency: every call carries a key. A second call with the same key and the same request returns
the first result (``replayed=True``) and changes nothing; with a different request it is refused with
``idempotency_conflict``. The UNIQUE key decides races: the loser's INSERT fails, its transaction is
rolled back, and it answers with the winner's row. Inside a larger service call (a recharge, an
order: ``in_transaction()``), the duplicate key is answered the same way within that transaction, or,
when the winner committed after the transaction's snapshot, by restarting the whole call
(``RetryTransaction``), which then finds the winner's row; a plan that writes before the ledger row
(a refund) looks the key up first.

The ledger sits at the bottom: it imports no other domain. Permissions and audit rows are the
caller's, in the caller's transaction; what it must know about a member lives on the wallet
(``frozen``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..errors import (
    AppError,
    Conflict,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidAmount,
    MemberFrozen,
    MemberNotFound,
    NotFound,
    ValidationFailed,
)
from ..extensions import db
from ..models_base import utcnow
from ..transaction import RetryTransaction, in_transaction, transactional
from . import card_mirror
from .models import ENTRY_KINDS
from .policy import split_refund, split_spend

# One operation moves at most 1,000,000 yuan: anything above is a typo or an attack, never a sale.
MAX_AMOUNT_FEN = 100_000_000
MAX_KEY_LENGTH = 128
MAX_OPERATOR_LENGTH = 64
MAX_REFERENCE_LENGTH = 64
MAX_NOTE_LENGTH = 255
# The columns' ranges: member.id and store.id are INT, ledger_entry.id is BIGINT (signed).
MAX_MEMBER_ID = MAX_STORE_ID = 2**31 - 1
MAX_ENTRY_ID = 2**63 - 1

# Kinds addressed by the member; the others (capture, void, refund, reversal) by the entry they settle.
MEMBER_KINDS = frozenset(("credit", "debit", "hold", "withdrawal"))
ENTRY_COLUMNS = (
    "id",
    "member_id",
    "kind",
    "amount_fen",
    "principal_delta_fen",
    "bonus_delta_fen",
    "held_delta_fen",
    "principal_after_fen",
    "bonus_after_fen",
    "held_after_fen",
    "related_entry_id",
    "closes_entry_id",
    "request_hash",
    "store_id",
)
_INSERT_COLUMNS = (
    "member_id, kind, amount_fen, principal_delta_fen, bonus_delta_fen, held_delta_fen, principal_after_fen, "
    "bonus_after_fen, held_after_fen, related_entry_id, closes_entry_id, store_id, operator, reference, "
    "idempotency_key, request_hash, note, created_at, split_principal_fen"
)


class _Statements:
    """The ledger's SQL, rendered once per dialect in its driver's parameter style."""

    def __init__(self, dialect: Dialect) -> None:
        sqlite = dialect.name == "sqlite"
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        lock = "" if sqlite else " FOR UPDATE"
        entry = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM ledger_entry"

        def sql(text: str) -> str:
            return text.replace("?", mark)

        self.sqlite = sqlite
        self.lock_wallet = sql(
            f"SELECT principal_fen, bonus_fen, held_fen, frozen FROM wallet WHERE member_id = ?{lock}"
        )
        self.entry_by_id = sql(f"{entry} WHERE id = ?")
        self.entry_by_key = sql(f"{entry} WHERE idempotency_key = ?")
        # A locking read: the latest committed settlement, whatever the isolation level's snapshot says.
        self.closer_of = sql(f"SELECT kind FROM ledger_entry WHERE closes_entry_id = ?{lock}")
        self.insert_entry = sql(f"INSERT INTO ledger_entry ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 19)})")
        self.apply_deltas = sql(
            "UPDATE wallet SET principal_fen = principal_fen + ?, bonus_fen = bonus_fen + ?, held_fen = held_fen + ? "
            "WHERE member_id = ?"
        )
        self.lock_refundable = sql(
            "SELECT taken_principal_fen, taken_bonus_fen, refunded_principal_fen, refunded_bonus_fen "
            f"FROM payment_refundable WHERE payment_entry_id = ?{lock}"
        )
        self.insert_refundable = sql(
            "INSERT INTO payment_refundable (payment_entry_id, member_id, taken_principal_fen, taken_bonus_fen, "
            "refunded_principal_fen, refunded_bonus_fen) VALUES (?, ?, ?, ?, ?, ?)"
        )
        # The guard: the database, not this process's arithmetic, decides whether the refund still fits.
        self.refunded_in_ledger = sql(
            "SELECT COALESCE(SUM(principal_delta_fen), 0), COALESCE(SUM(bonus_delta_fen), 0) FROM ledger_entry "
            f"WHERE related_entry_id = ? AND kind = 'refund'{lock}"
        )
        self.take_refundable = sql(
            "UPDATE payment_refundable SET refunded_principal_fen = refunded_principal_fen + ?, "
            "refunded_bonus_fen = refunded_bonus_fen + ? WHERE payment_entry_id = ? "
            "AND refunded_principal_fen + ? <= taken_principal_fen AND refunded_bonus_fen + ? <= taken_bonus_fen"
        )
        self.open_wallet = sql(
            "INSERT INTO wallet (member_id, principal_fen, bonus_fen, held_fen, frozen, created_at) "
            "VALUES (?, 0, 0, 0, 0, ?)"
        )
        self.set_frozen = sql("UPDATE wallet SET frozen = ? WHERE member_id = ?")
        self.balance = sql("SELECT principal_fen, bonus_fen, held_fen FROM wallet WHERE member_id = ?")


_statements: dict[str, _Statements] = {}


class _Tx:
    """The current transaction's driver cursor: statements go straight to the driver, errors come back
    translated by SQLAlchemy exactly as if SQLAlchemy had issued them. ``_Tx.current()`` makes one per
    session transaction and hands the same one out until that transaction ends."""

    __slots__ = ("conn", "cur", "sql", "error_class", "owner", "primed")

    @classmethod
    def current(cls) -> _Tx:
        session = db.session()
        owner = session.get_transaction()
        tx: _Tx | None = session.info.get("driver_tx")
        # The session's connection and a new cursor cost more CPU than a short statement: reuse them
        # while the transaction that made them is the session's, still active, on a valid connection.
        if tx is not None and tx.owner is owner and owner.is_active and not tx.conn.invalidated:  # type: ignore[union-attr]
            return tx
        tx = session.info["driver_tx"] = cls()
        return tx

    def __init__(self) -> None:
        conn: Connection = db.session.connection()
        self.owner = db.session().get_transaction()
        dialect = conn.dialect
        self.conn = conn
        self.cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        sql = _statements.get(dialect.name)
        if sql is None:
            sql = _statements[dialect.name] = _Statements(dialect)
        self.sql = sql
        self.error_class = dialect.loaded_dbapi.Error
        # (member id, its wallet row) locked by the caller (prime_locked_wallet), for the next operation
        self.primed: tuple[int, tuple[Any, ...]] | None = None

    def run(self, statement: str, params: tuple[Any, ...]) -> Any:
        try:
            self.cur.execute(statement, params)
        except self.error_class as error:
            raise self._translate(statement, params, error) from None
        return self.cur

    def one(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return self.run(statement, params).fetchone()  # type: ignore[no-any-return]

    def timestamp(self) -> Any:
        now = utcnow()
        # SQLAlchemy's own storage format for SQLite DateTime; the MySQL driver takes the datetime.
        return now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sql.sqlite else now

    def _translate(self, statement: str, params: tuple[Any, ...], error: Exception) -> BaseException:
        dialect = self.conn.dialect
        dbapi_connection = self.conn.connection.dbapi_connection
        invalidated = dialect.is_disconnect(error, dbapi_connection, self.cur)  # type: ignore[arg-type]
        if invalidated:
            self.conn.invalidate(error)
        return DBAPIError.instance(
            statement,
            params,
            error,
            self.error_class,
            hide_parameters=True,
            connection_invalidated=invalidated,
            dialect=dialect,
        )


@dataclass(frozen=True)
class Balance:
    principal_fen: int
    bonus_fen: int
    held_fen: int

    @property
    def available_fen(self) -> int:
        return self.principal_fen + self.bonus_fen

    def as_dict(self) -> dict[str, int]:
        return {
            "principal_fen": self.principal_fen,
            "bonus_fen": self.bonus_fen,
            "held_fen": self.held_fen,
            "available_fen": self.available_fen,
        }


@dataclass(frozen=True)
class Posting:
    """The result of a ledger operation: the row it wrote (or, on a replay, the row written first)."""

    entry_id: int
    member_id: int
    kind: str
    amount_fen: int
    principal_delta_fen: int
    bonus_delta_fen: int
    held_delta_fen: int
    balance: Balance
    replayed: bool = False
    store_id: int | None = None

    @classmethod
    def from_row(cls, m: dict[str, Any], replayed: bool = False) -> Posting:
        return cls(
            entry_id=m["id"],
            member_id=m["member_id"],
            kind=m["kind"],
            amount_fen=m["amount_fen"],
            principal_delta_fen=m["principal_delta_fen"],
            bonus_delta_fen=m["bonus_delta_fen"],
            held_delta_fen=m["held_delta_fen"],
            balance=Balance(m["principal_after_fen"], m["bonus_after_fen"], m["held_after_fen"]),
            replayed=replayed,
            store_id=m["store_id"],
        )


@dataclass(frozen=True)
class _Request:
    kind: str
    key: str
    operator: str
    amount_fen: int | None = None
    member_id: int | None = None
    target_entry_id: int | None = None
    bucket: str | None = None
    store_id: int | None = None
    reference: str | None = None
    note: str = ""
    split_principal_fen: int | None = None  # a hold that names its buckets: the principal it takes

    def fingerprint(self) -> str:
        # The note is for people and may be reworded on a retry; everything else defines the request.
        fields = [
            self.kind,
            self.member_id,
            self.target_entry_id,
            self.amount_fen,
            self.bucket,
            self.store_id,
            self.operator,
            self.reference,
        ]
        if self.split_principal_fen is not None:  # only then, so every other request's hash is as before
            fields.append(self.split_principal_fen)
        return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Plan:
    member_id: int
    amount_fen: int
    dp: int
    db: int
    dh: int
    before: Balance
    related_entry_id: int | None = None
    closes_entry_id: int | None = None


# ---------------------------------------------------------------------------------------------------
# Public operations


def credit(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    operator: str,
    bucket: str = "principal",
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
) -> Posting:
    """Add money to one bucket (``principal`` for paid-in money, ``bonus`` for gifts)."""
    if not isinstance(bucket, str) or bucket not in ("principal", "bonus"):
        raise ValidationFailed("bucket 只能是 principal 或 bonus", code="invalid_bucket")
    request = _Request(
        "credit", key, operator, amount_fen, member_id, bucket=bucket, store_id=store_id, reference=reference, note=note
    )
    return _execute(request, _plan_credit)


def debit(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    operator: str,
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
) -> Posting:
    """Spend from the available balance, split across the buckets by the spending policy."""
    request = _Request("debit", key, operator, amount_fen, member_id, store_id=store_id, reference=reference, note=note)
    return _execute(request, _plan_spend)


def hold(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    operator: str,
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
    buckets: Mapping[str, int] | None = None,
) -> Posting:
    """Freeze an amount for a payment that settles later; capture or void it by the hold's entry id.

    ``buckets={"principal": x, "bonus": y}`` (non-negative fen adding up to the amount) names what the
    hold takes from each bucket instead of the spending policy: a recharge refund holds exactly the
    principal and bonus its recharge gave. The row records the named principal (``split_principal_fen``)
    so ``ledger check`` accepts the split; a full capture or a void gives back exactly those buckets."""
    if buckets is not None:
        named = _named_principal(buckets, amount_fen)
        request = _Request("hold", key, operator, amount_fen, member_id, store_id=store_id, reference=reference,
                           note=note, split_principal_fen=named)  # fmt: skip
        return _execute(request, _plan_named_hold)
    request = _Request("hold", key, operator, amount_fen, member_id, store_id=store_id, reference=reference, note=note)
    return _execute(request, _plan_spend)


def capture(
    hold_entry_id: int,
    amount_fen: int | None = None,
    *,
    key: str,
    operator: str,
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
) -> Posting:
    """Take all or part of a hold; the rest goes back to the buckets it came from. At most once."""
    request = _Request(
        "capture",
        key,
        operator,
        amount_fen,
        target_entry_id=hold_entry_id,
        store_id=store_id,
        reference=reference,
        note=note,
    )
    return _execute(request, _plan_capture, amount_optional=True)


def void(
    hold_entry_id: int,
    *,
    key: str,
    operator: str,
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
) -> Posting:
    """Release a hold in full to the buckets it came from. At most once, and never after a capture."""
    request = _Request(
        "void", key, operator, target_entry_id=hold_entry_id, store_id=store_id, reference=reference, note=note
    )
    return _execute(request, _plan_capture, amount_optional=True)


def refund(
    payment_entry_id: int,
    amount_fen: int,
    *,
    key: str,
    operator: str,
    store_id: int | None = None,
    reference: str | None = None,
    note: str = "",
) -> Posting:
    """Give back part or all of a debit or capture, to the buckets it took, pro rata, never more than it took."""
    request = _Request(
        "refund",
        key,
        operator,
        amount_fen,
        target_entry_id=payment_entry_id,
        store_id=store_id,
        reference=reference,
        note=note,
    )
    return _execute(request, _plan_refund)


def withdraw(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    operator: str,
    reason: str,
    store_id: int | None = None,
    reference: str | None = None,
) -> Posting:
    """Record principal handed back to the member outside the system. Bonus is never paid out.

    The caller checks the permission and writes the audit row (``members.service.withdraw_offline``)."""
    request = _Request(
        "withdrawal",
        key,
        operator,
        amount_fen,
        member_id,
        store_id=store_id,
        reference=reference,
        note=_reason(reason, "请填写退还本金的原因"),
    )
    return _execute(request, _plan_withdrawal)


def reverse(credit_entry_id: int, *, key: str, operator: str, reason: str, store_id: int | None = None) -> Posting:
    """Correct a mistaken credit with a reversing row (only while its money is still in the wallet)."""
    request = _Request(
        "reversal",
        key,
        operator,
        target_entry_id=credit_entry_id,
        store_id=store_id,
        note=_reason(reason, "请填写冲正原因"),
    )
    return _execute(request, _plan_reversal, amount_optional=True)


def open_wallet(member_id: int) -> None:
    """Create the (empty) wallet of a new member, in the caller's transaction."""
    tx = _Tx.current()
    tx.run(tx.sql.open_wallet, (_member_id(member_id), tx.timestamp()))


# What a hot path's own locking read selects of the wallet, joined to its own row, for prime_locked_wallet.
LOCKED_WALLET_COLUMNS = ("principal_fen", "bonus_fen", "held_fen", "frozen")


def prime_locked_wallet(member_id: int, values: Sequence[Any]) -> None:
    """Hand the next ledger operation on ``member_id`` in this transaction the wallet row (the values of
    ``LOCKED_WALLET_COLUMNS``) that the caller has just read with a locking read (``FOR UPDATE``; on
    SQLite the transaction's own write lock) in this transaction: that operation then skips its own
    locking read. Only until the next ledger operation, whichever member it is for."""
    _Tx.current().primed = (member_id, tuple(values))


def set_frozen(member_id: int, frozen: bool) -> None:
    """Stop (or allow again) new money and payments for a frozen or lost card, in the caller's transaction."""
    if type(frozen) is not bool:
        raise ValidationFailed("frozen 必须是 true 或 false", code="invalid_frozen")
    tx = _Tx.current()
    tx.primed = None
    if tx.run(tx.sql.set_frozen, (1 if frozen else 0, _member_id(member_id))).rowcount != 1:
        raise MemberNotFound()


def get_balance(member_id: int, *, for_update: bool = False) -> Balance:
    """The wallet's buckets; ``for_update``: locked until the caller's transaction ends (a caller that
    decides an amount from them, as a recharge refund does, so no spend slips in between)."""
    tx = _Tx.current()
    row = tx.one(tx.sql.lock_wallet if for_update else tx.sql.balance, (_member_id(member_id),))
    if row is None:
        raise MemberNotFound()
    return Balance(row[0], row[1], row[2])


def find_entry(entry_id: int) -> Posting:
    tx = _Tx.current()
    row = tx.one(tx.sql.entry_by_id, (_entry_id(entry_id, "entry_not_found", "流水不存在"),))
    if row is None:
        raise NotFound("流水不存在", code="entry_not_found")
    return Posting.from_row(dict(zip(ENTRY_COLUMNS, row, strict=True)))


def is_duplicate_key(error: IntegrityError) -> bool:
    """A UNIQUE idempotency key refused a second row: the request (or a racing copy) already happened."""
    return "idempotency_key" in str(error.orig)


# ---------------------------------------------------------------------------------------------------
# The one way a request becomes a row


Planner = Callable[[_Tx, _Request], _Plan]


def _execute(request: _Request, plan: Planner, amount_optional: bool = False) -> Posting:
    _validate(request, amount_optional)
    if in_transaction():
        # Part of a larger service call (a recharge, an order) that owns the transaction.
        tx = _Tx.current()
        if plan not in _READS_BEFORE_INSERT:
            row = tx.one(tx.sql.entry_by_key, (request.key,))
            if row is not None:
                return _replay(row, request)
        try:
            return _apply(request, plan)
        except IntegrityError as error:
            if not is_duplicate_key(error):
                raise
            # The key's row exists: a retry this transaction can see (answer with it), or a racing
            # copy committed after this transaction's snapshot (run the whole call again).
            row = tx.one(tx.sql.entry_by_key, (request.key,))
            if row is None:
                raise RetryTransaction() from error
            return _replay(row, request, error)
        except AppError as error:
            # A racing copy may have committed while this call waited for the wallet lock, and then
            # this one is refused (the money it moved is gone): answer with the first result.
            row = tx.one(tx.sql.entry_by_key, (request.key,))
            if row is None:
                raise
            return _replay(row, request, error)
    try:
        return _apply_in_transaction(request, plan)
    except (AppError, IntegrityError) as error:
        # A retry of a request that already took effect: answer with the first result. This is also
        # how the loser of a race on one key ends up, and how a retried debit that would now find the
        # balance too low still gets its original success.
        tx = _Tx.current()
        row = tx.one(tx.sql.entry_by_key, (request.key,))
        db.session.rollback()
        if row is None:
            raise
        return _replay(row, request, error)


def _replay(row: tuple[Any, ...], request: _Request, error: BaseException | None = None) -> Posting:
    first = dict(zip(ENTRY_COLUMNS, row, strict=True))
    if first["request_hash"] != request.fingerprint():
        raise IdempotencyConflict() from error
    return Posting.from_row(first, replayed=True)


def _apply(request: _Request, plan: Planner) -> Posting:
    tx = _Tx.current()
    p = plan(tx, request)
    after = Balance(p.before.principal_fen + p.dp, p.before.bonus_fen + p.db, p.before.held_fen + p.dh)
    params = (
        p.member_id,
        request.kind,
        p.amount_fen,
        p.dp,
        p.db,
        p.dh,
        after.principal_fen,
        after.bonus_fen,
        after.held_fen,
        p.related_entry_id,
        p.closes_entry_id,
        request.store_id,
        request.operator,
        request.reference,
        request.key,
        request.fingerprint(),
        request.note[:MAX_NOTE_LENGTH],  # a note is for people: keep what fits the column
        tx.timestamp(),
        request.split_principal_fen,
    )
    try:
        entry_id = tx.run(tx.sql.insert_entry, params).lastrowid
    except IntegrityError as error:
        if _is_foreign_key_error(error):
            # The only reference a caller passes in unchecked is the store: the database refuses it.
            raise NotFound("门店不存在", code="store_not_found") from error
        raise
    if tx.run(tx.sql.apply_deltas, (p.dp, p.db, p.dh, p.member_id)).rowcount != 1:
        raise MemberNotFound()  # we hold its row lock: only a wallet that vanished gets here
    card_mirror.changed((p.member_id,))
    return Posting(
        entry_id, p.member_id, request.kind, p.amount_fen, p.dp, p.db, p.dh, after, store_id=request.store_id
    )


_apply_in_transaction = transactional(_apply)


def _is_foreign_key_error(error: IntegrityError) -> bool:
    args = getattr(error.orig, "args", ())
    return (bool(args) and args[0] == 1452) or "FOREIGN KEY" in str(error.orig)


# ---------------------------------------------------------------------------------------------------
# Input at the boundary: every id, amount and text is checked before anything is read or written


def _validate(request: _Request, amount_optional: bool) -> None:
    if not _is_name(request.key, MAX_KEY_LENGTH):
        raise ValidationFailed(
            "请求号（幂等键）必须是 1-128 个字符，不能只有空格或控制字符", code="invalid_idempotency_key"
        )
    if not _is_name(request.operator, MAX_OPERATOR_LENGTH):
        raise ValidationFailed("缺少操作人（最长 64 个字符）", code="invalid_operator")
    if request.reference is not None and not _is_name(request.reference, MAX_REFERENCE_LENGTH):
        raise ValidationFailed("单号必须是 1-64 个字符", code="invalid_reference")
    if not _is_text(request.note, None):
        raise ValidationFailed("备注必须是文字", code="invalid_note")
    if request.kind in MEMBER_KINDS:
        _member_id(request.member_id)
    if request.store_id is not None:
        _store_id(request.store_id)
    amount = request.amount_fen
    if amount is None and amount_optional:
        return
    if type(amount) is not int or amount <= 0 or amount > MAX_AMOUNT_FEN:
        raise InvalidAmount(details={"max_fen": MAX_AMOUNT_FEN})


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_text(value: object, max_length: int | None) -> bool:
    """Free text for people (a note, a reason): a str the database can store, no NUL."""
    if type(value) is not str or (max_length is not None and len(value) > max_length) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")  # a lone surrogate cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _is_name(value: object, max_length: int) -> bool:
    """A key, an operator, an order number: text on one line, not blank, no control characters."""
    return _is_text(value, max_length) and bool(value.strip()) and not _CONTROL.search(value)  # type: ignore[union-attr]


def _reason(reason: object, missing: str) -> str:
    if not _is_text(reason, None) or not reason.strip():  # type: ignore[union-attr]
        raise ValidationFailed(missing, code="reason_required")
    return reason.strip()[:MAX_NOTE_LENGTH]  # type: ignore[union-attr]


def _member_id(value: object) -> int:
    if type(value) is not int:
        raise ValidationFailed("会员编号必须是整数", code="invalid_member_id")
    if not 1 <= value <= MAX_MEMBER_ID:
        raise MemberNotFound()
    return value


def _store_id(value: object) -> int:
    if type(value) is not int:
        raise ValidationFailed("门店编号必须是整数", code="invalid_store_id")
    if not 1 <= value <= MAX_STORE_ID:
        raise NotFound("门店不存在", code="store_not_found")
    return value


def _entry_id(value: object, code: str, message: str) -> int:
    if type(value) is not int:
        raise ValidationFailed("流水编号必须是整数", code="invalid_entry_id")
    if not 1 <= value <= MAX_ENTRY_ID:
        raise NotFound(message, code=code)
    return value


# ---------------------------------------------------------------------------------------------------
# Plans: from the locked wallet to the deltas, or a refusal


def _lock(tx: _Tx, member_id: int) -> tuple[Balance, bool]:
    primed, tx.primed = tx.primed, None
    # Locked by the caller in this transaction (prime_locked_wallet), and nothing has written the wallet
    # since (every write clears it: this lock is the first thing an operation does).
    row = primed[1] if primed is not None and primed[0] == member_id else tx.one(tx.sql.lock_wallet, (member_id,))
    if row is None:
        raise MemberNotFound()
    return Balance(row[0], row[1], row[2]), bool(row[3])


def _lock_active(tx: _Tx, member_id: int) -> Balance:
    before, frozen = _lock(tx, member_id)
    if frozen:
        raise MemberFrozen()
    return before


def _load_entry(tx: _Tx, entry_id: int | None, kinds: tuple[str, ...], code: str, message: str) -> dict[str, Any]:
    row = tx.one(tx.sql.entry_by_id, (_entry_id(entry_id, code, message),))
    if row is None:
        raise NotFound(message, code=code)
    entry = dict(zip(ENTRY_COLUMNS, row, strict=True))
    if entry["kind"] not in kinds:
        raise NotFound(message, code=code)
    return entry


def _plan_credit(tx: _Tx, r: _Request) -> _Plan:
    assert r.member_id is not None and r.amount_fen is not None
    before = _lock_active(tx, r.member_id)
    if r.bucket == "bonus":
        return _Plan(r.member_id, r.amount_fen, 0, r.amount_fen, 0, before)
    return _Plan(r.member_id, r.amount_fen, r.amount_fen, 0, 0, before)


def _plan_spend(tx: _Tx, r: _Request) -> _Plan:
    assert r.member_id is not None and r.amount_fen is not None
    before = _lock_active(tx, r.member_id)
    if r.amount_fen > before.available_fen:
        raise InsufficientBalance(details={"available_fen": before.available_fen})
    from_principal, from_bonus = split_spend(
        r.amount_fen, before.principal_fen, before.bonus_fen, current_app.config["SPENDING_POLICY"]
    )
    held = r.amount_fen if r.kind == "hold" else 0
    return _Plan(r.member_id, r.amount_fen, -from_principal, -from_bonus, held, before)


def _named_principal(buckets: object, amount_fen: object) -> int:
    """The principal share of a hold's named ``buckets``, checked: only the two buckets, each a
    non-negative int, adding up to the amount (whether the wallet has them is the plan's to say)."""
    if not isinstance(buckets, Mapping) or not buckets or not set(buckets) <= {"principal", "bonus"}:
        raise ValidationFailed('buckets 须为 {"principal": 分, "bonus": 分}', code="invalid_buckets")
    principal, bonus = buckets.get("principal", 0), buckets.get("bonus", 0)
    if type(principal) is not int or type(bonus) is not int or principal < 0 or bonus < 0:
        raise ValidationFailed("各余额类型的金额必须是不小于 0 的整数（单位：分）", code="invalid_buckets")
    if type(amount_fen) is int and principal + bonus != amount_fen:
        raise ValidationFailed(
            "各余额类型的金额之和必须等于冻结金额",
            code="invalid_buckets",
            details={"amount_fen": amount_fen, "principal_fen": principal, "bonus_fen": bonus},
        )
    return principal


def _plan_named_hold(tx: _Tx, r: _Request) -> _Plan:
    assert r.member_id is not None and r.amount_fen is not None and r.split_principal_fen is not None
    before = _lock_active(tx, r.member_id)
    from_principal, from_bonus = r.split_principal_fen, r.amount_fen - r.split_principal_fen
    if from_principal > before.principal_fen or from_bonus > before.bonus_fen:
        raise InsufficientBalance(
            "余额不足：充值余额或赠送余额不够冻结指定的金额",
            details={"principal_fen": before.principal_fen, "bonus_fen": before.bonus_fen},
        )
    return _Plan(r.member_id, r.amount_fen, -from_principal, -from_bonus, r.amount_fen, before)


def _plan_capture(tx: _Tx, r: _Request) -> _Plan:
    held = _load_entry(tx, r.target_entry_id, ("hold",), "hold_not_found", "预授权（冻结）记录不存在")
    before, _frozen = _lock(tx, held["member_id"])
    closer = tx.one(tx.sql.closer_of, (held["id"],))
    if closer is not None:
        done = "已扣款" if closer[0] == "capture" else "已撤销"
        raise Conflict(f"该冻结已处理（{done}）", code="hold_already_settled", details={"settled_by": closer[0]})
    hold_principal, hold_bonus, hold_amount = -held["principal_delta_fen"], -held["bonus_delta_fen"], held["amount_fen"]
    if r.kind == "void":
        taken_principal = taken_bonus = 0
        amount = hold_amount
    else:
        amount = hold_amount if r.amount_fen is None else r.amount_fen
        if amount > hold_amount:
            raise Conflict("扣款金额超过冻结金额", code="capture_exceeds_hold", details={"held_fen": hold_amount})
        taken_principal, taken_bonus = split_spend(
            amount, hold_principal, hold_bonus, current_app.config["SPENDING_POLICY"]
        )
    return _Plan(
        held["member_id"],
        amount,
        hold_principal - taken_principal,
        hold_bonus - taken_bonus,
        -hold_amount,
        before,
        related_entry_id=held["id"],
        closes_entry_id=held["id"],
    )


def _plan_refund(tx: _Tx, r: _Request) -> _Plan:
    assert r.amount_fen is not None
    paid = _load_entry(tx, r.target_entry_id, ("debit", "capture"), "payment_not_found", "原支付记录不存在")
    before, _frozen = _lock(tx, paid["member_id"])
    # What the payment took comes from its immutable rows, what was refunded from the ledger's own refund
    # rows (locking reads: the latest committed, at any isolation level). The guard row is the database's
    # own limit on top: created by the first refund, raised by a guarded UPDATE below.
    taken_principal, taken_bonus = _taken_by(tx, paid)
    refunded = tx.one(tx.sql.refunded_in_ledger, (paid["id"],))
    refunded_principal, refunded_bonus = int(refunded[0]), int(refunded[1])  # type: ignore[index]
    if tx.one(tx.sql.lock_refundable, (paid["id"],)) is None:
        guard_row = (paid["id"], paid["member_id"], taken_principal, taken_bonus, refunded_principal, refunded_bonus)
        tx.run(tx.sql.insert_refundable, guard_row)
    refundable = taken_principal + taken_bonus - refunded_principal - refunded_bonus
    if r.amount_fen > refundable:
        raise Conflict("退款金额超过可退金额", code="refund_exceeds_payment", details={"refundable_fen": refundable})
    to_principal, to_bonus = split_refund(
        r.amount_fen, taken_principal, taken_bonus, refunded_principal, refunded_bonus
    )
    guard = (to_principal, to_bonus, paid["id"], to_principal, to_bonus)
    if tx.run(tx.sql.take_refundable, guard).rowcount != 1:
        raise Conflict("退款金额超过可退金额", code="refund_exceeds_payment", details={"refundable_fen": refundable})
    return _Plan(paid["member_id"], r.amount_fen, to_principal, to_bonus, 0, before, related_entry_id=paid["id"])


def _taken_by(tx: _Tx, paid: dict[str, Any]) -> tuple[int, int]:
    """What a payment took from (principal, bonus): a debit its deltas, a capture its hold less what it released."""
    if paid["kind"] == "debit":
        return -paid["principal_delta_fen"], -paid["bonus_delta_fen"]
    hold_row = tx.one(tx.sql.entry_by_id, (paid["related_entry_id"],))
    assert hold_row is not None
    held = dict(zip(ENTRY_COLUMNS, hold_row, strict=True))
    return (
        -held["principal_delta_fen"] - paid["principal_delta_fen"],
        -held["bonus_delta_fen"] - paid["bonus_delta_fen"],
    )


def _plan_withdrawal(tx: _Tx, r: _Request) -> _Plan:
    assert r.member_id is not None and r.amount_fen is not None
    before, _frozen = _lock(tx, r.member_id)
    if r.amount_fen > before.principal_fen:
        raise InsufficientBalance("可退本金不足（赠送金额不可提现）", details={"principal_fen": before.principal_fen})
    return _Plan(r.member_id, r.amount_fen, -r.amount_fen, 0, 0, before)


def _plan_reversal(tx: _Tx, r: _Request) -> _Plan:
    original = _load_entry(tx, r.target_entry_id, ENTRY_KINDS, "entry_not_found", "流水不存在")
    if original["kind"] != "credit":
        raise Conflict("只能冲正充值（入账）记录", code="entry_not_reversible")
    before, _frozen = _lock(tx, original["member_id"])
    if tx.one(tx.sql.closer_of, (original["id"],)) is not None:
        raise Conflict("该记录已冲正", code="already_reversed")
    dp, dbonus = -original["principal_delta_fen"], -original["bonus_delta_fen"]
    if before.principal_fen + dp < 0 or before.bonus_fen + dbonus < 0:
        raise InsufficientBalance("该笔充值已被使用，余额不足以冲正")
    return _Plan(
        original["member_id"],
        original["amount_fen"],
        dp,
        dbonus,
        0,
        before,
        related_entry_id=original["id"],
        closes_entry_id=original["id"],
    )


# Plans that only read (lock, look up) before the ledger row's INSERT. Nested in a larger call, these
# skip the up-front key lookup (a round trip and 14 columns on every call, for a row that is almost
# never there): the UNIQUE key refuses a second row, and the failed INSERT, which leaves the caller's
# transaction as it was, is followed by the lookup. Any other plan (a refund moves its guard row
# first) looks the key up before it writes anything.
_READS_BEFORE_INSERT: frozenset[Planner] = frozenset(
    (_plan_credit, _plan_spend, _plan_capture, _plan_withdrawal, _plan_reversal)
)
