"""The ledger service: the only code that changes a wallet.

Every operation is one ledger row plus one guarded UPDATE of the wallet, in one transaction:

1. lock the wallet row (``SELECT ... FOR UPDATE``; SQLite transactions begin IMMEDIATE instead), which
   serialises everything that touches one wallet and nothing else;
2. decide the deltas per bucket from the locked values (the spending policy needs them);
3. ``INSERT`` the ledger row, whose ``idempotency_key`` is UNIQUE;
4. ``UPDATE wallet SET bucket = bucket + delta`` with a guard that no bucket goes negative (the
   named CHECK constraints back it up).

The hot path is these three lean Core statements on the session's connection, no ORM objects
(``shared/PERF.md``: the ORM unit of work costs more CPU than the database's own commit).

Idempotency: every call carries a key. A second call with the same key and the same request returns
the first result (``replayed=True``) and changes nothing; with a different request it is refused with
``idempotency_conflict``. The UNIQUE key decides races: the loser's INSERT fails, its transaction is
rolled back, and it answers with the winner's row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

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
from ..members.models import Member
from ..models_base import utcnow
from ..org.service import audit, require_permission
from ..transaction import in_transaction, transactional
from .models import LedgerEntry, Wallet
from .policy import split_refund, split_spend

# One operation moves at most 1,000,000 yuan: anything above is a typo or an attack, never a sale.
MAX_AMOUNT_FEN = 100_000_000
MAX_KEY_LENGTH = 128

wallet_t = Wallet.__table__
entry_t = LedgerEntry.__table__
member_t = Member.__table__

_LOCK_WALLET = (
    select(wallet_t.c.principal_fen, wallet_t.c.bonus_fen, wallet_t.c.held_fen, member_t.c.status)
    .join(member_t, member_t.c.id == wallet_t.c.member_id)
    .where(wallet_t.c.member_id == bindparam("member_id"))
    .with_for_update()
)
_ENTRY_BY_ID = select(entry_t).where(entry_t.c.id == bindparam("entry_id"))
_ENTRY_BY_KEY = select(entry_t).where(entry_t.c.idempotency_key == bindparam("key"))
_CLOSER_OF = select(entry_t.c.kind).where(entry_t.c.closes_entry_id == bindparam("entry_id"))
_REFUNDED = select(
    func.coalesce(func.sum(entry_t.c.principal_delta_fen), 0), func.coalesce(func.sum(entry_t.c.bonus_delta_fen), 0)
).where(entry_t.c.related_entry_id == bindparam("entry_id"), entry_t.c.kind == "refund")
_INSERT_ENTRY = insert(entry_t)
_APPLY_DELTAS = (
    update(wallet_t)
    .where(
        and_(
            wallet_t.c.member_id == bindparam("m_id"),
            wallet_t.c.principal_fen + bindparam("dp") >= 0,
            wallet_t.c.bonus_fen + bindparam("db") >= 0,
            wallet_t.c.held_fen + bindparam("dh") >= 0,
        )
    )
    .values(
        principal_fen=wallet_t.c.principal_fen + bindparam("dp"),
        bonus_fen=wallet_t.c.bonus_fen + bindparam("db"),
        held_fen=wallet_t.c.held_fen + bindparam("dh"),
    )
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

    @classmethod
    def from_row(cls, row: Any, replayed: bool = False) -> Posting:
        m = row._mapping
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
    staff_id: int | None = None

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
    if bucket not in ("principal", "bonus"):
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
) -> Posting:
    """Freeze an amount for a payment that settles later; capture or void it by the hold's entry id."""
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
    """Give back part or all of a debit or capture, to the buckets it took, never more than it took."""
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


def withdraw_offline(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    staff_id: int,
    reason: str,
    store_id: int | None = None,
    reference: str | None = None,
) -> Posting:
    """Record principal handed back to the member outside the system. Bonus is never paid out."""
    if not reason or not reason.strip():
        raise ValidationFailed("请填写退款原因", code="reason_required")
    require_permission(staff_id, "withdraw_offline", store_id)
    request = _Request(
        "withdrawal",
        key,
        f"staff:{staff_id}",
        amount_fen,
        member_id,
        store_id=store_id,
        reference=reference,
        note=reason.strip()[:255],
        staff_id=staff_id,
    )
    return _execute(request, _plan_withdrawal)


def reverse(credit_entry_id: int, *, key: str, staff_id: int, reason: str, store_id: int | None = None) -> Posting:
    """Correct a mistaken credit with a reversing row (only while its money is still in the wallet)."""
    if not reason or not reason.strip():
        raise ValidationFailed("请填写冲正原因", code="reason_required")
    require_permission(staff_id, "reverse_entry", store_id)
    request = _Request(
        "reversal",
        key,
        f"staff:{staff_id}",
        target_entry_id=credit_entry_id,
        store_id=store_id,
        note=reason.strip()[:255],
        staff_id=staff_id,
    )
    return _execute(request, _plan_reversal, amount_optional=True)


def open_wallet(member_id: int) -> None:
    """Create the (empty) wallet of a new member, in the caller's transaction."""
    db.session.connection().execute(
        insert(wallet_t).values(member_id=member_id, principal_fen=0, bonus_fen=0, held_fen=0, created_at=utcnow())
    )


def get_balance(member_id: int) -> Balance:
    row = db.session.execute(
        select(wallet_t.c.principal_fen, wallet_t.c.bonus_fen, wallet_t.c.held_fen).where(
            wallet_t.c.member_id == member_id
        )
    ).first()
    if row is None:
        raise MemberNotFound()
    return Balance(*row)


def find_entry(entry_id: int) -> Posting:
    row = db.session.execute(_ENTRY_BY_ID, {"entry_id": entry_id}).first()
    if row is None:
        raise NotFound("流水不存在", code="entry_not_found")
    return Posting.from_row(row)


# ---------------------------------------------------------------------------------------------------
# The one way a request becomes a row


Planner = Callable[[Connection, _Request], _Plan]


def _execute(request: _Request, plan: Planner, amount_optional: bool = False) -> Posting:
    _validate(request, amount_optional)
    if in_transaction():
        # Part of a larger service call (a recharge, an order): that call owns the transaction and
        # its own idempotency; a duplicate key here fails the whole call, which is what it should do.
        return _apply(request, plan)
    try:
        return transactional(_apply)(request, plan)
    except (AppError, IntegrityError) as error:
        # A retry of a request that already took effect: answer with the first result. This is also
        # how the loser of a race on one key ends up, and how a retried debit that would now find the
        # balance too low still gets its original success.
        row = db.session.execute(_ENTRY_BY_KEY, {"key": request.key}).first()
        db.session.rollback()
        if row is None and isinstance(error, IntegrityError) and _is_foreign_key_error(error):
            # The only reference a caller passes in unchecked is the store: the database refuses it.
            raise NotFound("门店不存在", code="store_not_found") from error
        if row is None:
            raise
        if row._mapping["request_hash"] != request.fingerprint():
            raise IdempotencyConflict() from error
        return Posting.from_row(row, replayed=True)


def _is_foreign_key_error(error: IntegrityError) -> bool:
    args = getattr(error.orig, "args", ())
    return (bool(args) and args[0] == 1452) or "FOREIGN KEY" in str(error.orig)


def _apply(request: _Request, plan: Planner) -> Posting:
    conn = db.session.connection()
    p = plan(conn, request)
    after = Balance(p.before.principal_fen + p.dp, p.before.bonus_fen + p.db, p.before.held_fen + p.dh)
    result = conn.execute(
        _INSERT_ENTRY,
        {
            "member_id": p.member_id,
            "kind": request.kind,
            "amount_fen": p.amount_fen,
            "principal_delta_fen": p.dp,
            "bonus_delta_fen": p.db,
            "held_delta_fen": p.dh,
            "principal_after_fen": after.principal_fen,
            "bonus_after_fen": after.bonus_fen,
            "held_after_fen": after.held_fen,
            "related_entry_id": p.related_entry_id,
            "closes_entry_id": p.closes_entry_id,
            "store_id": request.store_id,
            "operator": request.operator,
            "reference": request.reference,
            "idempotency_key": request.key,
            "request_hash": request.fingerprint(),
            "note": (request.note or "")[:255],
            "created_at": utcnow(),
        },
    )
    updated = conn.execute(_APPLY_DELTAS, {"m_id": p.member_id, "dp": p.dp, "db": p.db, "dh": p.dh})
    if updated.rowcount != 1:  # impossible while we hold the row lock; refuse rather than guess
        raise Conflict("余额已变化，请重试", code="balance_changed")
    return Posting(result.inserted_primary_key[0], p.member_id, request.kind, p.amount_fen, p.dp, p.db, p.dh, after)


def _validate(request: _Request, amount_optional: bool) -> None:
    key = request.key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed("请求号（幂等键）必须是 1-128 个字符", code="invalid_idempotency_key")
    if not isinstance(request.operator, str) or not request.operator or len(request.operator) > 64:
        raise ValidationFailed("缺少操作人", code="invalid_operator")
    if request.reference is not None and (not isinstance(request.reference, str) or len(request.reference) > 64):
        raise ValidationFailed("单号最长 64 个字符", code="invalid_reference")
    amount = request.amount_fen
    if amount is None and amount_optional:
        return
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > MAX_AMOUNT_FEN:
        raise InvalidAmount(details={"max_fen": MAX_AMOUNT_FEN})


def _lock(conn: Connection, member_id: int | None) -> tuple[Balance, str]:
    row = conn.execute(_LOCK_WALLET, {"member_id": member_id}).first()
    if row is None:
        raise MemberNotFound()
    return Balance(row[0], row[1], row[2]), row[3]


def _require_active(status: str) -> None:
    if status != "active":
        raise MemberFrozen()


def _load_entry(conn: Connection, entry_id: int | None, kinds: tuple[str, ...], code: str, message: str) -> Any:
    valid_id = isinstance(entry_id, int) and not isinstance(entry_id, bool)  # True is not entry 1
    row = conn.execute(_ENTRY_BY_ID, {"entry_id": entry_id}).first() if valid_id else None
    if row is None or row._mapping["kind"] not in kinds:
        raise NotFound(message, code=code)
    return row._mapping


# ---------------------------------------------------------------------------------------------------
# Plans: from the locked wallet to the deltas, or a refusal


def _plan_credit(conn: Connection, r: _Request) -> _Plan:
    before, status = _lock(conn, r.member_id)
    _require_active(status)
    assert r.member_id is not None and r.amount_fen is not None
    if r.bucket == "bonus":
        return _Plan(r.member_id, r.amount_fen, 0, r.amount_fen, 0, before)
    return _Plan(r.member_id, r.amount_fen, r.amount_fen, 0, 0, before)


def _plan_spend(conn: Connection, r: _Request) -> _Plan:
    before, status = _lock(conn, r.member_id)
    _require_active(status)
    assert r.member_id is not None and r.amount_fen is not None
    if r.amount_fen > before.available_fen:
        raise InsufficientBalance(details={"available_fen": before.available_fen})
    from_principal, from_bonus = split_spend(
        r.amount_fen, before.principal_fen, before.bonus_fen, current_app.config["SPENDING_POLICY"]
    )
    held = r.amount_fen if r.kind == "hold" else 0
    return _Plan(r.member_id, r.amount_fen, -from_principal, -from_bonus, held, before)


def _plan_capture(conn: Connection, r: _Request) -> _Plan:
    held = _load_entry(conn, r.target_entry_id, ("hold",), "hold_not_found", "预授权（冻结）记录不存在")
    before, _status = _lock(conn, held["member_id"])
    closer = conn.execute(_CLOSER_OF, {"entry_id": held["id"]}).first()
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


def _plan_refund(conn: Connection, r: _Request) -> _Plan:
    paid = _load_entry(conn, r.target_entry_id, ("debit", "capture"), "payment_not_found", "原支付记录不存在")
    before, _status = _lock(conn, paid["member_id"])
    taken_principal, taken_bonus = -paid["principal_delta_fen"], -paid["bonus_delta_fen"]
    if paid["kind"] == "capture":
        # A capture's own deltas are what it released; what it took is the hold minus that.
        hold_row = conn.execute(_ENTRY_BY_ID, {"entry_id": paid["related_entry_id"]}).first()
        assert hold_row is not None
        taken_principal = -hold_row._mapping["principal_delta_fen"] - paid["principal_delta_fen"]
        taken_bonus = -hold_row._mapping["bonus_delta_fen"] - paid["bonus_delta_fen"]
    refunded_principal, refunded_bonus = conn.execute(_REFUNDED, {"entry_id": paid["id"]}).one()
    refundable_principal = taken_principal - int(refunded_principal)
    refundable_bonus = taken_bonus - int(refunded_bonus)
    assert r.amount_fen is not None
    if r.amount_fen > refundable_principal + refundable_bonus:
        raise Conflict(
            "退款金额超过可退金额",
            code="refund_exceeds_payment",
            details={"refundable_fen": refundable_principal + refundable_bonus},
        )
    to_principal, to_bonus = split_refund(r.amount_fen, refundable_principal, refundable_bonus)
    return _Plan(paid["member_id"], r.amount_fen, to_principal, to_bonus, 0, before, related_entry_id=paid["id"])


def _plan_withdrawal(conn: Connection, r: _Request) -> _Plan:
    assert r.member_id is not None and r.amount_fen is not None
    before, _status = _lock(conn, r.member_id)
    if r.amount_fen > before.principal_fen:
        raise InsufficientBalance("可退本金不足（赠送金额不可提现）", details={"principal_fen": before.principal_fen})
    audit(r.staff_id, "withdraw_offline", f"member:{r.member_id}", f"{r.amount_fen} fen: {r.note}")
    return _Plan(r.member_id, r.amount_fen, -r.amount_fen, 0, 0, before)


def _plan_reversal(conn: Connection, r: _Request) -> _Plan:
    original = _load_entry(conn, r.target_entry_id, ("credit",), "entry_not_reversible", "只能冲正充值（入账）记录")
    before, _status = _lock(conn, original["member_id"])
    if conn.execute(_CLOSER_OF, {"entry_id": original["id"]}).first() is not None:
        raise Conflict("该记录已冲正", code="already_reversed")
    dp, dbonus = -original["principal_delta_fen"], -original["bonus_delta_fen"]
    if before.principal_fen + dp < 0 or before.bonus_fen + dbonus < 0:
        raise InsufficientBalance("该笔充值已被使用，余额不足以冲正")
    audit(r.staff_id, "reverse_entry", f"entry:{original['id']}", r.note)
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
