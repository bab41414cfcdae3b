"""Ledger records: a member's own (newest first, paged) and the merchant's, filtered and scoped by store.

Read-only: the rows come straight from ``ledger_entry`` (indexed by member and id, by reference and by
time), joined to the store's name. Store staff see only entries of their stores (``org.service``);
HQ sees everything, including entries without a store (online recharges, the open API's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, true

from ..errors import Forbidden, ValidationFailed
from ..extensions import db
from ..ledger.models import ENTRY_KINDS, LedgerEntry
from ..members.models import Member
from ..org import service as org
from ..org.models import Staff, Store
from ..recharge.service import require_viewer
from .words import china_time, kind_words, signed_yuan

MAX_PER_PAGE = 100

_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.member_id,
    LedgerEntry.kind,
    LedgerEntry.amount_fen,
    LedgerEntry.principal_delta_fen,
    LedgerEntry.bonus_delta_fen,
    LedgerEntry.held_delta_fen,
    LedgerEntry.principal_after_fen,
    LedgerEntry.bonus_after_fen,
    LedgerEntry.held_after_fen,
    LedgerEntry.store_id,
    LedgerEntry.operator,
    LedgerEntry.reference,
    LedgerEntry.note,
    LedgerEntry.created_at,
    Store.name.label("store_name"),
    Store.code.label("store_code"),
)


def entry_dict(row: Any, *, admin: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind,
        "kind_text": kind_words(row.kind, row.principal_delta_fen, row.bonus_delta_fen),
        "amount_fen": row.amount_fen,
        "amount_yuan": signed_yuan(row.kind, row.amount_fen),
        "principal_delta_fen": row.principal_delta_fen,
        "bonus_delta_fen": row.bonus_delta_fen,
        "held_delta_fen": row.held_delta_fen,
        "balance_after": {
            "principal_fen": row.principal_after_fen,
            "bonus_fen": row.bonus_after_fen,
            "held_fen": row.held_after_fen,
            "available_fen": row.principal_after_fen + row.bonus_after_fen,
        },
        "store_name": row.store_name or "线上",
        "reference": row.reference,
        "note": row.note,
        "created_at": row.created_at.isoformat(),
        "time": china_time(row.created_at),
    }
    if admin:
        body.update(member_id=row.member_id, store_id=row.store_id, store_code=row.store_code, operator=row.operator)
    return body


def _page(where: Any, page: int, per_page: int, *, cap: int | None = None) -> tuple[list[Any], int]:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValidationFailed(f"每页条数须在 1-{MAX_PER_PAGE} 之间", code="invalid_per_page")
    if page < 1:
        raise ValidationFailed("页码须从 1 开始", code="invalid_page")
    if cap is None:
        total = int(db.session.scalar(select(func.count()).select_from(LedgerEntry).where(where)) or 0)
    else:
        total = count_capped(select(LedgerEntry.id).where(where), cap)
    rows = db.session.execute(
        select(*_COLUMNS)
        .outerjoin(Store, Store.id == LedgerEntry.store_id)
        .where(where)
        .order_by(LedgerEntry.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(rows), total


# A list's total is counted up to this many rows, no further: counting a million rows for a page of 20
# would cost more than the page. Beyond it the answer says ``total_capped`` (the console shows "10,000+").
TOTAL_CAP = 10_000


def count_capped(query: Any, cap: int = TOTAL_CAP) -> int:
    """The rows ``query`` selects, counted up to ``cap + 1`` (more than ``cap`` means "over the cap")."""
    limited = query.limit(cap + 1).subquery()
    return int(db.session.scalar(select(func.count()).select_from(limited)) or 0)


def member_entries(member_id: int, *, page: int = 1, per_page: int = 20) -> tuple[list[Any], int]:
    """The member's own entries, newest first."""
    return _page(LedgerEntry.member_id == member_id, page, per_page)


@dataclass(frozen=True)
class EntryFilter:
    store_code: str | None = None
    operator: str | None = None
    kind: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    reference: str | None = None
    member_id: int | None = None
    member: str | None = None  # card number or phone


def merchant_entries(staff_id: int, f: EntryFilter, *, page: int = 1, per_page: int = 50) -> tuple[list[Any], int]:
    """Entries the staff member may see (their stores' only, for store and region staff), filtered."""
    staff = require_viewer(staff_id)
    return _page(and_(true(), *entry_conditions(staff, f)), page, per_page, cap=TOTAL_CAP)


def entry_conditions(staff: Staff, f: EntryFilter) -> list[Any]:
    """The WHERE of a merchant's ledger list (and its export): scope first, then the filters. A store
    filter outside the staff member's stores is refused (403), not answered with an empty page."""
    conditions: list[Any] = []
    scope = org.store_ids_in_scope(staff)
    if scope is not None:
        conditions.append(LedgerEntry.store_id.in_(scope))
    if f.store_code:
        store = org.store_by_code(f.store_code)
        if scope is not None and store.id not in scope:
            raise Forbidden("不能查看其他门店的数据", code="store_out_of_scope")
        conditions.append(LedgerEntry.store_id == store.id)
    if f.operator:
        conditions.append(LedgerEntry.operator == f.operator)
    if f.kind:
        if f.kind not in ENTRY_KINDS:
            raise ValidationFailed(f"kind 须是 {', '.join(ENTRY_KINDS)} 之一", code="invalid_kind")
        conditions.append(LedgerEntry.kind == f.kind)
    if f.created_from:
        conditions.append(LedgerEntry.created_at >= f.created_from)
    if f.created_to:
        conditions.append(LedgerEntry.created_at < f.created_to)
    if f.reference:
        conditions.append(LedgerEntry.reference == f.reference)
    if f.member_id is not None:
        conditions.append(LedgerEntry.member_id == f.member_id)
    if f.member:
        found = db.session.scalars(
            select(Member.id).where((Member.card_no == f.member) | (Member.phone == f.member))
        ).all()
        conditions.append(LedgerEntry.member_id.in_(found or [0]))
    return conditions


ENTRY_COLUMNS = _COLUMNS
