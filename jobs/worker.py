"""The RQ worker entry point: builds the app once, runs each job inside its app context.

``python -m jobs.worker [--burst] [queue ...]`` (Procfile ``worker``; ``--burst``: stop once the queues
are empty, as ``rq worker --burst`` does). RQ forks a work horse per job; the horse
drops the database connections inherited from the parent before the job opens its own.
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue, Worker

from mp_backend import create_app
from mp_backend.extensions import db


class AppWorker(Worker):
    app = None

    def perform_job(self, job, queue):  # type: ignore[no-untyped-def]
        assert self.app is not None
        with self.app.app_context():
            db.engine.dispose(close=False)  # the parent's pooled connections belong to the parent
            try:
                return super().perform_job(job, queue)
            finally:
                db.session.remove()


def make_worker(app, queue_names: list[str] | None = None) -> AppWorker:  # type: ignore[no-untyped-def]
    connection = Redis.from_url(app.config["REDIS_URL"])
    queues = [Queue(name, connection=connection) for name in (queue_names or ["default"])]
    worker = AppWorker(queues, connection=connection)
    worker.app = app
    return worker


def main() -> None:
    app = create_app()
    if not app.config.get("REDIS_URL"):
        sys.exit("REDIS_URL is not set: without Redis, jobs run in the web process and no worker is needed.")
    args = sys.argv[1:]
    burst = "--burst" in args
    queue_names = [a for a in args if a != "--burst"]
    make_worker(app, queue_names or None).work(burst=burst)


if __name__ == "__main__":
    main()
