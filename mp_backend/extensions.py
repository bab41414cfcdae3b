"""Extension objects, created here and bound to the app in create_app()."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import redis as redis_lib
from flask import Flask
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

from .errors import ErrorSchema
from .security import BigIdConverter, IdConverter

log = logging.getLogger(__name__)

# Named constraints so that migrations are stable across SQLite and MariaDB.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate(compare_type=True, render_as_batch=True)


class AppApi(Api):
    ERROR_SCHEMA = ErrorSchema  # document our error shape, not flask-smorest's


api = AppApi()


def _id_schema(converter: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": converter.min, "maximum": converter.max}


# Once per process, before any init_app: each app's document then shows the ids' range.
api.register_converter(IdConverter, _id_schema)
api.register_converter(BigIdConverter, _id_schema)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE: a SQLite transaction then takes the
        # write lock up front, so a read followed by a write can never be overtaken by another writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # REPLACE deletes the row it replaces; only with recursive triggers does that fire the ledger's
        # append-only DELETE trigger (and so get refused) rather than slip past it.
        cursor.execute("PRAGMA recursive_triggers=ON")
        cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Jobs:
    """Enqueue RQ jobs by dotted path, or run them in process when no Redis is configured.

    Both modes go through ``enqueue``; the in-process mode calls the very same job function at once.
    ``enqueue_after_commit`` defers the enqueue until the current database transaction commits, so a
    rolled-back transaction never sends anything.
    """

    def __init__(self) -> None:
        self.redis: redis_lib.Redis | None = None
        self.queue: Any = None

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            from rq import Queue

            self.redis = redis_lib.Redis.from_url(url)
            self.queue = Queue(app.config.get("RQ_QUEUE", "default"), connection=self.redis)
        else:
            self.redis = None
            self.queue = None
        app.extensions["jobs"] = self

    def enqueue(self, func_path: str, *args: Any, job_id: str | None = None, **kwargs: Any) -> Any:
        if self.queue is not None:
            return self.queue.enqueue(func_path, *args, job_id=job_id, **kwargs)
        module, _, name = func_path.rpartition(".")
        func = getattr(importlib.import_module(module), name)
        return func(*args, **kwargs)

    def enqueue_after_commit(self, func_path: str, *args: Any, job_id: str | None = None, **kwargs: Any) -> None:
        """Queue a job to be enqueued by ``transaction.transactional`` once the transaction commits."""
        pending = db.session().info.setdefault("after_commit_jobs", [])
        pending.append((func_path, args, job_id, kwargs))

    def flush_after_commit(self) -> None:
        pending = db.session().info.pop("after_commit_jobs", [])
        for func_path, args, job_id, kwargs in pending:
            try:
                self.enqueue(func_path, *args, job_id=job_id, **kwargs)
            except Exception:  # a lost enqueue must not undo committed money; each job has a sweeper
                log.exception("enqueue after commit failed: %s", func_path)

    def drop_after_commit(self) -> None:
        db.session().info.pop("after_commit_jobs", None)


jobs = Jobs()
