"""Report summaries, kept incrementally from the ledger and read with the live tail above them.

``catch_up`` (the job ``jobs.reports.fold_ledger``, every minute) reads ledger rows above the
watermark in id order, in batches, folds each batch into the summaries and moves the watermark in the
same transaction: a run interrupted anywhere leaves the summaries and the watermark as they were, and
a second run (or two at once: they take turns on ``report_total``'s row lock) folds nothing twice.

Reports read the summaries plus the rows above the watermark (the tail, an index range on the primary
key), folded the same way in memory, on one consistent snapshot: the figures are exact the moment a
ledger row commits, and the ledger's hot path does nothing for them.

Gaps: on MariaDB a ledger id is taken at INSERT and its row becomes visible at COMMIT, so a row with a
lower id can appear after a higher one. The job therefore folds past a gap in the ids only once the row
after the gap is older than ``REPORTS_GAP_GRACE_SECONDS`` (60): a gap that old is an id given up by a
rolled-back insert. Until then the rows after it stay in the tail, where reports still count them.
SQLite has one writer at a time, so its ids commit in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..ledger.models import LedgerEntry
from ..ledger.points import PointsEntry
from ..models_base import utcnow
from ..transaction import transactional
from .models import FLOW_COLUMNS, ReportDaily, ReportMember, ReportStoreMember, ReportStoreTotal, ReportTotal

MERCHANT_UTC_OFFSET = timedelta(hours=8)  # Asia/Shanghai, no daylight saving
NO_STORE = 0
BATCH_SIZE = 10_000

entry_t = LedgerEntry.__table__
points_t = PointsEntry.__table__
total_t = ReportTotal.__table__
store_total_t = ReportStoreTotal.__table__
daily_t = ReportDaily.__table__
member_t = ReportMember.__table__
store_member_t = ReportStoreMember.__table__

_ENTRY_COLUMNS = (
    entry_t.c.id,
    entry_t.c.member_id,
    entry_t.c.kind,
    entry_t.c.amount_fen,
    entry_t.c.principal_delta_fen,
    entry_t.c.bonus_delta_fen,
    entry_t.c.held_delta_fen,
    entry_t.c.principal_after_fen,
    entry_t.c.bonus_after_fen,
    entry_t.c.held_after_fen,
    entry_t.c.store_id,
    entry_t.c.idempotency_key,
    entry_t.c.created_at,
)


def local_day(moment: datetime) -> date:
    """The merchant's calendar day of a stored (naive UTC) time."""
    return (moment + MERCHANT_UTC_OFFSET).date()


def day_start_utc(day: date) -> datetime:
    """The naive UTC time at which the merchant's ``day`` begins."""
    return datetime(day.year, day.month, day.day) - MERCHANT_UTC_OFFSET


def flows_of(row: Any) -> dict[str, int]:
    """What one ledger row adds to the report sums, by its kind and deltas alone."""
    kind, amount = row.kind, row.amount_fen
    flows = {
        "principal_delta_fen": row.principal_delta_fen,
        "bonus_delta_fen": row.bonus_delta_fen,
        "held_delta_fen": row.held_delta_fen,
    }
    if kind == "credit":
        if row.principal_delta_fen > 0:
            flows.update(recharge_fen=row.principal_delta_fen, recharge_count=1)
        if row.bonus_delta_fen > 0:
            flows["bonus_fen"] = row.bonus_delta_fen
    elif kind == "capture" and row.idempotency_key.startswith("recharge-refund:"):
        flows["recharge_refund_fen"] = amount  # the money of a recharge going back through WeChat Pay
    elif kind in ("debit", "capture"):
        flows.update(consumption_fen=amount, consumption_count=1)
    elif kind == "refund":
        flows.update(refund_fen=amount, refund_count=1)
    elif kind == "withdrawal":
        flows["withdrawal_fen"] = amount
    elif kind == "reversal":
        flows["reversal_fen"] = amount
    return flows


@dataclass
class Fold:
    """Ledger rows folded: sums per (day, store) and per store, and what they say of each member."""

    daily: dict[tuple[date, int], Counter[str]] = field(default_factory=dict)
    stores: dict[int, Counter[str]] = field(default_factory=dict)
    has_balance: dict[int, bool] = field(default_factory=dict)  # after the member's last row here
    recharged: set[int] = field(default_factory=set)
    first_recharge: dict[tuple[int, int], date] = field(default_factory=dict)  # (store, member) -> day
    rows: int = 0
    last_id: int = 0

    def add(self, row: Any) -> None:
        store = row.store_id or NO_STORE
        day = local_day(row.created_at)
        flows = flows_of(row)
        self.daily.setdefault((day, store), Counter()).update(flows)
        self.stores.setdefault(store, Counter()).update(flows)
        self.has_balance[row.member_id] = row.principal_after_fen + row.bonus_after_fen + row.held_after_fen > 0
        if flows.get("recharge_count"):
            self.recharged.add(row.member_id)
            self.first_recharge.setdefault((store, row.member_id), day)
        self.rows += 1
        self.last_id = row.id


def fold(rows: Iterable[Any]) -> Fold:
    result = Fold()
    for row in rows:
        result.add(row)
    return result


@dataclass
class Known:
    """What the summaries already record of the members and (store, member) pairs of a fold."""

    members: dict[int, tuple[bool, bool]]  # member -> (recharged, has_balance)
    pairs: set[tuple[int, int]]


def known_of(conn: Connection, folded: Fold) -> Known:
    ids = sorted(folded.has_balance)
    members: dict[int, tuple[bool, bool]] = {}
    pairs: set[tuple[int, int]] = set()
    for chunk in _chunks(ids, 2000):
        for member_id, recharged, has_balance in conn.execute(
            select(member_t.c.member_id, member_t.c.recharged, member_t.c.has_balance).where(
                member_t.c.member_id.in_(chunk)
            )
        ):
            members[member_id] = (bool(recharged), bool(has_balance))
    wanted = sorted(folded.first_recharge)
    for chunk in _chunks(wanted, 1000):
        pairs.update(
            (store, member)
            for store, member in conn.execute(
                select(store_member_t.c.store_id, store_member_t.c.member_id).where(
                    tuple_(store_member_t.c.store_id, store_member_t.c.member_id).in_(chunk)
                )
            )
        )
    return Known(members, pairs)


@dataclass
class MemberChanges:
    recharge_members: int = 0
    members_with_balance: int = 0
    new_members: list[dict[str, Any]] = field(default_factory=list)
    changed_members: list[dict[str, Any]] = field(default_factory=list)
    new_pairs: list[dict[str, int]] = field(default_factory=list)


def member_changes(folded: Fold, known: Known) -> MemberChanges:
    """How the merchant-wide counters move, and the new first recharges per (day, store) into the fold."""
    changes = MemberChanges()
    for member_id, has_balance in folded.has_balance.items():
        was_recharged, had_balance = known.members.get(member_id, (False, False))
        recharged = was_recharged or member_id in folded.recharged
        changes.recharge_members += int(recharged) - int(was_recharged)
        changes.members_with_balance += int(has_balance) - int(had_balance)
        values = {"mid": member_id, "recharged": recharged, "has_balance": has_balance}
        if member_id not in known.members:
            changes.new_members.append(values)
        elif (recharged, has_balance) != (was_recharged, had_balance):
            changes.changed_members.append(values)
    for (store, member_id), day in folded.first_recharge.items():
        if (store, member_id) in known.pairs:
            continue
        changes.new_pairs.append({"store_id": store, "member_id": member_id})
        folded.daily[(day, store)]["new_recharge_members"] += 1
        folded.stores[store]["new_recharge_members"] += 1
    return changes


# ---------------------------------------------------------------------------------------------------
# The job


def gap_grace() -> timedelta:
    return timedelta(seconds=int(current_app.config.get("REPORTS_GAP_GRACE_SECONDS", 60)))


def settled(rows: Sequence[Any], last_id: int, now: datetime, *, check_gaps: bool) -> list[Any]:
    """The rows the job may fold: up to the first gap in the ids that is younger than the grace."""
    if not check_gaps:
        return list(rows)
    expected, out, limit = last_id + 1, [], now - gap_grace()
    for row in rows:
        if row.id != expected and row.created_at > limit:
            break
        out.append(row)
        expected = row.id + 1
    return out


@dataclass
class CatchUp:
    ledger_rows: int = 0
    points_rows: int = 0
    batches: int = 0
    ledger_last_id: int = 0
    points_last_id: int = 0
    caught_up: bool = True


def catch_up(*, batch_size: int = BATCH_SIZE, max_batches: int | None = None, max_seconds: float = 50.0) -> CatchUp:
    """Fold ledger and points rows above the watermarks, a batch per transaction, until none is left
    (or ``max_batches`` / ``max_seconds``, so one cron run never overlaps the next by much)."""
    started = utcnow()
    result = CatchUp()
    while True:
        ledger_rows, points_rows, ledger_last, points_last = _fold_batch(batch_size)
        result.batches += 1
        result.ledger_rows += ledger_rows
        result.points_rows += points_rows
        result.ledger_last_id, result.points_last_id = ledger_last, points_last
        if ledger_rows < batch_size and points_rows < batch_size:
            return result
        if (max_batches is not None and result.batches >= max_batches) or (
            (utcnow() - started).total_seconds() > max_seconds
        ):
            result.caught_up = False
            return result


def _lock_total(conn: Connection) -> Any:
    query = select(total_t).where(total_t.c.id == 1).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        try:
            with db.session.begin_nested():
                conn.execute(insert(total_t).values(id=1, updated_at=utcnow()))
        except IntegrityError:  # created by a concurrent first run: lock theirs
            pass
        row = conn.execute(query).one()
    return row


@transactional
def _fold_batch(batch_size: int) -> tuple[int, int, int, int]:
    conn = db.session.connection()
    total = _lock_total(conn)
    now = utcnow()
    check_gaps = conn.dialect.name == "mysql"
    rows = conn.execute(
        select(*_ENTRY_COLUMNS).where(entry_t.c.id > total.ledger_last_id).order_by(entry_t.c.id).limit(batch_size)
    ).all()
    accepted = settled(rows, total.ledger_last_id, now, check_gaps=check_gaps)
    folded = fold(accepted)
    changes = member_changes(folded, known_of(conn, folded))
    _apply_flows(conn, folded)
    if changes.new_members:
        conn.execute(
            insert(member_t),
            [
                {"member_id": v["mid"], "recharged": v["recharged"], "has_balance": v["has_balance"]}
                for v in changes.new_members
            ],
        )
    if changes.changed_members:
        conn.execute(
            update(member_t)
            .where(member_t.c.member_id == bindparam("mid"))
            .values(recharged=bindparam("recharged"), has_balance=bindparam("has_balance")),
            changes.changed_members,
        )
    if changes.new_pairs:
        conn.execute(insert(store_member_t), changes.new_pairs)

    points_rows = conn.execute(
        select(points_t.c.id, points_t.c.delta, points_t.c.created_at)
        .where(points_t.c.id > total.points_last_id)
        .order_by(points_t.c.id)
        .limit(batch_size)
    ).all()
    points_accepted = settled(points_rows, total.points_last_id, now, check_gaps=check_gaps)
    values: dict[str, Any] = {"updated_at": now}
    if accepted:
        values.update(
            ledger_last_id=folded.last_id,
            recharge_members=total_t.c.recharge_members + changes.recharge_members,
            members_with_balance=total_t.c.members_with_balance + changes.members_with_balance,
        )
    if points_accepted:
        values.update(
            points_last_id=points_accepted[-1].id,
            points_outstanding=total_t.c.points_outstanding + sum(r.delta for r in points_accepted),
        )
    conn.execute(update(total_t).where(total_t.c.id == 1).values(**values))
    return (
        len(accepted),
        len(points_accepted),
        folded.last_id or total.ledger_last_id,
        points_accepted[-1].id if points_accepted else total.points_last_id,
    )


def _apply_flows(conn: Connection, folded: Fold) -> None:
    """Add the fold's sums to report_daily and report_store_total: one batched upsert per table
    (``INSERT ... ON DUPLICATE KEY UPDATE x = x + new.x`` / SQLite's ``ON CONFLICT DO UPDATE``)."""
    for table, sums, keys in (
        (daily_t, folded.daily, ("day", "store_id")),
        (store_total_t, folded.stores, ("store_id",)),
    ):
        if not sums:
            continue
        rows = []
        for key, counter in sums.items():
            key_tuple = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(keys, key_tuple, strict=True)), **{n: counter.get(n, 0) for n in FLOW_COLUMNS}})
        if conn.dialect.name == "mysql":
            mysql_stmt = mysql_insert(table)
            stmt: Any = mysql_stmt.on_duplicate_key_update(
                {n: table.c[n] + mysql_stmt.inserted[n] for n in FLOW_COLUMNS}
            )
        else:
            sqlite_stmt = sqlite_insert(table)
            stmt = sqlite_stmt.on_conflict_do_update(
                index_elements=list(keys), set_={n: table.c[n] + sqlite_stmt.excluded[n] for n in FLOW_COLUMNS}
            )
        conn.execute(stmt, rows)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------------------
# Reading: summaries plus the live tail, on one snapshot


@dataclass
class Live:
    """The merchant-wide counters and the tail above the watermark, as of one snapshot."""

    recharge_members: int
    members_with_balance: int
    points_outstanding: int
    tail: Fold
    ledger_last_id: int


def live(conn: Connection) -> Live:
    total = conn.execute(select(total_t).where(total_t.c.id == 1)).first()
    ledger_last = total.ledger_last_id if total else 0
    points_last = total.points_last_id if total else 0
    tail = fold(conn.execute(select(*_ENTRY_COLUMNS).where(entry_t.c.id > ledger_last).order_by(entry_t.c.id)))
    changes = member_changes(tail, known_of(conn, tail))
    points_tail = conn.execute(
        select(func.coalesce(func.sum(points_t.c.delta), 0)).where(points_t.c.id > points_last)
    ).scalar_one()
    return Live(
        recharge_members=(total.recharge_members if total else 0) + changes.recharge_members,
        members_with_balance=(total.members_with_balance if total else 0) + changes.members_with_balance,
        points_outstanding=(total.points_outstanding if total else 0) + int(points_tail),
        tail=tail,
        ledger_last_id=ledger_last,
    )
