"""WeChat member card (``mp_backend.members.wechat_card``): activation after the form, balance pushes."""

from __future__ import annotations

from ._context import app_context


def activate(wechat_card_id: int) -> str:
    """Enqueued after a ``submit_membercard_user_info`` event commits; safe to run again (claimed row)."""
    from mp_backend.members import wechat_card

    with app_context():
        return wechat_card.activate(wechat_card_id)


def push(member_id: int) -> str:
    """Enqueued after a ledger change commits; sends the current values, so the last one wins."""
    from mp_backend.members import wechat_card

    with app_context():
        return wechat_card.push(member_id)
