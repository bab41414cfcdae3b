"""Points: lots (what was earned, when it expires, what is left) and an append-only points ledger.

The minimal real thing the recharge rewards need; issue 14 builds spending, expiry jobs and levels on
it. A member's points balance is the sum of ``remaining`` over lots that have not expired. Every change
is one ``points_entry`` row with a UNIQUE idempotency key, written in the same transaction as the lot
it changes, under the member's wallet row lock (so two awards to one member never interleave).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import AppError, MemberNotFound, ValidationFailed
from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column, utcnow
from ..transaction import RetryTransaction, transactional
from . import card_mirror
from .models import Wallet

DEFAULT_VALIDITY_DAYS = 2 * 365
MAX_POINTS = 100_000_000


class PointsLot(db.Model):  # type: ignore[name-defined]
    __tablename__ = "points_lot"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    amount: Mapped[int] = mapped_column(BigId)
    remaining: Mapped[int] = mapped_column(BigId)
    earned_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(32))
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_points_lot_member_id_expires_at", "member_id", "expires_at"),
        # the expiry job walks lots in (expires_at, id) order from where its last run stopped
        Index("ix_points_lot_expires_at_id", "expires_at", "id"),
    )


class PointsEntry(db.Model):  # type: ignore[name-defined]
    """Append-only: an award, and later spends and expiries (issue 14)."""

    __tablename__ = "points_entry"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    kind: Mapped[str] = mapped_column(String(12))
    delta: Mapped[int] = mapped_column(BigId)
    balance_after: Mapped[int] = mapped_column(BigId)
    lot_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("points_lot.id"))
    reference: Mapped[str | None] = mapped_column(ExactString(64))
    idempotency_key: Mapped[str] = mapped_column(ExactString(128), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("kind IN ('award', 'spend', 'expire', 'reversal')", name="kind_known"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_points_entry_member_id_id", "member_id", "id"),
    )


lot_t = PointsLot.__table__
entry_t = PointsEntry.__table__


def balance(member_id: int, *, at: datetime | None = None) -> int:
    """Points the member holds now: the rest of every lot that has not expired."""
    moment = at or utcnow()
    total = db.session.execute(
        select(func.coalesce(func.sum(lot_t.c.remaining), 0)).where(
            lot_t.c.member_id == member_id, lot_t.c.expires_at > moment
        )
    ).scalar_one()
    return int(total)


@transactional
def award_points(
    member_id: int,
    points: int,
    *,
    key: str,
    source: str,
    reference: str | None = None,
    validity_days: int | None = None,
    validity_years: int | None = None,
) -> int:
    """Give ``points`` as a new lot; returns the member's balance after. Twice with one key: once.

    The lot lasts to the end of the merchant's local day ``validity_years`` (default: the member's
    card type's validity, else 2) after today, or ``validity_days`` days when given."""
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= MAX_POINTS:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    if not isinstance(key, str) or not key or len(key) > 128:
        raise ValidationFailed("请求号（幂等键）必须是 1-128 个字符", code="invalid_idempotency_key")
    conn = lock_member(member_id)
    done = conn.execute(select(entry_t.c.balance_after).where(entry_t.c.idempotency_key == key)).first()
    if done is not None:
        return int(done[0])
    now = utcnow()
    if validity_days is not None:
        expires_at = end_of_local_day(now, days=validity_days)
    else:
        expires_at = end_of_local_day(now, years=validity_years or validity_years_of(member_id))
    lot_id = conn.execute(
        insert(lot_t).values(
            member_id=member_id,
            amount=points,
            remaining=points,
            earned_at=now,
            expires_at=expires_at,
            source=source[:32],
        )
    ).inserted_primary_key[0]
    after = balance(member_id, at=now)
    conn.execute(
        insert(entry_t).values(
            member_id=member_id,
            kind="award",
            delta=points,
            balance_after=after,
            lot_id=lot_id,
            reference=reference,
            idempotency_key=key,
            created_at=now,
        )
    )
    card_mirror.changed((member_id,))
    return after


# ---------------------------------------------------------------------------------------------------
# Time: lots expire at the end of a day in the merchant's time zone; the database keeps naive UTC.


def merchant_tz() -> ZoneInfo:
    name = (current_app.config.get("POINTS_TIMEZONE") if has_app_context() else None) or os.environ.get(
        "POINTS_TIMEZONE", "Asia/Shanghai"
    )
    return ZoneInfo(name)


def local_date(moment_utc: datetime) -> date:
    return moment_utc.replace(tzinfo=UTC).astimezone(merchant_tz()).date()


def local_midnight_utc(day: date) -> datetime:
    """The UTC moment (naive) at which the local ``day`` begins."""
    return datetime.combine(day, time(0), tzinfo=merchant_tz()).astimezone(UTC).replace(tzinfo=None)


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one: the last day of February
        return day.replace(year=day.year + years, day=28)


def end_of_local_day(now_utc: datetime, *, years: int = 0, days: int = 0) -> datetime:
    """A lot earned at ``now_utc`` is valid through the local day ``years``/``days`` later (23:59:59
    included) and expired from the next local midnight, which is what is stored (naive UTC)."""
    last_day = add_years(local_date(now_utc), years) + timedelta(days=days)
    return local_midnight_utc(last_day + timedelta(days=1))


def last_valid_day(expires_at: datetime) -> date:
    return local_date(expires_at - timedelta(seconds=1))


def validity_years_of(member_id: int) -> int:
    from ..members.cards import card_of

    card_type = card_of(member_id)
    return card_type.points_validity_years if card_type is not None else DEFAULT_VALIDITY_DAYS // 365


# ---------------------------------------------------------------------------------------------------
# Spending, taking back, expiring: each under the member's wallet row lock, each lot changed by a
# guarded UPDATE, each change one append-only entry with an idempotency key.


class InsufficientPoints(AppError):
    status, code, message = 409, "insufficient_points", "积分不足"


MAX_SPEND_KEY = 112  # spends over several lots key their further entries "<key>#<n>"


@dataclass(frozen=True)
class PointsResult:
    points: int  # how many points this call moved (0 on a replay that found nothing)
    balance_after: int
    entry_id: int
    replayed: bool = False


def lock_member(member_id: int):  # type: ignore[no-untyped-def]
    """Lock the member's wallet row (the lock for every balance, points included); the connection."""
    conn = db.session.connection()
    locked = conn.execute(
        select(Wallet.__table__.c.member_id).where(Wallet.__table__.c.member_id == member_id).with_for_update()
    ).first()
    if locked is None:  # every member has a wallet: the ledger needs nothing else to know it exists
        raise MemberNotFound()
    return conn


def _check_points_and_key(points: object, key: object) -> None:
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= MAX_POINTS:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    if not isinstance(key, str) or not key or len(key) > MAX_SPEND_KEY:
        raise ValidationFailed(f"请求号（幂等键）必须是 1-{MAX_SPEND_KEY} 个字符", code="invalid_idempotency_key")


def _replay(conn, key: str) -> PointsResult | None:  # type: ignore[no-untyped-def]
    first = conn.execute(select(entry_t.c.id, entry_t.c.balance_after).where(entry_t.c.idempotency_key == key)).first()
    if first is None:
        return None
    moved, n, after = 0, 0, int(first.balance_after)
    while True:  # the further entries of a spend over several lots: "<key>#1", "<key>#2", ...
        row = conn.execute(
            select(entry_t.c.delta, entry_t.c.balance_after).where(
                entry_t.c.idempotency_key == (key if n == 0 else f"{key}#{n}")
            )
        ).first()
        if row is None:
            break
        moved, n, after = moved + int(row.delta), n + 1, int(row.balance_after)
    return PointsResult(abs(moved), after, int(first.id), replayed=True)


def _take(
    conn,  # type: ignore[no-untyped-def]
    member_id: int,
    points: int,
    *,
    kind: str,
    key: str,
    reference: str | None,
    now: datetime,
    first_lot: int | None = None,
) -> tuple[int, int, int]:
    """Take up to ``points`` from unexpired lots, earliest expiry first (``first_lot`` before all).
    Returns (taken, balance after, first entry id)."""
    lots = conn.execute(
        select(lot_t.c.id, lot_t.c.remaining)
        .where(lot_t.c.member_id == member_id, lot_t.c.remaining > 0, lot_t.c.expires_at > now)
        .order_by(lot_t.c.expires_at, lot_t.c.id)
    ).all()
    if first_lot is not None:
        lots.sort(key=lambda lot: lot.id != first_lot)
    available = sum(int(lot.remaining) for lot in lots)
    left, after, first_entry = points, available, 0
    for n, lot in enumerate(lots):
        if left == 0:
            break
        take = min(left, int(lot.remaining))
        changed = conn.execute(
            update(lot_t)
            .where(lot_t.c.id == lot.id, lot_t.c.remaining >= take, lot_t.c.expires_at > now)
            .values(remaining=lot_t.c.remaining - take)
        ).rowcount
        if changed != 1:  # cannot happen under the wallet lock; if it does, start again from fresh reads
            raise RetryTransaction()
        left, after = left - take, after - take
        entry_id = conn.execute(
            insert(entry_t).values(
                member_id=member_id,
                kind=kind,
                delta=-take,
                balance_after=after,
                lot_id=lot.id,
                reference=reference,
                idempotency_key=key if n == 0 else f"{key}#{n}",
                created_at=now,
            )
        ).inserted_primary_key[0]
        first_entry = first_entry or int(entry_id)
    return points - left, after, first_entry


@transactional
def spend_points(member_id: int, points: int, *, key: str, reference: str | None = None) -> PointsResult:
    """Take ``points`` from the member's lots, earliest expiry first; all or nothing. Idempotent by key."""
    _check_points_and_key(points, key)
    conn = lock_member(member_id)
    done = _replay(conn, key)
    if done is not None:
        return done
    now = utcnow()
    if balance(member_id, at=now) < points:
        raise InsufficientPoints(f"积分不足：需要 {points}，可用 {balance(member_id, at=now)}")
    taken, after, entry_id = _take(conn, member_id, points, kind="spend", key=key, reference=reference, now=now)
    card_mirror.changed((member_id,))
    return PointsResult(taken, after, entry_id)


@transactional
def take_back(
    member_id: int, points: int, *, key: str, reference: str | None = None, from_lot: int | None = None
) -> PointsResult:
    """Take back points given earlier (a refunded payment's), from ``from_lot`` first, then earliest
    expiry first; as many as the member still has (what was spent or has expired stays spent)."""
    _check_points_and_key(points, key)
    conn = lock_member(member_id)
    done = _replay(conn, key)
    if done is not None:
        return done
    now = utcnow()
    take = min(points, balance(member_id, at=now))
    if take == 0:
        return PointsResult(0, 0, 0)
    taken, after, entry_id = _take(
        conn, member_id, take, kind="reversal", key=key, reference=reference, now=now, first_lot=from_lot
    )
    card_mirror.changed((member_id,))
    return PointsResult(taken, after, entry_id)


@dataclass
class ExpiryCursor:
    expires_at: datetime | None = None
    lot_id: int = 0


@transactional
def expire_batch(now: datetime, cursor: ExpiryCursor, limit: int = 1000) -> tuple[int, int, ExpiryCursor]:
    """Expire the next ``limit`` lots (by expiry, then id) that expired by ``now``: one bounded
    transaction. Each lot with points left gets ``remaining = 0`` (guarded) and one ``expire`` entry
    keyed ``expire:<lot id>``. Returns (lots looked at, lots expired, the cursor after them)."""
    conn = db.session.connection()
    where = [lot_t.c.expires_at <= now]
    if cursor.expires_at is not None:
        where.append(tuple_(lot_t.c.expires_at, lot_t.c.id) > tuple_(cursor.expires_at, cursor.lot_id))
    batch = conn.execute(
        select(lot_t.c.id, lot_t.c.member_id, lot_t.c.expires_at, lot_t.c.remaining)
        .where(*where)
        .order_by(lot_t.c.expires_at, lot_t.c.id)
        .limit(limit)
    ).all()
    if not batch:
        return 0, 0, cursor
    after_cursor = ExpiryCursor(batch[-1].expires_at, int(batch[-1].id))
    due = [lot for lot in batch if lot.remaining > 0]
    if not due:
        return len(batch), 0, after_cursor
    members = sorted({int(lot.member_id) for lot in due})
    # Lock the wallets in member order (the fixed order every multi-wallet lock here uses), then read
    # the lots again: a spend that committed meanwhile has changed them.
    wallet = Wallet.__table__
    conn.execute(
        select(wallet.c.member_id).where(wallet.c.member_id.in_(members)).order_by(wallet.c.member_id).with_for_update()
    ).all()
    fresh = conn.execute(
        select(lot_t.c.id, lot_t.c.member_id, lot_t.c.remaining).where(
            lot_t.c.id.in_([int(lot.id) for lot in due]), lot_t.c.remaining > 0
        )
    ).all()
    if not fresh:
        return len(batch), 0, after_cursor
    balances = dict(
        conn.execute(
            select(lot_t.c.member_id, func.sum(lot_t.c.remaining))
            .where(lot_t.c.member_id.in_(members), lot_t.c.expires_at > now)
            .group_by(lot_t.c.member_id)
        ).all()
    )
    changed = conn.execute(
        update(lot_t).where(lot_t.c.id == bindparam("lot"), lot_t.c.remaining == bindparam("seen")).values(remaining=0),
        [{"lot": int(lot.id), "seen": int(lot.remaining)} for lot in fresh],
    ).rowcount
    if changed != len(fresh):
        raise RetryTransaction()
    conn.execute(
        insert(entry_t),
        [
            {
                "member_id": int(lot.member_id),
                "kind": "expire",
                "delta": -int(lot.remaining),
                "balance_after": int(balances.get(lot.member_id) or 0),
                "lot_id": int(lot.id),
                "reference": None,
                "idempotency_key": f"expire:{lot.id}",
                "created_at": now,
            }
            for lot in fresh
        ],
    )
    card_mirror.changed(int(lot.member_id) for lot in fresh)
    return len(batch), len(fresh), after_cursor


def lots_of(member_id: int, *, at: datetime | None = None) -> list:
    """The member's lots with points left and not expired, earliest expiry first."""
    moment = at or utcnow()
    return list(
        db.session.execute(
            select(lot_t)
            .where(lot_t.c.member_id == member_id, lot_t.c.remaining > 0, lot_t.c.expires_at > moment)
            .order_by(lot_t.c.expires_at, lot_t.c.id)
        ).all()
    )


def check(member_ids: list[int] | None = None, *, conn: Any = None) -> list[str]:
    """The points invariants: per member, the entries' deltas sum to what the lots hold; every lot
    holds what its entries say (its award less what was taken from it). Returns the problems.
    ``conn``: read on this connection (``ledger check``'s snapshot) instead of the session."""
    reader = conn if conn is not None else db.session
    problems = []
    by_entries = select(entry_t.c.member_id, func.sum(entry_t.c.delta)).group_by(entry_t.c.member_id)
    by_lots = select(lot_t.c.member_id, func.sum(lot_t.c.remaining)).group_by(lot_t.c.member_id)
    if member_ids is not None:
        by_entries = by_entries.where(entry_t.c.member_id.in_(member_ids))
        by_lots = by_lots.where(lot_t.c.member_id.in_(member_ids))
    entries = {m: int(v) for m, v in reader.execute(by_entries).all()}
    lots = {m: int(v) for m, v in reader.execute(by_lots).all()}
    for member_id in sorted(set(entries) | set(lots)):
        if entries.get(member_id, 0) != lots.get(member_id, 0):
            problems.append(
                f"member {member_id}: entries sum {entries.get(member_id, 0)} != lots {lots.get(member_id, 0)}"
            )
    per_lot = (
        select(entry_t.c.lot_id, func.sum(entry_t.c.delta))
        .where(entry_t.c.lot_id.is_not(None))
        .group_by(entry_t.c.lot_id)
    )
    sums = {int(lot): int(v) for lot, v in reader.execute(per_lot).all()}
    lot_rows = select(lot_t.c.id, lot_t.c.remaining)
    if member_ids is not None:
        lot_rows = lot_rows.where(lot_t.c.member_id.in_(member_ids))
    for lot_id, remaining in reader.execute(lot_rows).all():
        if sums.get(int(lot_id), 0) != int(remaining):
            problems.append(f"lot {lot_id}: entries {sums.get(int(lot_id), 0)} != remaining {remaining}")
    return problems
