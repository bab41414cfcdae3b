"""Recharge orders whose notification never came: ask WeChat Pay, settle or close. Every minute."""

from __future__ import annotations

import logging
from collections import Counter

from ._context import app_context

log = logging.getLogger(__name__)


def reconcile_pending_orders() -> dict[str, int]:
    """Query WeChat for orders pending past RECHARGE_QUERY_AFTER_SECONDS: credit the paid ones through
    the same settle path as a notification, close the expired ones; credit orders paid while the
    member's card was frozen once it is active again (``paid_uncredited``). Safe to run twice at once: the
    settle and the close are guarded UPDATEs of the order row."""
    from mp_backend.errors import AppError
    from mp_backend.recharge import service as recharge

    counts: Counter[str] = Counter()
    with app_context():
        for order_id in recharge.pending_order_ids():
            try:
                counts[recharge.reconcile_order(order_id)] += 1
            except AppError as error:  # WeChat unavailable: the next run tries again
                log.warning("reconcile order %s: %s", order_id, error)
                counts["error"] += 1
        # Paid while the card was frozen or lost: credit once the member is active again.
        for order_id in recharge.held_order_ids():
            try:
                counts["credited_held" if recharge.credit_held_order(order_id) else "skipped"] += 1
            except AppError as error:  # frozen again in the meantime: the next run tries again
                log.warning("credit held order %s: %s", order_id, error)
                counts["error"] += 1
    if counts:
        log.info("recharge reconcile: %s", dict(counts))
    return dict(counts)
