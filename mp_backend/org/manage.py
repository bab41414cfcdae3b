"""HQ manages regions, stores and staff from the console; every staff member reads their own profile.

Creating and changing is hq_admin's (``manage_staff``), each change audited. Staff are deactivated,
never deleted (the ledger and the audit log name them); an hq_admin cannot deactivate or demote
themselves, so the merchant never locks itself out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..extensions import db
from ..transaction import transactional
from . import service as org
from .models import ROLES, Region, Staff, Store


def _require_hq(staff_id: int) -> Staff:
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise Forbidden("操作员不存在或已停用", code="staff_not_found")
    if "manage_staff" not in org.PERMISSIONS[staff.role]:
        raise Forbidden("只有总部管理员可以管理区域、门店和员工", code="permission_denied")
    return staff


def store_dict(store: Store) -> dict[str, Any]:
    return {
        "id": store.id,
        "code": store.code,
        "name": store.name,
        "region_id": store.region_id,
        "region_code": store.region.code,
        "region_name": store.region.name,
    }


def region_dict(region: Region, stores: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": region.id, "code": region.code, "name": region.name}
    if stores is not None:
        body["stores"] = stores
    return body


def staff_dict(staff: Staff) -> dict[str, Any]:
    """A staff member as the console shows them: role, the stores they work in, their region."""
    ids = org.store_ids_in_scope(staff)
    query = select(Store).order_by(Store.code)
    if ids is not None:
        query = query.where(Store.id.in_(ids or [-1]))
    stores = [{"id": s.id, "code": s.code, "name": s.name} for s in db.session.scalars(query)]
    region = staff.region
    return {
        "id": staff.id,
        "username": staff.username,
        "role": staff.role,
        "active": staff.active,
        "store_id": staff.store_id,
        "region_id": staff.region_id,
        "store_code": staff.store.code if staff.store else None,
        "region": {"id": region.id, "code": region.code, "name": region.name} if region else None,
        "all_stores": ids is None,
        "stores": stores,
        "permissions": sorted(org.PERMISSIONS[staff.role]),
        "created_at": staff.created_at.isoformat(),
    }


def list_regions(staff: Staff) -> list[dict[str, Any]]:
    """Every region for HQ; a region manager's or store staff's own."""
    counts = dict(db.session.execute(select(Store.region_id, func.count()).group_by(Store.region_id)).all())  # type: ignore[arg-type]
    query = select(Region).order_by(Region.code)
    if staff.role != "hq_admin":
        query = query.where(Region.id == staff.region_id)
    return [region_dict(r, int(counts.get(r.id, 0))) for r in db.session.scalars(query)]


def _code(value: str, what: str) -> str:
    code = (value or "").strip()
    if not code or len(code) > 32 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in code):
        raise ValidationFailed(f"{what}编码须是 1-32 位字母、数字、- 或 _", code="invalid_code")
    return code


def _name(value: str) -> str:
    name = (value or "").strip()
    if not name or len(name) > 64:
        raise ValidationFailed("名称须是 1-64 个字符", code="invalid_name")
    return name


@transactional
def create_region(staff_id: int, code: str, name: str) -> Region:
    _require_hq(staff_id)
    code = _code(code, "区域")
    if db.session.scalars(select(Region).where(Region.code == code)).first() is not None:
        raise Conflict("区域编码已存在", code="region_code_taken")
    region = Region(code=code, name=_name(name))
    db.session.add(region)
    db.session.flush()
    org.audit(staff_id, "region_create", f"region:{region.id}", f"{code} {region.name}")
    return region


def list_stores(staff: Staff) -> list[Store]:
    ids = org.store_ids_in_scope(staff)
    query = select(Store).order_by(Store.code)
    if ids is not None:
        query = query.where(Store.id.in_(ids or [-1]))
    return list(db.session.scalars(query))


def region_by_code(code: str) -> Region:
    region = db.session.scalars(select(Region).where(Region.code == code)).first()
    if region is None:
        raise NotFound(f"区域 {code} 不存在", code="region_not_found")
    return region


@transactional
def create_store(staff_id: int, code: str, name: str, region_code: str) -> Store:
    _require_hq(staff_id)
    code = _code(code, "门店")
    if db.session.scalars(select(Store).where(Store.code == code)).first() is not None:
        raise Conflict("门店编码已存在", code="store_code_taken")
    store = Store(code=code, name=_name(name), region_id=region_by_code(region_code).id)
    db.session.add(store)
    db.session.flush()
    org.audit(staff_id, "store_create", f"store:{store.id}", f"{code} {store.name} @ {region_code}")
    return store


@transactional
def update_store(staff_id: int, store_id: int, *, name: str | None = None, region_code: str | None = None) -> Store:
    _require_hq(staff_id)
    store = db.session.get(Store, store_id)
    if store is None:
        raise NotFound("门店不存在", code="store_not_found")
    changes = []
    if name is not None:
        store.name = _name(name)
        changes.append(f"name={store.name}")
    if region_code is not None:
        store.region_id = region_by_code(region_code).id
        changes.append(f"region={region_code}")
    db.session.flush()
    org.audit(staff_id, "store_update", f"store:{store.id}", " ".join(changes))
    return store


def list_staff(staff_id: int) -> list[Staff]:
    _require_hq(staff_id)
    return list(db.session.scalars(select(Staff).order_by(Staff.id)))


@transactional
def create_staff(staff_id: int, body: dict[str, Any]) -> Staff:
    _require_hq(staff_id)
    return org.create_staff(
        body["username"],
        body["role"],
        body["password"],
        store_code=body.get("store_code"),
        region_code=body.get("region_code"),
        created_by=staff_id,
    )


@transactional
def update_staff(staff_id: int, target_id: int, body: dict[str, Any]) -> Staff:
    """Change role, store or region, reset the password, deactivate or reactivate."""
    _require_hq(staff_id)
    target = db.session.get(Staff, target_id)
    if target is None:
        raise NotFound("员工不存在", code="staff_not_found")
    if target.id == staff_id and (body.get("active") is False or body.get("role", "hq_admin") != "hq_admin"):
        raise Conflict("不能停用自己或降低自己的角色", code="cannot_change_self")
    role = body.get("role", target.role)
    if role not in ROLES:
        raise ValidationFailed(f"角色必须是 {', '.join(ROLES)} 之一", code="invalid_role")
    store_code, region_code = body.get("store_code"), body.get("region_code")
    changes = []
    if role in ("store_manager", "clerk"):
        store = org.store_by_code(store_code) if store_code else target.store
        if store is None:
            raise ValidationFailed("店长和店员必须指定门店", code="store_required")
        target.store_id, target.region_id = store.id, store.region_id
    elif role == "region_manager":
        region = region_by_code(region_code) if region_code else target.region
        if region is None:
            raise ValidationFailed("区域经理必须指定区域", code="region_required")
        target.store_id, target.region_id = None, region.id
    else:
        target.store_id, target.region_id = None, None
    if role != target.role:
        changes.append(f"role {target.role}->{role}")
        target.role = role
    if store_code or region_code:
        changes.append(f"store={store_code or '-'} region={region_code or '-'}")
    if "active" in body and body["active"] != target.active:
        target.active = bool(body["active"])
        changes.append("activated" if target.active else "deactivated")
    if body.get("password"):
        if len(body["password"]) < 8:
            raise ValidationFailed("密码至少 8 位", code="weak_password")
        target.password_hash = org._hasher().hash(body["password"])
        changes.append("password reset")
    db.session.flush()
    org.audit(staff_id, "staff_update", f"staff:{target.id}", "; ".join(changes) or "no change")
    return target
