"""Ledger kinds, amounts and times in the words members and merchants read."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..money import yuan

# Money coming in is shown with +, going out with −; a capture settles money already held.
KIND_WORDS = {
    "debit": "消费",
    "hold": "冻结（待支付）",
    "capture": "消费（冻结转扣款）",
    "void": "解冻（取消支付）",
    "refund": "退款",
    "withdrawal": "退还本金",
    "reversal": "冲正",
}
OUTGOING = ("debit", "hold", "capture", "withdrawal", "reversal")


def kind_words(kind: str, principal_delta_fen: int = 0, bonus_delta_fen: int = 0) -> str:
    """The kind in the member's words: a credit is a recharge (principal) or a gift (bonus)."""
    if kind == "credit":
        return "赠送" if bonus_delta_fen > 0 and principal_delta_fen == 0 else "充值"
    return KIND_WORDS.get(kind, kind)


def signed_yuan(kind: str, amount_fen: int) -> str:
    return f"{'-' if kind in OUTGOING else '+'}{yuan(amount_fen)}"


def china_time(moment: datetime) -> str:
    """Stored times are naive UTC; members and merchants read China time."""
    return (moment + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
