"""What a member sees of themselves: balance, points, card. Used by /api/me and the balance reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ledger import service as ledger
from ..ledger.service import Balance
from ..money import yuan
from .models import Member

STATUS_LABELS = {"active": "正常", "frozen": "已冻结", "lost": "已挂失"}


@dataclass(frozen=True)
class MemberSummary:
    member: Member
    balance: Balance
    points: int  # unexpired points (ledger/points.py)
    level_name: str
    card_type: Any = None  # the member's CardType, or None (普通会员)
    points_pending: int = 0  # earned by purchases, usable after the merchant's pending days

    def as_dict(self) -> dict:
        m, ct = self.member, self.card_type
        return {
            "id": m.id,
            "card_no": m.card_no,
            "name": m.name,
            "phone": m.phone,
            "status": m.status,
            "subscribed": m.subscribed,
            "card": {
                "card_no": m.card_no,
                "status": m.status,
                "status_label": STATUS_LABELS.get(m.status, m.status),
                "level": self.level_name,
                "discount_percent": ct.discount_percent if ct else 100,
                "free_shipping": bool(ct.free_shipping) if ct else False,
                "points_multiplier_percent": ct.points_multiplier_percent if ct else 100,
                "points_validity_years": ct.points_validity_years if ct else 2,
            },
            "level": {"name": self.level_name, "code": ct.code if ct else "normal", "rank": ct.level_rank if ct else 0},
            "balance": self.balance.as_dict(),
            "points": self.points,
            "points_pending": self.points_pending,
        }


def summarize(member: Member) -> MemberSummary:
    from ..ledger import points
    from .cards import card_of

    card_type = card_of(member.id)
    level = card_type.name if card_type is not None else "普通会员"
    return MemberSummary(
        member,
        ledger.get_balance(member.id),
        points.balance(member.id),
        level,
        card_type,
        points.pending_balance(member.id),
    )


def balance_reply_text(summary: MemberSummary, member_centre_url: str) -> str:
    """The official account's answer to "my balance": available first, in yuan, then the detail."""
    b = summary.balance
    lines = [
        f"余额：{yuan(b.available_fen)} 元",
        f"其中本金：{yuan(b.principal_fen)} 元，赠送：{yuan(b.bonus_fen)} 元",
    ]
    if b.held_fen:
        lines.append(f"冻结中（待结算）：{yuan(b.held_fen)} 元")
    lines.append(f"积分：{summary.points}")
    if summary.points_pending:
        lines.append(f"待生效积分：{summary.points_pending}")
    if summary.card_type is not None and summary.card_type.discount_percent < 100:
        tenths = summary.card_type.discount_percent  # 95 → 9.5 折, 90 → 9 折 (integers only)
        lines.append(f"会员折扣：{tenths // 10}{'' if tenths % 10 == 0 else f'.{tenths % 10}'} 折")
    status = STATUS_LABELS.get(summary.member.status, summary.member.status)
    lines.append(f"会员卡：{summary.member.card_no}（{summary.level_name}，{status}）")
    lines.append(f"会员中心：{member_centre_url}")
    return "\n".join(lines)
