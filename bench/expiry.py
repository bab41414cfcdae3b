"""Points expiry and expiry reminders at scale, next to bare batched SQL on the same rows.

    python -m bench.expiry [--lots 1000000] [--members 100000] [--batch 1000]
                           [--database-url URL] [--redis-url URL]

Setup (not timed; bare DB-API ``executemany`` in batches): ``--members`` members, each with a wallet,
an official-account openid and one lot that expires in 10 days (so each is due one 15-day reminder),
and ``--lots`` lots that expired during the last 30 days (10 points each, spread over the members and
the days, so each batch of the job touches as many members as it has lots), every lot with its
``award`` entry, as the app writes them. The same lots are copied into plain tables (``bare_lot``,
``bare_entry``, ``bare_reminder``: no triggers, no foreign keys) for the baseline.

Two worker processes (spawned, one at a time, each with its own connections and its own peak memory):

1. ``job``: the daily job's own functions, as ``jobs.points.daily`` runs them on an RQ worker:
   ``loyalty.service.expire_due`` (``--batch`` lots per transaction, resumable cursor, the wallets
   locked, one ``expire`` entry per lot with its idempotency key), then ``reminders.plan`` (the
   reminder rows, a batch of members per transaction) and ``reminders.enqueue_all_due`` (one RQ job per
   chunk of 100 reminders, a batch per Redis pipeline, into the queue ``bench-expiry`` of ``--redis-url``);
2. ``bare``: the minimum the same work takes on a bare PyMySQL (sqlite3) connection: per batch of
   lots in (expires_at, id) order, ``SELECT`` the batch, one ``UPDATE ... SET remaining = 0 WHERE id
   IN (...)``, one multi-row ``INSERT`` of the entries, ``COMMIT``; per batch of members, the
   ``SELECT ... GROUP BY`` of their lots due within 30 days and one multi-row ``INSERT`` of the
   reminder rows, ``COMMIT`` (no Redis).

Each prints lots/s and reminders/s, and the process's peak memory (``ru_maxrss``) after 100,000 lots
and after all of them: flat when nothing grows with the count. Afterwards it checks that every lot
expired exactly once (one ``expire`` entry each, nothing left), one reminder per member, one queued
job per reminder, the points invariants (``points.check``) and the ledger (``check_ledger``); the exit
status is 1 otherwise. The last line is ``ratio <job/bare>``, the lower of the two ratios (expiry and
reminders).

The database (``DATABASE_URL``, default the local MariaDB ``mp_bench_expiry``) is emptied and rebuilt
by the app's migrations first; the Redis queue ``bench-expiry`` is emptied (nothing else is touched).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.ledger import _pymysql_args, make_app, prepare_database

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench_expiry?charset=utf8mb4"
QUEUE = "bench-expiry"
POINTS_PER_LOT = 10
CHECKPOINT = 100_000  # lots: the first memory reading
SEED_CHUNK = 10_000


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _connect(url: str) -> tuple[Any, str]:
    """A bare DB-API connection and its placeholder."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "mysql":
        import pymysql

        conn = pymysql.connect(**_pymysql_args(url), autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return conn, "%s"
    import sqlite3

    return sqlite3.connect(parsed.database, timeout=30), "?"


# ---------------------------------------------------------------------------------------------------
# Setup


def seed(url: str, members: int, lots: int, now: datetime) -> None:
    """Members, wallets, openids, lots and their award entries, as the app writes them, in chunks."""
    from mp_backend.ledger.points import local_date, local_midnight_utc

    conn, p = _connect(url)
    cur = conn.cursor()
    mp_appid = os.environ.get("WECHAT_MP_APPID", "")

    def chunks(rows_of: Any, count: int, sql: str) -> None:
        for start in range(0, count, SEED_CHUNK):
            cur.executemany(sql, [rows_of(i) for i in range(start, min(count, start + SEED_CHUNK))])
            conn.commit()

    chunks(
        lambda i: (i + 1, f"9{i + 1:011d}", "", "active", 0, now),
        members,
        f"INSERT INTO member (id, card_no, name, status, subscribed, created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
    )
    chunks(
        lambda i: (i + 1, 0, 0, 0, 0, now),
        members,
        f"INSERT INTO wallet (member_id, principal_fen, bonus_fen, held_fen, frozen, created_at) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
    )
    chunks(
        lambda i: (i + 1, mp_appid, f"o-bench-{i + 1}", now),
        members,
        f"INSERT INTO member_openid (member_id, appid, openid, created_at) VALUES ({p}, {p}, {p}, {p})",
    )
    today = local_date(now)
    expired_at = [local_midnight_utc(today - timedelta(days=d)) for d in range(30)]  # 30 past midnights
    soon = local_midnight_utc(today + timedelta(days=10))
    earned = now - timedelta(days=800)

    def lot(i: int) -> tuple[Any, ...]:
        if i < lots:  # expired: spread over the members and the last 30 days
            return (i + 1, i % members + 1, POINTS_PER_LOT, POINTS_PER_LOT, earned, expired_at[i % 30], "bench")
        return (i + 1, i - lots + 1, POINTS_PER_LOT, POINTS_PER_LOT, earned, soon, "bench")  # due a reminder

    total = lots + members
    chunks(
        lot,
        total,
        f"INSERT INTO points_lot (id, member_id, amount, remaining, earned_at, expires_at, source) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
    )
    chunks(
        lambda i: (lot(i)[1], "award", POINTS_PER_LOT, POINTS_PER_LOT, i + 1, f"seed:{i + 1}", earned),
        total,
        f"INSERT INTO points_entry (member_id, kind, delta, balance_after, lot_id, idempotency_key, created_at) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
    )
    # The baseline's own copies of the same rows: plain tables, no triggers or foreign keys.
    cur.execute("CREATE TABLE bare_lot AS SELECT id, member_id, remaining, expires_at FROM points_lot")
    cur.execute("CREATE UNIQUE INDEX ix_bare_lot_id ON bare_lot (id)")
    cur.execute("CREATE INDEX ix_bare_lot_expires_at_id ON bare_lot (expires_at, id)")
    cur.execute("CREATE INDEX ix_bare_lot_member_id_expires_at ON bare_lot (member_id, expires_at)")
    id_type = "BIGINT AUTO_INCREMENT" if p == "%s" else "INTEGER"
    cur.execute(
        f"CREATE TABLE bare_entry (id {id_type} PRIMARY KEY, member_id INTEGER NOT NULL, kind VARCHAR(12) NOT NULL, "
        "delta BIGINT NOT NULL, balance_after BIGINT NOT NULL, lot_id BIGINT, idempotency_key VARCHAR(128) NOT NULL "
        "UNIQUE, created_at DATETIME NOT NULL)"
    )
    cur.execute(
        f"CREATE TABLE bare_reminder (id {id_type} PRIMARY KEY, member_id INTEGER NOT NULL, expiry_date DATE NOT NULL, "
        "offset_days INTEGER NOT NULL, points BIGINT NOT NULL, status VARCHAR(10) NOT NULL, client_msg_id VARCHAR(64) "
        "NOT NULL UNIQUE, created_at DATETIME NOT NULL, UNIQUE (member_id, expiry_date, offset_days))"
    )
    conn.commit()
    conn.close()


# ---------------------------------------------------------------------------------------------------
# The two sides (each in its own spawned process)


def job_side(url: str, redis_url: str, now: datetime, batch: int, total_lots: int) -> dict[str, Any]:
    from rq import Queue

    from mp_backend.extensions import jobs
    from mp_backend.loyalty import reminders
    from mp_backend.loyalty import service as loyalty

    app = make_app(url)
    with app.app_context():
        from redis import Redis

        jobs.redis = Redis.from_url(redis_url)
        jobs.queue = Queue(QUEUE, connection=jobs.redis)
        out: dict[str, Any] = {"rss_start": peak_mib()}
        started, expired = time.perf_counter(), 0
        checkpoint_batches = max(1, CHECKPOINT // batch)
        while True:
            done = loyalty.expire_due(now=now, batch_size=batch, max_batches=checkpoint_batches)
            expired += done
            if "rss_100k" not in out and expired >= min(CHECKPOINT, total_lots):
                out["rss_100k"], out["t_100k"] = peak_mib(), time.perf_counter() - started
            if done < checkpoint_batches * batch:
                break
        out["expired"], out["t_expire"], out["rss_expire"] = expired, time.perf_counter() - started, peak_mib()
        started = time.perf_counter()
        out["planned"] = reminders.plan(now=now, batch_size=batch)
        out["t_plan"] = time.perf_counter() - started
        out["queued"] = reminders.enqueue_all_due(now=now, batch_size=batch)
        out["t_remind"], out["rss_end"] = time.perf_counter() - started, peak_mib()
    return out


def bare_side(url: str, now: datetime, batch: int, total_lots: int) -> dict[str, Any]:
    from mp_backend.ledger.points import last_valid_day, local_date, local_midnight_utc

    conn, p = _connect(url)
    cur = conn.cursor()
    out: dict[str, Any] = {"rss_start": peak_mib()}
    started, expired, cursor = time.perf_counter(), 0, (datetime(1970, 1, 1), 0)
    while True:
        cur.execute(
            f"SELECT id, member_id, remaining, expires_at FROM bare_lot WHERE expires_at <= {p} "
            f"AND (expires_at > {p} OR (expires_at = {p} AND id > {p})) ORDER BY expires_at, id LIMIT {batch}",
            (now, cursor[0], cursor[0], cursor[1]),
        )
        rows = cur.fetchall()
        if not rows:
            break
        due = [r for r in rows if r[2] > 0]
        if due:
            marks = ", ".join([p] * len(due))
            cur.execute(
                f"UPDATE bare_lot SET remaining = 0 WHERE id IN ({marks}) AND remaining > 0", [r[0] for r in due]
            )
            cur.executemany(
                f"INSERT INTO bare_entry (member_id, kind, delta, balance_after, lot_id, idempotency_key, created_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                [(r[1], "expire", -r[2], 0, r[0], f"expire:{r[0]}", now) for r in due],
            )
        conn.commit()
        expired += len(due)
        last = rows[-1]
        cursor = (last[3] if isinstance(last[3], datetime) else datetime.fromisoformat(last[3]), last[0])
        if "rss_100k" not in out and expired >= min(CHECKPOINT, total_lots):
            out["rss_100k"], out["t_100k"] = peak_mib(), time.perf_counter() - started
    out["expired"], out["t_expire"], out["rss_expire"] = expired, time.perf_counter() - started, peak_mib()

    started, planned = time.perf_counter(), 0
    today = local_date(now)
    horizon = local_midnight_utc(today + timedelta(days=31))
    cur.execute("SELECT MAX(member_id) FROM bare_lot")
    top = cur.fetchone()[0] or 0
    conn.commit()
    for first in range(0, top, batch):
        cur.execute(
            f"SELECT member_id, expires_at, SUM(remaining) FROM bare_lot WHERE member_id > {p} AND member_id <= {p} "
            f"AND remaining > 0 AND expires_at > {p} AND expires_at <= {p} GROUP BY member_id, expires_at",
            (first, first + batch, now, horizon),
        )
        rows = []
        for member_id, expires_at, remaining in cur.fetchall():
            moment = expires_at if isinstance(expires_at, datetime) else datetime.fromisoformat(expires_at)
            day = last_valid_day(moment)
            rows.append((member_id, day, 15, int(remaining), "pending", f"bare-{member_id}-{day:%Y%m%d}-15", now))
        if rows:
            cur.executemany(
                f"INSERT INTO bare_reminder (member_id, expiry_date, offset_days, points, status, client_msg_id, "
                f"created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                rows,
            )
        conn.commit()
        planned += len(rows)
    out["planned"] = out["queued"] = planned
    out["t_remind"], out["rss_end"] = time.perf_counter() - started, peak_mib()
    conn.close()
    return out


def _run_side(name: str, args: tuple[Any, ...], results: Any) -> None:
    try:
        side = job_side if name == "job" else bare_side
        results.put((name, side(*args)))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails
        results.put((name, {"error": traceback.format_exc()}))


def in_process(name: str, args: tuple[Any, ...]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_run_side, args=(name, args, results), name=f"bench-expiry-{name}")
    process.start()
    _, out = results.get()
    process.join()
    if "error" in out:
        raise SystemExit(f"bench: the {name} side failed:\n{out['error']}")
    return out


# ---------------------------------------------------------------------------------------------------
# Checks and report


def verify(url: str, redis_url: str, members: int, lots: int, job: dict[str, Any], bare: dict[str, Any]) -> list[str]:
    from redis import Redis
    from sqlalchemy import func, select

    from mp_backend.extensions import db
    from mp_backend.ledger import points
    from mp_backend.ledger.check import check_ledger
    from mp_backend.loyalty.models import PointsReminder

    problems = []
    app = make_app(url)
    with app.app_context():
        entry_t, lot_t = points.entry_t, points.lot_t
        expires = db.session.scalar(select(func.count()).where(entry_t.c.kind == "expire"))
        distinct = db.session.scalar(
            select(func.count(func.distinct(entry_t.c.lot_id))).where(entry_t.c.kind == "expire")
        )
        left = db.session.scalar(select(func.count()).where(lot_t.c.id <= lots, lot_t.c.remaining > 0))
        if not (expires == distinct == lots == job["expired"]) or left:
            problems.append(f"expiry: {expires} expire entries on {distinct} lots for {lots} lots, {left} not expired")
        reminders = db.session.scalar(select(func.count()).select_from(PointsReminder))
        if not (reminders == members == job["planned"]):
            problems.append(f"reminders: {reminders} rows, {job['planned']} planned, for {members} members")
        problems += points.check()
        problems += [str(p) for p in check_ledger()]
        db.session.rollback()
    from rq import Queue

    queue = Queue(QUEUE, connection=Redis.from_url(redis_url))
    queued = [i for job in queue.get_jobs() for i in job.args[0]]
    if len(queued) != members or len(set(queued)) != members:
        problems.append(f"queue: {len(queued)} reminders ({len(set(queued))} distinct) queued for {members}")
    if bare["expired"] != lots or bare["planned"] != members:
        problems.append(f"bare: {bare['expired']} lots, {bare['planned']} reminders")
    return problems


def clear_queue(redis_url: str) -> None:
    from redis import Redis
    from rq import Queue

    Queue(QUEUE, connection=Redis.from_url(redis_url)).empty()


def line(label: str, out: dict[str, Any], lots: int) -> str:
    first = min(CHECKPOINT, lots)
    return (
        f"{label:<5} expiry {out['expired'] / out['t_expire']:>9,.0f} lots/s ({out['expired']:,} in "
        f"{out['t_expire']:.1f} s; first {first:,} at {first / out['t_100k']:,.0f}/s)  reminders "
        f"{out['planned'] / out['t_remind']:>8,.0f}/s ({out['planned']:,} in {out['t_remind']:.1f} s)  "
        f"peak memory {out['rss_start']:.0f} MiB at start, {out['rss_100k']:.0f} at {first:,} lots, "
        f"{out['rss_expire']:.0f} at {out['expired']:,}, {out['rss_end']:.0f} after the reminders"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.expiry", description=__doc__.split("\n")[0])
    parser.add_argument("--lots", type=int, default=1_000_000, help="expired lots to expire (default 1,000,000)")
    parser.add_argument("--members", type=int, default=100_000, help="members, one reminder each (default 100,000)")
    parser.add_argument("--batch", type=int, default=1000, help="lots / members per transaction (default 1000)")
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    parser.add_argument("--redis-url", help="default: $REDIS_URL, else redis://127.0.0.1:6379/0 (queue bench-expiry)")
    args = parser.parse_args(argv)
    if args.lots < 1 or args.members < 1 or args.batch < 1:
        parser.error("--lots, --members and --batch must be at least 1")
    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    os.environ["DATABASE_URL"] = url

    began = time.monotonic()
    prepare_database(url)
    clear_queue(redis_url)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    seed(url, args.members, args.lots, now)
    where = url.split("?")[0].rsplit("/", 1)[-1]
    print(
        f"points expiry on {url.split(':', 1)[0]} ({where}): {args.lots:,} expired lots and {args.members:,} members "
        f"due a reminder, {args.batch} per transaction, one worker process per side; "
        f"seeded in {time.monotonic() - began:.0f} s",
        flush=True,
    )
    job = in_process("job", (url, redis_url, now, args.batch, args.lots))
    print(line("job", job, args.lots), flush=True)
    bare = in_process("bare", (url, now, args.batch, args.lots))
    print(line("bare", bare, args.lots), flush=True)
    problems = verify(url, redis_url, args.members, args.lots, job, bare)
    print(
        f"check: {args.lots:,} lots expired once each, {args.members:,} reminders logged and queued; "
        f"{len(problems)} problems" + "".join(f"\n  {p}" for p in problems[:20])
    )
    clear_queue(redis_url)
    expiry_ratio = (job["expired"] / job["t_expire"]) / (bare["expired"] / bare["t_expire"])
    remind_ratio = (job["planned"] / job["t_remind"]) / (bare["planned"] / bare["t_remind"])
    print(f"expiry: job/bare {expiry_ratio:.2f}; reminders: job/bare {remind_ratio:.2f}")
    print(f"whole run {time.monotonic() - began:.0f} s")
    print(f"ratio {min(expiry_ratio, remind_ratio):.2f}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
