"""Points: lots (what was earned, when it expires, what is left) and an append-only points ledger.

The minimal real thing the recharge rewards need; issue 14 builds spending, expiry jobs and levels on
it. A member's points balance is the sum of ``remaining`` over lots that have not expired. Every change
is one ``points_entry`` row with a UNIQUE idempotency key, written in the same transaction as the lot
it changes, under the member's wallet row lock (so two awards to one member never interleave).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
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
    # available: spendable; pending: earned by a purchase, spendable from ``available_at`` (the release
    # job flips it, one ``release`` entry); voided: refunded while pending (nothing left)
    status: Mapped[str] = mapped_column(String(10), default="available", server_default="available")
    available_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('available', 'pending', 'voided')", name="status_known"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_points_lot_member_id_expires_at", "member_id", "expires_at"),
        # the expiry job walks lots in (expires_at, id) order from where its last run stopped
        Index("ix_points_lot_expires_at_id", "expires_at", "id"),
        Index("ix_points_lot_status_available_at", "status", "available_at"),  # the release job
    )


# award: a new available lot; pending: a new pending lot (not spendable yet); release: a pending lot
# becomes available (delta 0); void: a pending lot's points cancelled by a refund; spend: taken for a
# redemption, exchange or adjustment; restore: a refunded redemption's points given back to the lots it
# took them from; reversal: a refund takes back what its payment earned; expire: the lot's end.
KINDS = ("award", "spend", "expire", "reversal", "pending", "release", "void", "restore")


class PointsEntry(db.Model):  # type: ignore[name-defined]
    """Append-only: one row per change of a lot (``KINDS``); ``balance_after`` is the available balance."""

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
        CheckConstraint(
            "kind IN ('award', 'spend', 'expire', 'reversal', 'pending', 'release', 'void', 'restore')",
            name="kind_known",
        ),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_points_entry_member_id_id", "member_id", "id"),
    )


lot_t = PointsLot.__table__
entry_t = PointsEntry.__table__


def balance(member_id: int, *, at: datetime | None = None) -> int:
    """Points the member can use now: the rest of every available lot that has not expired."""
    moment = at or utcnow()
    total = db.session.execute(
        select(func.coalesce(func.sum(lot_t.c.remaining), 0)).where(
            lot_t.c.member_id == member_id, lot_t.c.expires_at > moment, lot_t.c.status == "available"
        )
    ).scalar_one()
    return int(total)


def pending_balance(member_id: int) -> int:
    """Points earned by purchases that are not usable yet (``pending`` lots)."""
    total = db.session.execute(
        select(func.coalesce(func.sum(lot_t.c.remaining), 0)).where(
            lot_t.c.member_id == member_id, lot_t.c.status == "pending"
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
    available_at: datetime | None = None,
) -> int:
    """Give ``points`` as a new lot; returns the member's balance after. Twice with one key: once.

    The lot lasts to the end of the merchant's local day ``validity_years`` (default: the member's
    card type's validity, else 2) after today, or ``validity_days`` days when given. With
    ``available_at`` in the future the lot is ``pending`` (an entry of kind ``pending``) until the
    release job makes it available."""
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= MAX_POINTS:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    if not isinstance(key, str) or not key or len(key) > 128:
        raise ValidationFailed("请求号（幂等键）必须是 1-128 个字符", code="invalid_idempotency_key")
    conn = lock_member(member_id)
    done = conn.execute(select(entry_t.c.balance_after).where(entry_t.c.idempotency_key == key)).first()
    if done is not None:
        return int(done[0])
    now = utcnow()
    pending = available_at is not None and available_at > now
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
            status="pending" if pending else "available",
            available_at=available_at if pending else None,
        )
    ).inserted_primary_key[0]
    after = balance(member_id, at=now)
    conn.execute(
        insert(entry_t).values(
            member_id=member_id,
            kind="pending" if pending else "award",
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


def moved_by(key: str) -> int:
    """How many points the call with idempotency key ``key`` moved (a spend over several lots
    included); 0 when there was none."""
    done = _replay(db.session.connection(), key)
    return 0 if done is None else done.points


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
        .where(
            lot_t.c.member_id == member_id,
            lot_t.c.remaining > 0,
            lot_t.c.expires_at > now,
            lot_t.c.status == "available",
        )
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
            .where(
                lot_t.c.id == lot.id,
                lot_t.c.remaining >= take,
                lot_t.c.expires_at > now,
                lot_t.c.status == "available",
            )
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
        have = balance(member_id, at=now)
        raise InsufficientPoints(f"积分不足：需要 {points}，可用 {have}", details={"needed": points, "available": have})
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


def short_key(key: str, limit: int = MAX_SPEND_KEY) -> str:
    """``key`` as it is, or when longer than ``limit`` its head and a digest of the whole (never a cut
    that could make two keys one)."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: limit - 33]}~{digest}"


def _entry(
    conn, member_id: int, kind: str, delta: int, lot_id: int, key: str, reference: str | None, now: datetime
) -> int:  # type: ignore[no-untyped-def]
    return int(
        conn.execute(
            insert(entry_t).values(
                member_id=member_id,
                kind=kind,
                delta=delta,
                balance_after=balance(member_id, at=now),
                lot_id=lot_id,
                reference=reference,
                idempotency_key=key,
                created_at=now,
            )
        ).inserted_primary_key[0]
    )


@transactional
def void_pending(lot_id: int, points: int, *, key: str, reference: str | None = None) -> int:
    """Cancel up to ``points`` of a pending lot (its purchase was refunded before the points became
    usable): one ``void`` entry; the lot is ``voided`` when nothing is left. Returns the points voided
    (0 when the lot is no longer pending). Twice with one key: once."""
    _check_points_and_key(points, key)
    row = db.session.execute(select(lot_t.c.member_id).where(lot_t.c.id == lot_id)).first()
    if row is None:
        return 0
    conn = lock_member(int(row.member_id))
    done = conn.execute(select(entry_t.c.delta).where(entry_t.c.idempotency_key == key)).first()
    if done is not None:
        return -int(done.delta)
    lot = conn.execute(select(lot_t.c.remaining, lot_t.c.status).where(lot_t.c.id == lot_id)).one()
    take = min(points, int(lot.remaining))
    if lot.status != "pending" or take == 0:
        return 0
    left = int(lot.remaining) - take
    changed = conn.execute(
        update(lot_t)
        .where(lot_t.c.id == lot_id, lot_t.c.status == "pending", lot_t.c.remaining == int(lot.remaining))
        .values(remaining=left, status="pending" if left else "voided")
    ).rowcount
    if changed != 1:
        raise RetryTransaction()
    _entry(conn, int(row.member_id), "void", -take, lot_id, key, reference, utcnow())
    return take


@transactional
def release_due(now: datetime, limit: int = 1000) -> int:
    """Make the next ``limit`` pending lots whose time has come available: one bounded transaction, each
    lot flipped by a guarded UPDATE and recorded by one ``release`` entry (delta 0) keyed
    ``release:<lot id>``, so a second run, or a racing one, releases nothing twice. Returns the count."""
    conn = db.session.connection()
    due = conn.execute(
        select(lot_t.c.id, lot_t.c.member_id)
        .where(lot_t.c.status == "pending", lot_t.c.available_at <= now)
        .order_by(lot_t.c.available_at, lot_t.c.id)
        .limit(limit)
    ).all()
    if not due:
        return 0
    members = sorted({int(lot.member_id) for lot in due})
    wallet = Wallet.__table__  # the wallets in member order, the fixed order of every multi-wallet lock
    conn.execute(
        select(wallet.c.member_id).where(wallet.c.member_id.in_(members)).order_by(wallet.c.member_id).with_for_update()
    ).all()
    released = 0
    for lot in due:
        flipped = conn.execute(
            update(lot_t).where(lot_t.c.id == lot.id, lot_t.c.status == "pending").values(status="available")
        ).rowcount
        if flipped != 1:  # released (or voided to nothing) by a run that committed first
            continue
        _entry(conn, int(lot.member_id), "release", 0, int(lot.id), f"release:{lot.id}", None, now)
        released += 1
    return released


@transactional
def restore(member_id: int, spend_key: str, points: int, *, key: str) -> int:
    """Give back up to ``points`` of what the spend ``spend_key`` took, to the lots it took them from
    (only those not expired; what an expired lot would get back stays lost, as it would have expired).
    Each lot gets back at most what this spend took from it less what earlier restores gave. Returns
    the points restored; twice with one key: once."""
    _check_points_and_key(points, key)
    conn = lock_member(member_id)
    done = _replay(conn, key)
    if done is not None:
        return done.points
    first = conn.execute(select(entry_t.c.id).where(entry_t.c.idempotency_key == spend_key)).first()
    if first is None:
        return 0
    spent_from: dict[int, int] = {}
    n = 0
    while True:
        row = conn.execute(
            select(entry_t.c.lot_id, entry_t.c.delta).where(
                entry_t.c.idempotency_key == (spend_key if n == 0 else f"{spend_key}#{n}"),
                entry_t.c.member_id == member_id,
            )
        ).first()
        if row is None:
            break
        spent_from[int(row.lot_id)] = spent_from.get(int(row.lot_id), 0) - int(row.delta)
        n += 1
    marker = f"restore-of:{first.id}"
    for lot_id, back in conn.execute(
        select(entry_t.c.lot_id, func.sum(entry_t.c.delta))
        .where(entry_t.c.kind == "restore", entry_t.c.reference == marker)
        .group_by(entry_t.c.lot_id)
    ).all():
        spent_from[int(lot_id)] -= int(back)
    now = utcnow()
    left, n = points, 0
    for lot_id, room in spent_from.items():
        if left == 0:
            break
        give = min(left, room)
        if give <= 0:
            continue
        changed = conn.execute(
            update(lot_t)
            .where(
                lot_t.c.id == lot_id,
                lot_t.c.expires_at > now,
                lot_t.c.status == "available",
                lot_t.c.remaining + give <= lot_t.c.amount,
            )
            .values(remaining=lot_t.c.remaining + give)
        ).rowcount
        if changed != 1:  # expired (or, never here, full): that part stays spent
            continue
        _entry(conn, member_id, "restore", give, lot_id, key if n == 0 else f"{key}#{n}", marker, now)
        left, n = left - give, n + 1
    return points - left


@dataclass
class ExpiryCursor:
    expires_at: datetime | None = None
    lot_id: int = 0


@transactional
def expire_batch(now: datetime, cursor: ExpiryCursor, limit: int = 1000) -> tuple[int, int, ExpiryCursor]:
    """Expire the next ``limit`` lots (by expiry, then id) that expired by ``now``: one bounded
    transaction. Each lot with points left gets ``remaining = 0`` and one ``expire`` entry keyed
    ``expire:<lot id>``. Returns (lots looked at, lots expired, the cursor after them).

    Set-based: after the wallets are locked, one ``INSERT ... SELECT`` writes every entry (the delta
    and the member's balance after read by the database under those locks) and one ``UPDATE`` empties
    the same lots; their row counts must agree, else the batch starts again from fresh reads."""
    conn = db.session.connection()
    where = [lot_t.c.expires_at <= now]
    if cursor.expires_at is not None:  # (expires_at, id) > cursor, in a form every engine ranges over
        where += [
            lot_t.c.expires_at >= cursor.expires_at,
            (lot_t.c.expires_at > cursor.expires_at) | (lot_t.c.id > cursor.lot_id),
        ]
    batch = conn.execute(
        select(lot_t.c.id, lot_t.c.member_id, lot_t.c.expires_at, lot_t.c.remaining, lot_t.c.status)
        .where(*where)
        .order_by(lot_t.c.expires_at, lot_t.c.id)
        .limit(limit)
    ).all()
    if not batch:
        return 0, 0, cursor
    after_cursor = ExpiryCursor(batch[-1].expires_at, int(batch[-1].id))
    # A pending lot is not expired here (pending is far shorter than validity: the release job frees it)
    due = [int(lot.id) for lot in batch if lot.remaining > 0 and lot.status == "available"]
    if not due:
        return len(batch), 0, after_cursor
    members = sorted({int(lot.member_id) for lot in batch if lot.remaining > 0})
    # Lock the wallets in member order (the fixed order every multi-wallet lock here uses): every
    # change of a lot holds its member's wallet lock, so from here on these lots stand still.
    wallet = Wallet.__table__
    conn.execute(
        select(wallet.c.member_id).where(wallet.c.member_id.in_(members)).order_by(wallet.c.member_id).with_for_update()
    ).all()
    other = lot_t.alias("other")
    balance_after = (
        select(func.coalesce(func.sum(other.c.remaining), 0))
        .where(other.c.member_id == lot_t.c.member_id, other.c.expires_at > now, other.c.status == "available")
        .scalar_subquery()
    )
    written = conn.execute(
        insert(entry_t).from_select(
            ["member_id", "kind", "delta", "balance_after", "lot_id", "idempotency_key", "created_at"],
            select(
                lot_t.c.member_id,
                literal("expire", String(12)),
                -lot_t.c.remaining,
                balance_after,
                lot_t.c.id,
                literal("expire:", String(16)) + cast(lot_t.c.id, String(20)),
                literal(now, DateTime()),
            ).where(lot_t.c.id.in_(due), lot_t.c.remaining > 0, lot_t.c.status == "available"),
        )
    ).rowcount
    changed = conn.execute(
        update(lot_t)
        .where(lot_t.c.id.in_(due), lot_t.c.remaining > 0, lot_t.c.status == "available")
        .values(remaining=0)
    ).rowcount
    if changed != written:  # someone changed a lot without its wallet lock: never leave them apart
        raise RetryTransaction()
    if changed:
        card_mirror.changed(members)
    return len(batch), changed, after_cursor


def lots_of(member_id: int, *, at: datetime | None = None) -> list:
    """The member's lots with points left and not expired, earliest expiry first."""
    moment = at or utcnow()
    return list(
        db.session.execute(
            select(lot_t)
            .where(
                lot_t.c.member_id == member_id,
                lot_t.c.remaining > 0,
                lot_t.c.expires_at > moment,
                lot_t.c.status == "available",
            )
            .order_by(lot_t.c.expires_at, lot_t.c.id)
        ).all()
    )


def pending_lots(member_id: int) -> list:
    """The member's pending lots (earned by purchases, not usable yet), soonest usable first."""
    return list(
        db.session.execute(
            select(lot_t)
            .where(lot_t.c.member_id == member_id, lot_t.c.status == "pending", lot_t.c.remaining > 0)
            .order_by(lot_t.c.available_at, lot_t.c.id)
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
    kinds: dict[int, set[str]] = {}
    for lot_id, kind in reader.execute(
        select(entry_t.c.lot_id, entry_t.c.kind).where(entry_t.c.lot_id.is_not(None)).distinct()
    ).all():
        kinds.setdefault(int(lot_id), set()).add(str(kind))
    lot_rows = select(lot_t.c.id, lot_t.c.remaining, lot_t.c.amount, lot_t.c.status)
    if member_ids is not None:
        lot_rows = lot_rows.where(lot_t.c.member_id.in_(member_ids))
    for lot_id, remaining, amount, status in reader.execute(lot_rows).all():
        if sums.get(int(lot_id), 0) != int(remaining):
            problems.append(f"lot {lot_id}: entries {sums.get(int(lot_id), 0)} != remaining {remaining}")
        problem = _lot_status_problem(kinds.get(int(lot_id), set()), str(status), int(remaining), int(amount))
        if problem:
            problems.append(f"lot {lot_id}: {problem}")
    return problems


def _lot_status_problem(kinds: set[str], status: str, remaining: int, amount: int) -> str | None:
    """A lot's status against its entries: a lot begins with one award (available) or one pending
    entry; a pending lot has only voids after it, and becomes available by one release; voided means
    pending and nothing left."""
    opened = kinds & {"award", "pending"}
    if len(opened) != 1:
        return f"opened by {sorted(opened) or 'no entry'}, not by one award or pending entry"
    if "pending" in opened:
        if status == "pending" and kinds - {"pending", "void"}:
            return f"pending, yet has {sorted(kinds - {'pending', 'void'})} entries"
        if status == "voided" and (remaining != 0 or kinds - {"pending", "void"}):
            return "voided, yet has points left or entries after its voids"
        if status == "available" and "release" not in kinds:
            return "available without a release entry"
    elif status != "available" or kinds & {"release", "void"}:
        return f"{status} lot of an award, with {sorted(kinds & {'release', 'void'})} entries"
    if not 0 <= remaining <= amount:
        return f"remaining {remaining} outside 0..{amount}"
    return None
