"""Merchant console: logout, the fund overview and its charts, payments, members and their history,
regions / stores / staff, the audit log and exports, on the ``admin`` blueprint (/admin/api/...).

Every route but the login needs the staff bearer token, checked before the body is read: the console
keeps its token in sessionStorage and sends it in ``Authorization``; no cookie authenticates a console
call, so a cross-site form (CSRF) is 401 and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request, send_file

from ..errors import MemberNotFound
from ..extensions import db
from ..ledger.points import PointsEntry
from ..members.models import Member
from ..org import manage, sessions
from ..org import service as org
from ..records import service as records
from ..reports import exports, lists, overview
from ..reports import scope as scopes
from ..reports.ranges import parse_range
from .admin import STAFF, blp
from .auth import _bearer, current_staff
from .console_schemas import (
    EXPORT_FILTERS,
    AuditIn,
    BySourceIn,
    DailyIn,
    ExportIn,
    ExportOut,
    Items,
    MemberLedgerIn,
    MembersIn,
    OverviewOut,
    PagedItems,
    PageIn,
    PaymentsIn,
    RegionIn,
    RegionOut,
    ScopeIn,
    StaffIn,
    StaffPatch,
    StoreIn,
    StoreOut,
    StorePatch,
)
from .schemas import Error, StaffSchema

PUBLIC_ENDPOINTS = {f"{blp.name}.login"}


@blp.before_request
def _staff_first() -> None:
    """Authenticate before anything else (body parsing included): no token, a forged, expired or
    logged-out one is 401 whatever the request looks like."""
    if request.endpoint not in PUBLIC_ENDPOINTS and request.method != "OPTIONS":
        current_staff()


def _errors(view, statuses=(400, 401, 403, 404)):  # type: ignore[no-untyped-def]
    for status in statuses:
        view = blp.alt_response(status, schema=Error)(view)
    return blp.doc(security=STAFF)(view)


def _range_errors(view):  # type: ignore[no-untyped-def]
    """Also 422: a refusal of what the request asks for, not of its shape (that is 400)."""
    view = blp.alt_response(422, schema=Error, description="invalid_range (or, for exports, export_too_large)")(view)
    return _errors(view)


def _paged(items: list[dict[str, Any]], total: int, query: dict) -> dict[str, Any]:
    return {"items": items, "page": query["page"], "per_page": query["per_page"], **lists.capped(total)}


# ---------------------------------------------------------------------------------------------------
# Session


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
@_errors
def logout() -> None:
    """End this console session: the token is refused from now on (other sessions stay)."""
    staff = current_staff()
    payload = org.staff_token_payload(_bearer() or "")
    if isinstance(payload.get("jti"), str):
        sessions.revoke(staff.id, payload["jti"])


# ---------------------------------------------------------------------------------------------------
# Overview


@blp.route("/overview", methods=["GET"])
@blp.arguments(ScopeIn, location="query")
@blp.response(200, OverviewOut)
@_errors
def fund_overview(query: dict) -> dict:
    """Balances by bucket (HQ), today's and cumulative flows, pending money, points liability, by store.
    From the report summaries plus the ledger rows above their watermark: exact, never a ledger scan."""
    return overview.overview(current_staff().id, store_code=query.get("store"), region_code=query.get("region"))


@blp.route("/overview/daily", methods=["GET"])
@blp.arguments(DailyIn, location="query")
@blp.response(200, Items)
@_errors
def overview_daily(query: dict) -> dict:
    """Recharge, consumption, refunds and bonus per day (Asia/Shanghai) for the last ``days``, zeros filled."""
    items = overview.daily(
        current_staff().id, days=query["days"], store_code=query.get("store"), region_code=query.get("region")
    )
    return {"items": items}


@blp.route("/overview/by-source", methods=["GET"])
@blp.arguments(BySourceIn, location="query")
@blp.response(200, Items)
@_range_errors
def overview_by_source(query: dict) -> dict:
    """Paid recharge orders per source tag (``src``), by payment time."""
    items = overview.by_source(
        current_staff().id, start=query.get("from_"), end=query.get("to"), store_code=query.get("store")
    )
    return {"items": items}


# ---------------------------------------------------------------------------------------------------
# Records


def _payment_filter(query: dict) -> lists.PaymentFilter:
    start, end = parse_range(query.get("from_"), query.get("to"))
    return lists.PaymentFilter(
        store_code=query.get("store"),
        status=query.get("status"),
        order_no=query.get("order_no"),
        member=query.get("member"),
        member_id=query.get("member_id"),
        created_from=start,
        created_to=end,
        source=query.get("source"),
    )


@blp.route("/payments", methods=["GET"])
@blp.arguments(PaymentsIn, location="query")
@blp.response(200, PagedItems)
@_range_errors
def payments_list(query: dict) -> dict:
    """Members' balance payments (``source: order``, open with GET /payments/<id>) and the till's charges
    and holds (``source: till``, ``charge_id``), newest first, in the staff member's stores."""
    staff = scopes.viewer(current_staff().id)
    items, total = lists.payments_page(staff, _payment_filter(query), query["page"], query["per_page"])
    return _paged(items, total, query)


# ---------------------------------------------------------------------------------------------------
# Members


@blp.route("/members", methods=["GET"])
@blp.arguments(MembersIn, location="query")
@blp.response(200, PagedItems)
@_errors
def members_list(query: dict) -> dict:
    """Members by card number, phone (exact or a prefix of 4+ digits) or name (prefix); newest first.
    Clerks see phones masked."""
    staff = scopes.viewer(current_staff().id)
    items, total = lists.members_page(staff, query.get("q"), query["page"], query["per_page"])
    return _paged(items, total, query)


def _member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise MemberNotFound()
    return member


@blp.route("/members/<id:member_id>/ledger", methods=["GET"])
@blp.arguments(MemberLedgerIn, location="query")
@blp.response(200, PagedItems)
@_range_errors
def member_ledger(query: dict, member_id: int) -> dict:
    """The member's ledger entries, newest first (store staff: the entries of their stores)."""
    staff = scopes.viewer(current_staff().id)
    _member(member_id)
    start, end = parse_range(query.get("from_"), query.get("to"))
    f = records.EntryFilter(member_id=member_id, kind=query.get("kind"), created_from=start, created_to=end)
    rows, total = records.merchant_entries(staff.id, f, page=query["page"], per_page=query["per_page"])
    return _paged([records.entry_dict(r, admin=True) for r in rows], total, query)


@blp.route("/members/<id:member_id>/points-history", methods=["GET"])
@blp.arguments(PageIn, location="query")
@blp.response(200, PagedItems)
@_errors
def member_points(query: dict, member_id: int) -> dict:
    """The member's points entries (award, spend, expire, reversal), newest first."""
    from sqlalchemy import func, select

    staff = scopes.viewer(current_staff().id)
    _member(member_id)
    # Points belong to no store: store staff see the movements, not their references (another store's
    # receipt or order number), as the member's ledger shows them only their own stores' rows.
    hq = org.store_ids_in_scope(staff) is None
    where = PointsEntry.member_id == member_id
    total = int(db.session.scalar(select(func.count()).select_from(PointsEntry).where(where)) or 0)
    rows = db.session.scalars(
        select(PointsEntry)
        .where(where)
        .order_by(PointsEntry.id.desc())
        .offset((query["page"] - 1) * query["per_page"])
        .limit(query["per_page"])
    )
    items = [
        {
            "id": r.id,
            "kind": r.kind,
            "delta": r.delta,
            "balance_after": r.balance_after,
            "reference": r.reference if hq else None,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
    return _paged(items, total, query)


# ---------------------------------------------------------------------------------------------------
# Regions, stores, staff (HQ)


@blp.route("/regions", methods=["GET"])
@blp.response(200, Items)
@_errors
def regions_list() -> dict:
    return {"items": manage.list_regions(current_staff())}


@blp.route("/regions", methods=["POST"])
@blp.arguments(RegionIn)
@blp.response(201, RegionOut)
@_errors
def regions_create(body: dict) -> dict:
    """HQ creates a region (audited)."""
    return manage.region_dict(manage.create_region(current_staff().id, body["code"], body["name"]))


@blp.route("/stores", methods=["GET"])
@blp.arguments(PageIn, location="query")
@blp.response(200, PagedItems)
@_errors
def stores_list(query: dict) -> dict:
    """The stores the staff member sees (HQ: all), by code."""
    stores = manage.list_stores(current_staff())
    return {"items": [manage.store_dict(s) for s in stores], "page": 1, "per_page": len(stores), "total": len(stores)}


@blp.route("/stores", methods=["POST"])
@blp.arguments(StoreIn)
@blp.response(201, StoreOut)
@_errors
def stores_create(body: dict) -> dict:
    store = manage.create_store(current_staff().id, body["code"], body["name"], body["region_code"])
    return manage.store_dict(store)


@blp.route("/stores/<id:store_id>", methods=["PATCH"])
@blp.arguments(StorePatch)
@blp.response(200, StoreOut)
@_errors
def stores_update(body: dict, store_id: int) -> dict:
    store = manage.update_store(
        current_staff().id, store_id, name=body.get("name"), region_code=body.get("region_code")
    )
    return manage.store_dict(store)


@blp.route("/staff", methods=["GET"])
@blp.arguments(PageIn, location="query")
@blp.response(200, PagedItems)
@_errors
def staff_list(query: dict) -> dict:
    """Every staff member (HQ only), active or not."""
    people = manage.list_staff(current_staff().id)
    return {"items": [manage.staff_dict(s) for s in people], "page": 1, "per_page": len(people), "total": len(people)}


@blp.route("/staff", methods=["POST"])
@blp.arguments(StaffIn)
@blp.response(201, StaffSchema)
@_errors
def staff_create(body: dict) -> dict:
    """HQ creates a staff member with a first password (8+ characters); audited."""
    return manage.staff_dict(manage.create_staff(current_staff().id, body))


@blp.route("/staff/<id:staff_id>", methods=["PATCH"])
@blp.arguments(StaffPatch)
@blp.response(200, StaffSchema)
@_errors
def staff_update(body: dict, staff_id: int) -> dict:
    """Change role, store or region, reset the password, or deactivate (``active: false``); audited."""
    return manage.staff_dict(manage.update_staff(current_staff().id, staff_id, body))


# ---------------------------------------------------------------------------------------------------
# Audit log (HQ)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditIn, location="query")
@blp.response(200, PagedItems)
@_range_errors
def audit_log(query: dict) -> dict:
    """Who did what sensitive thing and why: by text (subject or reason), staff, action, time."""
    manage.list_staff(current_staff().id)  # HQ only, the same check
    start, end = parse_range(query.get("from_"), query.get("to"))
    f = lists.AuditFilter(
        q=query.get("q"), staff=query.get("staff"), action=query.get("action"), created_from=start, created_to=end
    )
    items, total = lists.audit_page(f, query["page"], query["per_page"])
    return _paged(items, total, query)


# ---------------------------------------------------------------------------------------------------
# Exports


@blp.route("/exports", methods=["POST"])
@blp.arguments(ExportIn)
@blp.response(202, ExportOut)
@_range_errors
def export_start(body: dict) -> dict:
    """Export a filtered list to .xlsx (a job; poll its progress). Bounded to the staff member's stores
    and to EXPORT_MAX_ROWS rows (clerks: EXPORT_MAX_ROWS_CLERK): more is 422 ``export_too_large``."""
    filters = EXPORT_FILTERS[body["kind"]]().load(body["filters"])
    filters = {k: _utc(v) for k, v in filters.items()}
    job = exports.start_export(current_staff().id, body["kind"], filters)
    return exports.export_dict(exports.get_export(current_staff().id, job.id))


def _utc(value: Any) -> Any:
    """Times of the list schemas are UTC when naive (as the lists read them): say so in the stored filter."""
    if isinstance(value, datetime):
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return value


@blp.route("/exports/<id:export_id>", methods=["GET"])
@blp.response(200, ExportOut)
@_errors
def export_progress(export_id: int) -> dict:
    return exports.export_dict(exports.get_export(current_staff().id, export_id))


@blp.route("/exports/<id:export_id>/file", methods=["GET"])
@blp.response(200, description="the .xlsx file")
@_errors
def export_file(export_id: int):  # type: ignore[no-untyped-def]
    """The finished file: for the staff member who asked for it, or HQ (anyone else: 404)."""
    path, name = exports.file_of(current_staff().id, export_id)
    return send_file(
        path,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        as_attachment=True,
        download_name=name,
        max_age=0,
    )
