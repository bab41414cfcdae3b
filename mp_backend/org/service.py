"""Organisation: HQ, regions, stores, staff, roles and what each role may do where."""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select

from .. import tokens
from ..errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from ..extensions import db
from ..transaction import transactional
from .models import ROLES, AuditLog, Merchant, Region, Staff, Store

_hashers: dict[bool, PasswordHasher] = {}


def _hasher() -> PasswordHasher:
    # Tests use argon2's cheapest profile so that fixtures creating staff stay fast; never in production.
    cheap = bool(current_app.config.get("PASSWORD_HASH_CHEAP"))
    if cheap not in _hashers:
        _hashers[cheap] = PasswordHasher.from_parameters(profiles.CHEAPEST) if cheap else PasswordHasher()
    return _hashers[cheap]


# What each role may do; scope (which stores) is checked separately.
PERMISSIONS: dict[str, set[str]] = {
    "hq_admin": {
        "withdraw_offline",
        "reverse_entry",
        "manage_staff",
        "recharge_offline",
        "view_records",
        "manage_members",
        "manage_rules",
    },
    "region_manager": {"withdraw_offline", "reverse_entry", "recharge_offline", "view_records", "manage_members"},
    "store_manager": {"withdraw_offline", "recharge_offline", "view_records", "manage_members"},
    "clerk": {"recharge_offline", "view_records"},
}


def get_merchant() -> Merchant:
    merchant = db.session.scalars(select(Merchant).order_by(Merchant.id)).first()
    if merchant is None:
        raise NotFound("商户尚未初始化", code="merchant_missing")
    return merchant


@transactional
def ensure_merchant(name: str) -> Merchant:
    merchant = db.session.scalars(select(Merchant).order_by(Merchant.id)).first()
    if merchant is None:
        merchant = Merchant(name=name)
        db.session.add(merchant)
        db.session.flush()
    return merchant


@transactional
def ensure_region(code: str, name: str) -> Region:
    region = db.session.scalars(select(Region).where(Region.code == code)).first()
    if region is None:
        region = Region(code=code, name=name)
        db.session.add(region)
        db.session.flush()
    return region


@transactional
def ensure_store(code: str, name: str, region_code: str) -> Store:
    store = db.session.scalars(select(Store).where(Store.code == code)).first()
    if store is None:
        region = db.session.scalars(select(Region).where(Region.code == region_code)).first()
        if region is None:
            raise NotFound(f"区域 {region_code} 不存在", code="region_not_found")
        store = Store(code=code, name=name, region_id=region.id)
        db.session.add(store)
        db.session.flush()
    return store


def store_by_code(code: str) -> Store:
    store = db.session.scalars(select(Store).where(Store.code == code)).first()
    if store is None:
        raise NotFound(f"门店 {code} 不存在", code="store_not_found")
    return store


@transactional
def create_staff(
    username: str,
    role: str,
    password: str,
    *,
    store_code: str | None = None,
    region_code: str | None = None,
    created_by: int | None = None,
) -> Staff:
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise ValidationFailed("用户名必须是 1-64 个字符", code="invalid_username")
    if role not in ROLES:
        raise ValidationFailed(f"角色必须是 {', '.join(ROLES)} 之一", code="invalid_role")
    if not password or len(password) < 8:
        raise ValidationFailed("密码至少 8 位", code="weak_password")
    if db.session.scalars(select(Staff).where(Staff.username == username)).first() is not None:
        raise ValidationFailed("用户名已存在", code="username_taken", status=409)
    store = region = None
    if role in ("store_manager", "clerk"):
        if not store_code:
            raise ValidationFailed("店长和店员必须指定门店 --store", code="store_required")
        store = store_by_code(store_code)
        region = store.region
    elif role == "region_manager":
        if not region_code:
            raise ValidationFailed("区域经理必须指定区域 --region", code="region_required")
        region = db.session.scalars(select(Region).where(Region.code == region_code)).first()
        if region is None:
            raise NotFound(f"区域 {region_code} 不存在", code="region_not_found")
    staff = Staff(
        username=username,
        role=role,
        password_hash=_hasher().hash(password),
        store_id=store.id if store else None,
        region_id=region.id if region else None,
    )
    db.session.add(staff)
    db.session.flush()
    db.session.add(
        AuditLog(
            staff_id=created_by, action="staff_create", subject=f"staff:{staff.id}", reason=f"{username} as {role}"
        )
    )
    return staff


def authenticate(username: str, password: str) -> str:
    """Return a staff token, or refuse without telling whether the user exists."""
    staff = db.session.scalars(select(Staff).where(Staff.username == username)).first()
    try:
        ok = staff is not None and staff.active and _hasher().verify(staff.password_hash, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or staff is None:
        raise Unauthorized("用户名或密码错误", code="invalid_credentials")
    from .sessions import new_jti

    return tokens.issue("staff", {"staff_id": staff.id, "jti": new_jti()})


def staff_token_payload(token: str) -> dict:
    """A console token's payload: signed, not expired, not logged out."""
    from .sessions import is_revoked

    payload = tokens.verify("staff", token, current_app.config["STAFF_TOKEN_MAX_AGE"])
    if is_revoked(payload.get("jti")):
        raise Unauthorized("已退出登录，请重新登录", code="token_revoked")
    return payload


def staff_from_token(token: str) -> Staff:
    payload = staff_token_payload(token)
    staff_id = payload.get("staff_id")
    staff = db.session.get(Staff, staff_id) if type(staff_id) is int and 1 <= staff_id <= 2**31 - 1 else None
    if staff is None or not staff.active:
        raise Unauthorized("账号不存在或已停用", code="token_invalid")
    return staff


def can_access_store(staff: Staff, store_id: int | None) -> bool:
    if staff.role == "hq_admin":
        return True
    if store_id is None:
        return False
    if staff.role == "region_manager":
        store = db.session.get(Store, store_id)
        return store is not None and store.region_id == staff.region_id
    return staff.store_id == store_id


def store_ids_in_scope(staff: Staff) -> list[int] | None:
    """The stores a staff member sees; None means all (HQ)."""
    if staff.role == "hq_admin":
        return None
    if staff.role == "region_manager":
        return list(db.session.scalars(select(Store.id).where(Store.region_id == staff.region_id)))
    return [staff.store_id] if staff.store_id else []


def require_permission(staff_id: int, action: str, store_id: int | None) -> Staff:
    if type(staff_id) is not int or not 1 <= staff_id <= 2**31 - 1:  # True, "1", 1.0 are nobody
        raise Forbidden("操作员不存在或已停用", code="staff_not_found")
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise Forbidden("操作员不存在或已停用", code="staff_not_found")
    if action not in PERMISSIONS[staff.role]:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    if not can_access_store(staff, store_id):
        raise Forbidden("不能操作其他门店的业务", code="store_out_of_scope")
    return staff


def audit(staff_id: int | None, action: str, subject: str, reason: str = "") -> None:
    """Write an audit row in the caller's transaction."""
    db.session.add(AuditLog(staff_id=staff_id, action=action, subject=subject, reason=reason[:255]))
