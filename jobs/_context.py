"""Run job code inside an app context: the caller's (in-process mode) or a new one (rq cron/worker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import has_app_context


@contextmanager
def app_context() -> Iterator[None]:
    if has_app_context():
        yield
        return
    from mp_backend import create_app

    with create_app().app_context():
        yield
