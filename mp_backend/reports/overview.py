"""The fund overview, the daily series and recharges by source tag, for the console.

Every figure is summaries + the live tail (``summary.live``) on one consistent snapshot; nothing here
scans the ledger. Balances are the merchant's (a member's wallet spans stores), so only HQ sees them
(and the points liability); store and region staff see the flows of their stores.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ..ledger.check import _snapshot
from ..models_base import utcnow
from ..org.models import Store
from ..recharge import service as recharge
from ..recharge.models import RechargeOrder
from . import scope as scopes
from .models import FLOW_COLUMNS
from .ranges import iso_local, parse_range
from .summary import NO_STORE, Live, daily_t, live, local_day, store_total_t

order_t = RechargeOrder.__table__


def _in_scope(store_id: int, ids: list[int] | None) -> bool:
    return ids is None or store_id in ids


def _store_sums(conn: Connection, now_live: Live, ids: list[int] | None) -> dict[int, Counter[str]]:
    """Cumulative sums per store: summary rows plus the tail."""
    query = select(store_total_t)
    if ids is not None:
        query = query.where(store_total_t.c.store_id.in_(ids or [-1]))
    sums: dict[int, Counter[str]] = {}
    for row in conn.execute(query).mappings():
        sums[row["store_id"]] = Counter({name: int(row[name]) for name in FLOW_COLUMNS})
    for store_id, counter in now_live.tail.stores.items():
        if _in_scope(store_id, ids):
            sums.setdefault(store_id, Counter()).update(counter)
    return sums


def _daily_sums(
    conn: Connection, now_live: Live, ids: list[int] | None, first: date, last: date
) -> dict[tuple[date, int], Counter[str]]:
    query = select(daily_t).where(daily_t.c.day >= first, daily_t.c.day <= last)
    if ids is not None:
        query = query.where(daily_t.c.store_id.in_(ids or [-1]))
    sums: dict[tuple[date, int], Counter[str]] = {}
    for row in conn.execute(query).mappings():
        sums[(row["day"], row["store_id"])] = Counter({name: int(row[name]) for name in FLOW_COLUMNS})
    for (day, store_id), counter in now_live.tail.daily.items():
        if first <= day <= last and _in_scope(store_id, ids):
            sums.setdefault((day, store_id), Counter()).update(counter)
    return sums


def _total(sums: dict[Any, Counter[str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for counter in sums.values():
        out.update(counter)
    return out


def overview(staff_id: int, *, store_code: str | None = None, region_code: str | None = None) -> dict[str, Any]:
    staff = scopes.viewer(staff_id)
    ids = scopes.store_ids(staff, store_code, region_code)
    is_hq = staff.role == "hq_admin"
    now = utcnow()
    today = local_day(now)
    with _snapshot() as conn:
        now_live = live(conn)
        stores = _store_sums(conn, now_live, ids)
        merchant = _total(stores if ids is None else _store_sums(conn, now_live, None)) if is_hq else None
        today_sums = _daily_sums(conn, now_live, ids, today, today)
        uncredited = conn.execute(
            select(func.count(), func.coalesce(func.sum(order_t.c.amount_fen), 0)).where(
                order_t.c.status == "paid_uncredited",
                *([] if ids is None else [order_t.c.store_id.in_(ids or [-1])]),
            )
        ).one()
        names = _store_names(conn, ids)
    cumulative, todays = _total(stores), _total(today_sums)
    balance = None
    if merchant is not None:
        balance = {
            "principal_fen": merchant["principal_delta_fen"],
            "bonus_fen": merchant["bonus_delta_fen"],
            "held_fen": merchant["held_delta_fen"],
            "total_fen": merchant["principal_delta_fen"] + merchant["bonus_delta_fen"],
            "members_with_balance": now_live.members_with_balance,
        }
    return {
        "scope": {"store": store_code, "region": region_code, "stores": None if ids is None else len(ids)},
        "balance": balance,
        "today": {
            "date": today.isoformat(),
            "recharge_fen": todays["recharge_fen"],
            "recharge_count": todays["recharge_count"],
            "bonus_fen": todays["bonus_fen"],
            "consumption_fen": todays["consumption_fen"],
            "consumption_count": todays["consumption_count"],
            "refund_fen": todays["refund_fen"],
        },
        "cumulative": {
            "recharge_fen": cumulative["recharge_fen"],
            "recharge_count": cumulative["recharge_count"],
            # merchant-wide: distinct members; for stores: per store, summed (see README)
            "recharge_members": now_live.recharge_members if ids is None else cumulative["new_recharge_members"],
            "bonus_given_fen": cumulative["bonus_fen"],
            "consumption_fen": cumulative["consumption_fen"],
            "refund_fen": cumulative["refund_fen"],
            "withdrawal_fen": cumulative["withdrawal_fen"],
        },
        "points_liability": now_live.points_outstanding if is_hq else None,
        "pending": {
            "held_fen": balance["held_fen"] if balance else None,
            "uncredited_orders": int(uncredited[0]),
            "uncredited_fen": int(uncredited[1]),
        },
        "as_of": iso_local(now),
        "by_store": [_store_row(store_id, code, name, today_sums, stores) for store_id, (code, name) in names.items()],
    }


def _store_row(
    store_id: int,
    code: str | None,
    name: str,
    today_sums: dict[tuple[date, int], Counter[str]],
    stores: dict[int, Counter[str]],
) -> dict[str, Any]:
    day: Counter[str] = Counter()
    for (_day, sid), counter in today_sums.items():
        if sid == store_id:
            day.update(counter)
    total = stores.get(store_id, Counter())
    return {
        "store_id": store_id or None,
        "store_code": code,
        "store_name": name,
        "recharge_today_fen": day["recharge_fen"],
        "recharge_today_count": day["recharge_count"],
        "consumption_today_fen": day["consumption_fen"],
        "consumption_today_count": day["consumption_count"],
        "refund_today_fen": day["refund_fen"],
        "recharge_fen": total["recharge_fen"],
        "recharge_members": total["new_recharge_members"],
        "consumption_fen": total["consumption_fen"],
    }


def _store_names(conn: Connection, ids: list[int] | None) -> dict[int, tuple[str | None, str]]:
    """Stores of the scope in code order; HQ without a filter also gets the no-store row (online)."""
    query = select(Store.id, Store.code, Store.name).order_by(Store.code)
    if ids is not None:
        query = query.where(Store.id.in_(ids or [-1]))
    names: dict[int, tuple[str | None, str]] = {row.id: (row.code, row.name) for row in conn.execute(query)}
    if ids is None:
        names[NO_STORE] = (None, "线上（无门店）")
    return names


def daily(
    staff_id: int, *, days: int, store_code: str | None = None, region_code: str | None = None
) -> list[dict[str, Any]]:
    """Every day of the last ``days`` (today included), zeros filled."""
    staff = scopes.viewer(staff_id)
    ids = scopes.store_ids(staff, store_code, region_code)
    last = local_day(utcnow())
    first = last - timedelta(days=days - 1)
    with _snapshot() as conn:
        sums = _daily_sums(conn, live(conn), ids, first, last)
    per_day: dict[date, Counter[str]] = {}
    for (day, _store), counter in sums.items():
        per_day.setdefault(day, Counter()).update(counter)
    out = []
    for n in range(days):
        day = first + timedelta(days=n)
        c = per_day.get(day, Counter())
        out.append(
            {
                "date": day.isoformat(),
                "recharge_fen": c["recharge_fen"],
                "recharge_count": c["recharge_count"],
                "consumption_fen": c["consumption_fen"],
                "consumption_count": c["consumption_count"],
                "refund_fen": c["refund_fen"],
                "bonus_fen": c["bonus_fen"],
            }
        )
    return out


def by_source(
    staff_id: int, *, start: str | None, end: str | None, store_code: str | None = None
) -> list[dict[str, Any]]:
    """Paid recharge orders per source tag in a payment-time range (the recharge statistics, by src)."""
    staff = scopes.viewer(staff_id)
    scopes.require_store_in_scope(staff, store_code)
    paid_from, paid_to = parse_range(start, end)
    rows = recharge.stats(
        staff_id, "src", recharge.OrderFilter(store_code=store_code, paid_from=paid_from, paid_to=paid_to)
    )
    return [
        {"src": row["key"], "orders": row["paid_orders"], "members": row["members"], "paid_fen": row["paid_fen"]}
        for row in rows
        if row["paid_orders"]
    ]
