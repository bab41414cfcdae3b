"""Batch recharges (``mp_backend.recharge.batch``): apply an uploaded, validated batch row by row."""

from __future__ import annotations

from typing import Any

from ._context import app_context


def apply_batch(batch_id: int) -> dict[str, Any]:
    """Each row once, whatever happened before: safe to retry after a crash, or to run twice at once."""
    from mp_backend.recharge import batch

    with app_context():
        return batch.apply_batch(batch_id)
