"""Housekeeping jobs. Job functions take ids and primitives and are safe to run twice."""

from __future__ import annotations

import logging

from ._context import app_context

log = logging.getLogger(__name__)


def check_ledger() -> int:
    """Nightly: verify the ledger invariants and log every broken wallet loudly. Returns the count."""
    from mp_backend.ledger.check import check_ledger as run_check

    with app_context():
        problems = run_check()
    for problem in problems:
        log.error("ledger invariant broken: %s", problem)
    return len(problems)
