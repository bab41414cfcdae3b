"""One service call is one database transaction, retried on deadlock and lock timeout.

``@transactional`` wraps a domain service function: it commits on return, rolls back on any error,
retries the whole call when the database reports a deadlock or a lock wait timeout, or when the call
raises ``RetryTransaction`` (a racing copy of an idempotent request committed first; the call is then
run again from the start, so it must not have side effects outside the database — jobs are enqueued
only after commit), and is transparent when called inside another transactional call.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import Busy
from .extensions import db, jobs

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

MAX_ATTEMPTS = 8
# MySQL/MariaDB: 1213 deadlock, 1205 lock wait timeout; SQLite: "database is locked"
RETRYABLE_MYSQL = {1205, 1213}


class RetryTransaction(Exception):
    """Raised inside a transactional call that lost a race to a commit it can only see from a new
    transaction (a racing copy of the same idempotent request): the whole call runs again."""


def is_retryable(error: DBAPIError) -> bool:
    orig = getattr(error, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in RETRYABLE_MYSQL:
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(orig)


def in_transaction() -> bool:
    return bool(db.session().info.get("transactional_depth"))


def transactional(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        session = db.session()
        if session.info.get("transactional_depth"):
            return fn(*args, **kwargs)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            session.info["transactional_depth"] = 1
            try:
                result = fn(*args, **kwargs)
                session.commit()
            except RetryTransaction:
                session.rollback()
                jobs.drop_after_commit()
                if attempt < MAX_ATTEMPTS:
                    continue
                raise Busy() from None
            except DBAPIError as error:
                session.rollback()
                jobs.drop_after_commit()
                if is_retryable(error) and attempt < MAX_ATTEMPTS:
                    log.info("retrying %s after %s (attempt %d)", fn.__name__, error.orig, attempt)
                    time.sleep(random.uniform(0.002, 0.01 * attempt))
                    continue
                if is_retryable(error):
                    raise Busy() from error
                raise
            except BaseException:
                session.rollback()
                jobs.drop_after_commit()
                raise
            finally:
                session.info.pop("transactional_depth", None)
            jobs.flush_after_commit()
            return result
        raise AssertionError("unreachable")

    return wrapper
