"""Balance change notices (``mp_backend.notices.service``): one WeChat template message per ledger entry."""

from __future__ import annotations

from ._context import app_context


def send_balance_notice(entry_id: int, amount_fen: int | None = None, title: str | None = None) -> str:
    """Enqueued after a commit that moved money; safe to run again (the notice log's UNIQUE entry_id)."""
    from mp_backend.notices import service as notices

    with app_context():
        return notices.send(entry_id, amount_fen, title)
