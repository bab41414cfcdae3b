"""gunicorn's settings for the web process (``Procfile``: ``gunicorn -c gunicorn.conf.py wsgi:app``).

Worker processes with a few threads each (``gthread``): a request spends most of its time waiting on
MariaDB (each statement a round trip, each commit a log flush) and on WeChat, and a sync worker also
lingers after every response until the client has closed its connection (gunicorn closes gracefully:
FIN, then waits for the peer's). Threads let a process serve other requests through those waits; the
processes still spread the CPU work over the cores (one GIL each). Every thread runs the request in
its own app context, with its own session and pooled connection (the pool's 5 + 10 per process is
well above the threads).

Keep-alive: a till or shop system keeps its connection open between open-API calls (no TCP handshake
per charge); WeChat Pay opens a new connection per notification, which works the same as before.

Environment (all optional): ``WEB_CONCURRENCY`` worker processes (gunicorn's own variable, default 4),
``GUNICORN_THREADS`` threads per process (4), ``GUNICORN_KEEPALIVE`` seconds an idle connection is kept (20).
The command line (``-w``, ``-b``) overrides these.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 4)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 20)
