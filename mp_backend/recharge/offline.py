"""Recharges at the store's counter: cash or the card terminal, entered by staff in the console.

One call is one transaction: permission and store scope (``recharge_offline``, clerk and up, within
their stores), the member's card, the rule (its rewards apply, as in a WeChat recharge) or a free
amount (when the merchant's settings allow it, within their bounds), the principal cap, the ledger
credits, the rewards, an audit row, and the balance notice once it commits.

The receipt number is the idempotency key, UNIQUE per store: the same receipt again answers the first
result (``replayed``) and credits nothing; the same receipt with another member, amount, rule or
method is refused (``receipt_conflict``). A free amount earns no rewards: the clerk chooses the rule
when the member recharges under one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, MemberFrozen, MemberNotFound, NotFound, ValidationFailed
from ..extensions import db
from ..ledger import service as ledger
from ..ledger.models import Wallet
from ..loyalty import service as loyalty
from ..members import cards
from ..members.models import Member
from ..money import yuan
from ..notices import service as notices
from ..org import service as org
from ..org.models import Store
from ..transaction import RetryTransaction, transactional
from . import coupons
from . import service as recharge
from .models import CouponTemplate, RechargeRule
from .ops_models import OFFLINE_METHODS, OfflineRecharge

MAX_RECEIPT_LENGTH = 64


class ReceiptConflict(Conflict):
    code, message = "receipt_conflict", "该小票号已用于另一笔不同的充值"


@dataclass(frozen=True)
class OfflineResult:
    recharge: OfflineRecharge
    principal: ledger.Posting
    bonus: ledger.Posting | None
    replayed: bool


def find_member(ref: dict[str, Any]) -> Member:
    """A member by exactly one of ``id``, ``card_no``, ``phone``."""
    given = {k: v for k, v in (ref or {}).items() if v not in (None, "")}
    if len(given) != 1 or next(iter(given)) not in ("id", "card_no", "phone"):
        raise ValidationFailed("请用会员编号、卡号或手机号中的一项指定会员", code="member_ref_invalid")
    ((name, value),) = given.items()
    if name == "id":
        member = db.session.get(Member, value) if isinstance(value, int) and 0 < value < 2**31 else None
    else:
        member = db.session.scalars(select(Member).where(getattr(Member, name) == str(value))).first()
    if member is None:
        raise MemberNotFound()
    return member


def _store(store_id: int | None, store_code: str | None) -> Store:
    if (store_id is None) == (not store_code):
        raise ValidationFailed("请指定门店（store_id 或 store_code 二选一）", code="store_required")
    if store_id is not None:
        store = db.session.get(Store, store_id) if 0 < store_id < 2**31 else None
        if store is None:
            raise NotFound("门店不存在", code="store_not_found")
        return store
    return org.store_by_code(str(store_code))


def _fingerprint(member_id: int, method: str, rule_id: int | None, amount_fen: int) -> str:
    fields = [member_id, method, rule_id, amount_fen]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def lock_principal(member_id: int) -> int:
    """The member's principal under the wallet's row lock, so a cap check cannot race a credit."""
    principal = db.session.scalar(select(Wallet.principal_fen).where(Wallet.member_id == member_id).with_for_update())
    if principal is None:
        raise MemberNotFound()
    return int(principal)


def check_cap(member_id: int, amount_fen: int) -> None:
    cap = org.get_merchant().principal_cap_fen
    principal = lock_principal(member_id)
    if principal + amount_fen > cap:
        raise recharge.BalanceCapExceeded(
            f"充值后本金将超过单卡上限 {yuan(cap)} 元，当前本金 {yuan(principal)} 元",
            details={"cap_fen": cap, "principal_fen": principal, "max_recharge_fen": max(0, cap - principal)},
        )


@transactional
def recharge_offline(
    staff_id: int,
    *,
    member: dict[str, Any],
    method: str,
    receipt_no: str,
    store_id: int | None = None,
    store_code: str | None = None,
    rule_id: int | None = None,
    amount_fen: int | None = None,
    note: str = "",
) -> OfflineResult:
    store = _store(store_id, store_code)
    staff = org.require_permission(staff_id, "recharge_offline", store.id)
    if method not in OFFLINE_METHODS:
        raise ValidationFailed("收款方式只能是 cash（现金）或 card_terminal（刷卡）", code="invalid_method")
    receipt = (receipt_no or "").strip()
    if not receipt or len(receipt) > MAX_RECEIPT_LENGTH:
        raise ValidationFailed("请填写小票号（1-64 个字符）", code="invalid_receipt_no")
    if (rule_id is None) == (amount_fen is None):
        raise ValidationFailed("请选择充值活动或填写充值金额（二选一）", code="rule_or_amount_required")
    target = find_member(member)
    rule: RechargeRule | None = None
    if rule_id is not None:
        rule = recharge.get_rule(rule_id)
        amount = rule.amount_fen
    else:
        assert amount_fen is not None
        amount = amount_fen
    fingerprint = _fingerprint(target.id, method, rule_id, amount)

    first = db.session.scalars(
        select(OfflineRecharge).where(OfflineRecharge.store_id == store.id, OfflineRecharge.receipt_no == receipt)
    ).first()
    if first is not None:
        if first.request_hash != fingerprint:
            raise ReceiptConflict()
        return _replay(first)

    if rule is not None:
        recharge.check_offerable(rule, store.id)
    else:
        config = recharge.settings()
        if not config.free_amount_enabled:
            raise recharge.FreeAmountDisabled()
        if not config.free_min_fen <= amount <= config.free_max_fen:
            raise recharge.AmountOutOfRange(
                f"充值金额须在 {yuan(config.free_min_fen)} 至 {yuan(config.free_max_fen)} 元之间",
                details={"min_fen": config.free_min_fen, "max_fen": config.free_max_fen},
            )
    if target.status != "active":
        raise MemberFrozen("会员卡已冻结或挂失，不能充值")
    check_cap(target.id, amount)

    snap = recharge.snapshot_of(rule) if rule is not None else {}
    row = OfflineRecharge(
        store_id=store.id,
        receipt_no=receipt,
        member_id=target.id,
        method=method,
        rule_id=rule.id if rule else None,
        amount_fen=amount,
        bonus_fen=snap.get("bonus_fen") or 0,
        points=snap.get("points") or 0,
        coupon_template_id=snap.get("coupon_template_id"),
        coupon_qty=snap.get("coupon_qty") or 0,
        card_type_id=snap.get("card_type_id"),
        card_only_non_members=bool(snap.get("card_only_non_members")),
        staff_id=staff.id,
        note=(note or "").strip()[:255],
        request_hash=fingerprint,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError as error:  # the same receipt, committed by a racing copy: run again, replay it
        raise RetryTransaction() from error

    reference = f"offline:{store.id}:{receipt}"[:64]
    common = {"operator": f"staff:{staff.id}", "store_id": store.id, "reference": reference}
    method_words = "现金" if method == "cash" else "刷卡"
    principal = ledger.credit(
        target.id, amount, key=f"offline:{row.id}:principal", note=f"门店充值（{method_words}）", **common
    )
    bonus, outcome = recharge.grant_rewards(row, key_prefix=f"offline:{row.id}", order_id=None, **common)
    loyalty.on_recharge(target.id, amount, payment_key=f"offline:{row.id}", store_id=store.id, reference=reference)
    for name, value in outcome.items():
        setattr(row, name, value)
    row.principal_entry_id = principal.entry_id
    row.bonus_entry_id = bonus.entry_id if bonus else None
    org.audit(
        staff.id,
        "recharge_offline",
        f"member:{target.id}",
        f"{store.code} 小票 {receipt} {method} {amount} fen" + (f" 活动 {rule.id}" if rule else ""),
    )
    db.session.flush()
    notices.notify_after_commit(bonus or principal, amount + row.bonus_fen, "门店充值")
    return OfflineResult(row, principal, bonus, replayed=False)


def _replay(row: OfflineRecharge) -> OfflineResult:
    principal = ledger.find_entry(row.principal_entry_id) if row.principal_entry_id else None
    bonus = ledger.find_entry(row.bonus_entry_id) if row.bonus_entry_id else None
    assert principal is not None
    return OfflineResult(row, principal, bonus, replayed=True)


def result_dict(result: OfflineResult) -> dict[str, Any]:
    row = result.recharge
    store = db.session.get(Store, row.store_id)
    template = db.session.get(CouponTemplate, row.coupon_template_id) if row.coupon_template_id else None
    card_type = db.session.get(cards.CardType, row.card_type_id) if row.card_type_id else None
    rewards = recharge.rewards_of(
        {
            "bonus_fen": row.bonus_fen,
            "points": row.points,
            "coupon_qty": row.coupon_qty,
            "coupon_name": coupons.describe(template) if template else None,
            "card_name": card_type.name if card_type else None,
            "card_only_non_members": row.card_only_non_members,
        }
    )
    last = result.bonus or result.principal
    return {
        "id": row.id,
        "receipt_no": row.receipt_no,
        "store_id": row.store_id,
        "store_code": store.code if store else None,
        "method": row.method,
        "member_id": row.member_id,
        "rule_id": row.rule_id,
        "amount_fen": row.amount_fen,
        "bonus_fen": row.bonus_fen,
        "points": row.points,
        "coupons_granted": row.coupons_granted,
        "coupons_lapsed": row.coupons_lapsed,
        "card_outcome": row.card_outcome,
        "reward_note": row.reward_note,
        "rewards": rewards,
        "operator": f"staff:{row.staff_id}",
        "note": row.note,
        "principal_entry_id": row.principal_entry_id,
        "bonus_entry_id": row.bonus_entry_id,
        "balance": last.balance.as_dict(),  # just after this recharge, the same on a replay
        "replayed": result.replayed,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }
