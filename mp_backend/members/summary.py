"""What a member sees of themselves: balance, points, card. Used by /api/me and the balance reply."""

from __future__ import annotations

from dataclasses import dataclass

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

    def as_dict(self) -> dict:
        m = self.member
        return {
            "id": m.id,
            "card_no": m.card_no,
            "name": m.name,
            "phone": m.phone,
            "status": m.status,
            "subscribed": m.subscribed,
            "card": {"card_no": m.card_no, "status": m.status, "level": self.level_name},
            "level": {"name": self.level_name},
            "balance": self.balance.as_dict(),
            "points": self.points,
        }


def summarize(member: Member) -> MemberSummary:
    from ..ledger import points
    from .cards import card_of

    card_type = card_of(member.id)
    level = card_type.name if card_type is not None else "普通会员"
    return MemberSummary(member, ledger.get_balance(member.id), points.balance(member.id), level)


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
    status = STATUS_LABELS.get(summary.member.status, summary.member.status)
    lines.append(f"会员卡：{summary.member.card_no}（{summary.level_name}，{status}）")
    lines.append(f"会员中心：{member_centre_url}")
    return "\n".join(lines)
