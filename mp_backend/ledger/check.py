"""The ledger invariants of DESIGN.md section 3, checked on whatever database is configured.

Read-only and streaming, so it can run against production (ideally a replica):
1. every wallet's buckets equal the sums of its ledger deltas, and every row's "after" values equal
   the running sums (replaying the ledger from nothing reproduces every balance);
2. no bucket is negative, in the wallet or in any row;
3. every idempotency key took effect once;
5. no payment is refunded beyond what it took;
and, for holds: the held bucket equals the open holds, and no hold is closed twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db
from .models import LedgerEntry, Wallet


@dataclass(frozen=True)
class Problem:
    member_id: int | None
    invariant: str
    detail: str

    def __str__(self) -> str:
        who = f"wallet {self.member_id}" if self.member_id is not None else "ledger"
        return f"{who}: {self.invariant}: {self.detail}"


def check_ledger(batch_size: int = 5000) -> list[Problem]:
    problems: list[Problem] = []
    e = LedgerEntry.__table__
    w = Wallet.__table__
    session = db.session

    replay: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    holds: dict[int, tuple[int, int]] = {}  # hold id -> (member, amount)
    closed: set[int] = set()
    taken: dict[int, list[int]] = {}  # payment id -> [principal, bonus] taken
    refunded: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    cols = (
        e.c.id,
        e.c.member_id,
        e.c.kind,
        e.c.amount_fen,
        e.c.principal_delta_fen,
        e.c.bonus_delta_fen,
        e.c.held_delta_fen,
        e.c.principal_after_fen,
        e.c.bonus_after_fen,
        e.c.held_after_fen,
        e.c.related_entry_id,
        e.c.closes_entry_id,
    )
    hold_split: dict[int, tuple[int, int]] = {}
    rows = session.execute(select(*cols).order_by(e.c.member_id, e.c.id).execution_options(yield_per=batch_size))
    for eid, member_id, kind, amount, dp, dbonus, dh, pa, ba, ha, related, closes in rows:
        sums = replay[member_id]
        sums[0] += dp
        sums[1] += dbonus
        sums[2] += dh
        if (pa, ba, ha) != tuple(sums):
            problems.append(
                Problem(member_id, "replay", f"entry {eid} says after=({pa}, {ba}, {ha}), replay gives {tuple(sums)}")
            )
            sums[:] = [pa, ba, ha]  # resynchronise so one bad row is reported once
        if min(pa, ba, ha) < 0:
            problems.append(Problem(member_id, "negative bucket", f"entry {eid} leaves ({pa}, {ba}, {ha})"))
        if kind == "hold":
            holds[eid] = (member_id, amount)
            hold_split[eid] = (-dp, -dbonus)
        if closes is not None:
            if closes in closed:
                problems.append(Problem(member_id, "closed twice", f"entry {closes} closed again by {eid}"))
            closed.add(closes)
        if kind == "debit":
            taken[eid] = [-dp, -dbonus]
        elif kind == "capture" and related in hold_split:
            hp, hb = hold_split[related]
            taken[eid] = [hp - dp, hb - dbonus]
        elif kind == "refund" and related is not None:
            refunded[related][0] += dp
            refunded[related][1] += dbonus

    for member_id, principal, bonus, held in session.execute(
        select(w.c.member_id, w.c.principal_fen, w.c.bonus_fen, w.c.held_fen).order_by(w.c.member_id)
    ):
        sums = replay.get(member_id, [0, 0, 0])
        if [principal, bonus, held] != list(sums):
            problems.append(
                Problem(
                    member_id,
                    "balance != sum of ledger",
                    f"wallet ({principal}, {bonus}, {held}), ledger {tuple(sums)}",
                )
            )
        if min(principal, bonus, held) < 0:
            problems.append(Problem(member_id, "negative bucket", f"wallet ({principal}, {bonus}, {held})"))

    open_held: dict[int, int] = defaultdict(int)
    for hold_id, (member_id, amount) in holds.items():
        if hold_id not in closed:
            open_held[member_id] += amount
    for member_id, sums in replay.items():
        if sums[2] != open_held.get(member_id, 0):
            problems.append(
                Problem(member_id, "held != open holds", f"held {sums[2]}, open holds {open_held.get(member_id, 0)}")
            )

    for payment_id, (rp, rb) in refunded.items():
        tp, tb = taken.get(payment_id, (0, 0))
        if rp > tp or rb > tb:
            problems.append(
                Problem(
                    None, "refund exceeds payment", f"payment {payment_id} took ({tp}, {tb}), refunds gave ({rp}, {rb})"
                )
            )

    for key, count in session.execute(
        select(e.c.idempotency_key, func.count()).group_by(e.c.idempotency_key).having(func.count() > 1)
    ):
        problems.append(Problem(None, "idempotency key used twice", f"{key!r} x{count}"))
    session.rollback()
    return problems
