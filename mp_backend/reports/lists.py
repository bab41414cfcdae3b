"""The console's record lists that the domains do not already serve: payments (members' balance payments
and the till's charges, one list), members (search), the audit log. Each builds its query from a
filter once, so a page and an export of the same filter select the same rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, cast, func, literal, or_, select, true, union_all

from ..extensions import db
from ..ledger.models import Wallet
from ..ledger.points import PointsLot
from ..members.cards import CardType, MemberCard
from ..members.models import Member
from ..models_base import utcnow
from ..org import service as org
from ..org.models import AuditLog, Staff, Store
from ..records.service import TOTAL_CAP, count_capped
from ..spending.models import OrderPayment
from ..spending.till import TillCharge
from .scope import StoreOutOfScope

payment_t = OrderPayment.__table__
till_t = TillCharge.__table__


def _member_ids(identifier: str) -> list[int]:
    return list(
        db.session.scalars(select(Member.id).where((Member.card_no == identifier) | (Member.phone == identifier)))
    )


def _scoped_store(staff: Staff, store_code: str | None) -> tuple[list[int] | None, int | None]:
    scope = org.store_ids_in_scope(staff)
    if not store_code:
        return scope, None
    store = org.store_by_code(store_code)
    if scope is not None and store.id not in scope:
        raise StoreOutOfScope()
    return scope, store.id


# ---------------------------------------------------------------------------------------------------
# Payments


@dataclass(frozen=True)
class PaymentFilter:
    store_code: str | None = None
    status: str | None = None
    order_no: str | None = None
    member: str | None = None  # card number or phone
    member_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    source: str | None = None  # order | till


def _payment_branch(table: Any, source: str, staff: Staff, f: PaymentFilter) -> Select[Any] | None:
    if f.source and f.source != source:
        return None
    scope, store_id = _scoped_store(staff, f.store_code)
    is_order = source == "order"
    columns = [
        literal(source, String(8)).label("source"),
        table.c.id,
        table.c.order_no,
        table.c.member_id,
        table.c.store_id,
        table.c.amount_fen,
        (table.c.balance_fen if is_order else table.c.paid_fen).label("balance_fen"),
        (table.c.wechat_fen if is_order else literal(0)).label("wechat_fen"),
        (table.c.refunded_balance_fen + table.c.refunded_wechat_fen if is_order else table.c.refunded_fen).label(
            "refunded_fen"
        ),
        cast(table.c.status, String(10)).label("status"),
        table.c.created_at,
    ]
    conditions: list[Any] = []
    if scope is not None:
        conditions.append(table.c.store_id.in_(scope or [-1]))
    if store_id is not None:
        conditions.append(table.c.store_id == store_id)
    if f.status:
        conditions.append(table.c.status == f.status)
    if f.order_no:
        conditions.append(table.c.order_no == f.order_no)
    if f.member:
        conditions.append(table.c.member_id.in_(_member_ids(f.member) or [0]))
    if f.member_id is not None:
        conditions.append(table.c.member_id == f.member_id)
    if f.created_from:
        conditions.append(table.c.created_at >= f.created_from)
    if f.created_to:
        conditions.append(table.c.created_at < f.created_to)
    return select(*columns).where(and_(true(), *conditions))


def payment_branches(staff: Staff, f: PaymentFilter) -> list[tuple[Any, Select[Any]]]:
    branches = [
        (payment_t, _payment_branch(payment_t, "order", staff, f)),
        (till_t, _payment_branch(till_t, "till", staff, f)),
    ]
    return [(table, query) for table, query in branches if query is not None]


def payments_page(staff: Staff, f: PaymentFilter, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """Newest first across both tables: each branch gives its first ``page * per_page`` rows (by its
    time index), the union is sorted and cut; the total is counted per branch up to the cap."""
    branches = payment_branches(staff, f)
    depth = page * per_page
    # each branch as a subquery of its own: SQLite takes no ORDER BY / LIMIT inside a UNION's members
    parts = [select(q.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(depth).subquery()) for t, q in branches]
    if not parts:
        return [], 0
    union = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    rows = db.session.execute(
        select(union)
        .order_by(union.c.created_at.desc(), union.c.source, union.c.id.desc())
        .offset(depth - per_page)
        .limit(per_page)
    ).all()
    total = sum(count_capped(q) for _t, q in branches)
    return [payment_row(r) for r in _with_store_names(rows)], total


def _with_store_names(rows: list[Any]) -> list[tuple[Any, tuple[str | None, str | None]]]:
    ids = {r.store_id for r in rows if r.store_id}
    names = (
        {
            s.id: (s.code, s.name)
            for s in db.session.execute(select(Store.id, Store.code, Store.name).where(Store.id.in_(ids)))
        }
        if ids
        else {}
    )
    return [(r, names.get(r.store_id, (None, None))) for r in rows]


def payment_row(item: tuple[Any, tuple[str | None, str | None]]) -> dict[str, Any]:
    row, (code, name) = item
    is_order = row.source == "order"
    return {
        "source": row.source,
        "id": row.id if is_order else None,  # GET /payments/<id> opens an order payment
        "charge_id": None if is_order else row.id,
        "order_no": row.order_no,
        "member_id": row.member_id,
        "store_id": row.store_id,
        "store_code": code,
        "store_name": name if row.store_id else "线上",
        "amount_fen": int(row.amount_fen),
        "balance_fen": int(row.balance_fen),
        "wechat_fen": int(row.wechat_fen),
        "refunded_fen": int(row.refunded_fen),
        "status": row.status,
        "created_at": row.created_at.isoformat(),
    }


# ---------------------------------------------------------------------------------------------------
# Members


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def members_query(q: str | None) -> Select[Any]:
    """Members by card number, phone (exact, or a prefix of at least 4 digits) or name (a prefix);
    every branch is an index range (card_no and phone are UNIQUE, name has ix_member_name)."""
    query = (
        select(
            Member.id,
            Member.card_no,
            Member.name,
            Member.phone,
            Member.status,
            Member.created_at,
            Wallet.principal_fen,
            Wallet.bonus_fen,
            Wallet.held_fen,
            CardType.name.label("level"),
        )
        .outerjoin(Wallet, Wallet.member_id == Member.id)
        .outerjoin(MemberCard, MemberCard.member_id == Member.id)
        .outerjoin(CardType, CardType.id == MemberCard.card_type_id)
    )
    text = (q or "").strip()
    if not text:
        return query
    if text.isascii() and text.isdigit():
        matches = [Member.card_no == text, Member.phone == text]
        if len(text) >= 4:
            prefix = _like_prefix(text)
            matches += [Member.card_no.like(prefix, escape="\\"), Member.phone.like(prefix, escape="\\")]
        return query.where(or_(*matches))
    return query.where(Member.name.like(_like_prefix(text), escape="\\"))


def mask_phone(phone: str | None) -> str | None:
    return None if not phone else (phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****")


def points_of(member_ids: list[int]) -> dict[int, int]:
    if not member_ids:
        return {}
    lot = PointsLot.__table__
    rows = db.session.execute(
        select(lot.c.member_id, func.sum(lot.c.remaining))
        .where(lot.c.member_id.in_(member_ids), lot.c.expires_at > utcnow())
        .group_by(lot.c.member_id)
    )
    return {member_id: int(total or 0) for member_id, total in rows}


def member_row(row: Any, points: int, *, mask: bool) -> dict[str, Any]:
    principal, bonus, held = int(row.principal_fen or 0), int(row.bonus_fen or 0), int(row.held_fen or 0)
    return {
        "id": row.id,
        "card_no": row.card_no,
        "name": row.name,
        "phone": mask_phone(row.phone) if mask else row.phone,
        "status": row.status,
        "level": row.level or "普通会员",
        "balance": {
            "principal_fen": principal,
            "bonus_fen": bonus,
            "held_fen": held,
            "available_fen": principal + bonus,
        },
        "points": points,
        "created_at": row.created_at.isoformat(),
    }


def masks_phones(staff: Staff) -> bool:
    """Clerks see members' phones masked (they look members up by card or full phone number)."""
    return staff.role == "clerk"


def members_page(staff: Staff, q: str | None, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    query = members_query(q)
    rows = db.session.execute(query.order_by(Member.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    points = points_of([r.id for r in rows])
    total = count_capped(query.with_only_columns(Member.id))
    return [member_row(r, points.get(r.id, 0), mask=masks_phones(staff)) for r in rows], total


# ---------------------------------------------------------------------------------------------------
# Audit log


@dataclass(frozen=True)
class AuditFilter:
    q: str | None = None
    staff: str | None = None  # username or id
    action: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def audit_page(f: AuditFilter, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    conditions: list[Any] = []
    if f.staff:
        who = f.staff.strip()
        ids = list(db.session.scalars(select(Staff.id).where(Staff.username == who)))
        if who.isascii() and who.isdigit() and len(who) < 10:
            ids.append(int(who))
        conditions.append(AuditLog.staff_id.in_(ids or [0]))
    if f.action:
        conditions.append(AuditLog.action == f.action)
    if f.created_from:
        conditions.append(AuditLog.created_at >= f.created_from)
    if f.created_to:
        conditions.append(AuditLog.created_at < f.created_to)
    if f.q:
        needle = "%" + _like_prefix(f.q.strip())
        conditions.append(or_(AuditLog.subject.like(needle, escape="\\"), AuditLog.reason.like(needle, escape="\\")))
    query = (
        select(
            AuditLog.id,
            AuditLog.staff_id,
            AuditLog.action,
            AuditLog.subject,
            AuditLog.reason,
            AuditLog.created_at,
            Staff.username,
        )
        .outerjoin(Staff, Staff.id == AuditLog.staff_id)
        .where(and_(true(), *conditions))
    )
    rows = db.session.execute(query.order_by(AuditLog.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    total = count_capped(query.with_only_columns(AuditLog.id))
    return [
        {
            "id": r.id,
            "staff_id": r.staff_id,
            "staff_username": r.username,
            "action": r.action,
            "subject": r.subject,
            "reason": r.reason,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ], total


def capped(total: int) -> dict[str, Any]:
    return {"total": min(total, TOTAL_CAP), "total_capped": total > TOTAL_CAP}
