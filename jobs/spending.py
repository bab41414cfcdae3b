"""Order payments whose WeChat part never got a notification: ask WeChat Pay, capture or void. Every minute."""

from __future__ import annotations

import logging
from collections import Counter

from ._context import app_context

log = logging.getLogger(__name__)


def reconcile_pending_payments() -> dict[str, int]:
    """Query WeChat for payments pending past RECHARGE_QUERY_AFTER_SECONDS: capture the held balance of
    the paid ones (the same settle path as a notification), close the expired ones at WeChat and void
    their hold. Safe to run twice at once: both are guarded UPDATEs of the payment row."""
    from mp_backend.errors import AppError
    from mp_backend.spending import payments

    counts: Counter[str] = Counter()
    with app_context():
        for payment_id in payments.pending_payment_ids():
            try:
                counts[payments.reconcile_payment(payment_id)] += 1
            except AppError as error:  # WeChat unavailable: the next run tries again
                log.warning("reconcile payment %s: %s", payment_id, error)
                counts["error"] += 1
    if counts:
        log.info("payment reconcile: %s", dict(counts))
    return dict(counts)
