"""Report summaries (``mp_backend.reports.summary``) and console exports (``mp_backend.reports.exports``)."""

from __future__ import annotations

from typing import Any

from ._context import app_context


def fold_ledger() -> dict[str, Any]:
    """Fold the ledger and points rows above the watermark into the summaries (every minute).
    Idempotent: the watermark moves in the transaction that adds the sums; runs take turns."""
    from mp_backend.reports import summary

    with app_context():
        result = summary.catch_up()
        return {"ledger_rows": result.ledger_rows, "points_rows": result.points_rows, "caught_up": result.caught_up}


def run_export(export_id: int) -> dict[str, Any]:
    """Write one export's .xlsx, streaming its rows in chunks; safe to run again (it starts over)."""
    from mp_backend.reports import exports

    with app_context():
        return exports.run_export(export_id)
