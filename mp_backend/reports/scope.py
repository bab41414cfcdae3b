"""Which stores a console request covers: the staff member's scope, narrowed by a store or region filter.

A filter naming a store or region outside the staff member's scope is refused (403
``store_out_of_scope``); a record id outside it is answered 404 by the callers, so ids leak nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from ..errors import Forbidden
from ..extensions import db
from ..org import service as org
from ..org.manage import region_by_code
from ..org.models import Staff, Store
from ..recharge.service import require_viewer


class StoreOutOfScope(Forbidden):
    code, message = "store_out_of_scope", "不能查看其他门店的数据"


def viewer(staff_id: int) -> Staff:
    return require_viewer(staff_id)


def store_ids(staff: Staff, store_code: str | None = None, region_code: str | None = None) -> list[int] | None:
    """The store ids a request covers; None means every store and entries without one (HQ, no filter)."""
    scope = org.store_ids_in_scope(staff)
    if store_code:
        store = org.store_by_code(store_code)
        if scope is not None and store.id not in scope:
            raise StoreOutOfScope()
        chosen = [store.id]
        if region_code:
            region = region_by_code(region_code)
            chosen = [s for s in chosen if store.region_id == region.id]
        return chosen
    if region_code:
        region = region_by_code(region_code)
        ids = list(db.session.scalars(select(Store.id).where(Store.region_id == region.id).order_by(Store.id)))
        if scope is not None and not set(ids) <= set(scope):
            raise StoreOutOfScope("不能查看其他区域的数据")
        return ids
    return scope


def require_store_in_scope(staff: Staff, store_code: str | None) -> None:
    """For the existing record lists: a store filter outside the scope is 403, not an empty page."""
    if store_code:
        store_ids(staff, store_code)
