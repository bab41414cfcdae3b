"""Points expiry and expiry reminders at scale, next to bare batched SQL on the same rows.

    python -m bench.expiry [--lots 1000000] [--members 100000] [--batch 1000]
                           [--database-url URL] [--redis-url URL]

Setup (not timed; bare DB-API ``executemany`` in batches): ``--members`` members, each with a wallet,
an official-account openid and one lot that expires in 10 days (so each is due one 15-day reminder),
and ``--lots`` lots that expired during the last 30 days (10 points each, spread over the members and
the days, so each batch of the job touches as many members as it has lots), every lot with its
``award`` entry, as the app writes them. The same lots are copied into plain tables (``bare_lot``,
``bare_entry``, ``bare_reminder``: on MariaDB tables ``LIKE`` the app's, with the same rows, indexes,
CHECKs and foreign keys, no triggers) for the baseline.

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
from dataclasses import dataclass
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
    # The baseline's own copies of the same rows. On MariaDB/MySQL, tables LIKE the app's (the same
    # columns, indexes and CHECKs) with the same foreign keys, so that both sides pay for the same schema
    # (no triggers: those refuse UPDATE and DELETE only); on SQLite, plain tables.
    if p == "%s":
        cur.execute("CREATE TABLE bare_lot LIKE points_lot")
        cur.execute("INSERT INTO bare_lot SELECT * FROM points_lot")
        cur.execute("CREATE TABLE bare_entry LIKE points_entry")
        cur.execute("INSERT INTO bare_entry SELECT * FROM points_entry")  # the awards: the same size to insert into
        cur.execute(
            "ALTER TABLE bare_entry ADD FOREIGN KEY (member_id) REFERENCES member (id), "
            "ADD FOREIGN KEY (lot_id) REFERENCES bare_lot (id)"
        )
        cur.execute("CREATE TABLE bare_reminder LIKE points_reminder")
        cur.execute("ALTER TABLE bare_reminder ADD FOREIGN KEY (member_id) REFERENCES member (id)")
    else:
        cur.execute("CREATE TABLE bare_lot AS SELECT id, member_id, remaining, expires_at FROM points_lot")
        cur.execute("CREATE UNIQUE INDEX ix_bare_lot_id ON bare_lot (id)")
        cur.execute("CREATE INDEX ix_bare_lot_expires_at_id ON bare_lot (expires_at, id)")
        cur.execute("CREATE INDEX ix_bare_lot_member_id_expires_at ON bare_lot (member_id, expires_at)")
        cur.execute(
            "CREATE TABLE bare_entry (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, kind VARCHAR(12) NOT NULL, "
            "delta BIGINT NOT NULL, balance_after BIGINT NOT NULL, lot_id BIGINT, idempotency_key VARCHAR(128) "
            "NOT NULL UNIQUE, created_at DATETIME NOT NULL)"
        )
        cur.execute(
            "CREATE TABLE bare_reminder (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, "
            "kind VARCHAR(10) NOT NULL, expiry_date DATE NOT NULL, offset_days INTEGER NOT NULL, "
            "points BIGINT NOT NULL, status VARCHAR(10) NOT NULL, client_msg_id VARCHAR(64) NOT NULL UNIQUE, "
            "channel VARCHAR(4) NOT NULL, attempts INTEGER NOT NULL, detail VARCHAR(255) NOT NULL, "
            "created_at DATETIME NOT NULL, "
            "UNIQUE (member_id, kind, expiry_date, offset_days))"
        )
    conn.commit()
    conn.close()


# ---------------------------------------------------------------------------------------------------
# The two sides (each in its own spawned process)


class JobSide:
    """The daily job's own functions, in one long-lived app context."""

    def __init__(self, url: str, redis_url: str, now: datetime, batch: int) -> None:
        from redis import Redis
        from rq import Queue

        from mp_backend.extensions import jobs

        self.app = make_app(url)
        self.context = self.app.app_context()
        self.context.push()
        jobs.redis = Redis.from_url(redis_url)
        jobs.queue = Queue(QUEUE, connection=jobs.redis)
        self.now, self.batch = now, batch

    def expire(self, batches: int) -> int:
        from mp_backend.loyalty import service as loyalty

        return loyalty.expire_due(now=self.now, batch_size=self.batch, max_batches=batches)

    def remind(self) -> int:
        from mp_backend.loyalty import reminders

        planned = reminders.plan(now=self.now, batch_size=self.batch)
        queued = reminders.enqueue_all_due(now=self.now, batch_size=self.batch)
        assert planned == queued, (planned, queued)
        return planned


class BareSide:
    """The minimum the same work takes on a bare PyMySQL (sqlite3) connection."""

    def __init__(self, url: str, redis_url: str, now: datetime, batch: int) -> None:
        self.conn, self.p = _connect(url)
        self.cur = self.conn.cursor()
        self.now, self.batch = now, batch
        self.cursor: tuple[datetime, int] = (datetime(1970, 1, 1), 0)

    def expire(self, batches: int) -> int:
        cur, p, expired = self.cur, self.p, 0
        for _ in range(batches):
            cur.execute(
                f"SELECT id, member_id, remaining, expires_at FROM bare_lot WHERE expires_at <= {p} "
                f"AND expires_at >= {p} AND (expires_at > {p} OR id > {p}) ORDER BY expires_at, id LIMIT {self.batch}",
                (self.now, self.cursor[0], self.cursor[0], self.cursor[1]),
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
                    f"INSERT INTO bare_entry (member_id, kind, delta, balance_after, lot_id, idempotency_key, "
                    f"created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                    [(r[1], "expire", -r[2], 0, r[0], f"expire:{r[0]}", self.now) for r in due],
                )
            self.conn.commit()
            expired += len(due)
            last = rows[-1]
            self.cursor = (last[3] if isinstance(last[3], datetime) else datetime.fromisoformat(last[3]), last[0])
            if len(rows) < self.batch:
                break
        return expired

    def remind(self) -> int:
        from mp_backend.ledger.points import last_valid_day, local_date, local_midnight_utc

        cur, p, planned = self.cur, self.p, 0
        horizon = local_midnight_utc(local_date(self.now) + timedelta(days=31))
        cur.execute("SELECT MAX(member_id) FROM bare_lot")
        top = cur.fetchone()[0] or 0
        self.conn.commit()
        for first in range(0, top, self.batch):
            cur.execute(
                f"SELECT member_id, expires_at, SUM(remaining) FROM bare_lot WHERE member_id > {p} "
                f"AND member_id <= {p} AND remaining > 0 AND expires_at > {p} AND expires_at <= {p} "
                f"GROUP BY member_id, expires_at",
                (first, first + self.batch, self.now, horizon),
            )
            rows = []
            for member_id, expires_at, remaining in cur.fetchall():
                moment = expires_at if isinstance(expires_at, datetime) else datetime.fromisoformat(expires_at)
                day = last_valid_day(moment)
                key = f"bare-{member_id}-{day:%Y%m%d}-15"
                rows.append((member_id, "expiry", day, 15, int(remaining), "pending", key, "mp", 0, "", self.now))
            if rows:
                cur.executemany(
                    f"INSERT INTO bare_reminder (member_id, kind, expiry_date, offset_days, points, status, "
                    f"client_msg_id, channel, attempts, detail, created_at) VALUES ({', '.join([p] * 11)})",
                    rows,
                )
            self.conn.commit()
            planned += len(rows)
        return planned


def side_process(name: str, args: tuple[Any, ...], commands: Any, results: Any) -> None:
    """One side in its own process: runs each command it is sent, reports count, seconds and peak memory."""
    try:
        side = (JobSide if name == "job" else BareSide)(*args)
        results.put((name, "ready", 0, 0.0, peak_mib()))
        while True:
            command = commands.get()
            if command is None:
                return
            started = time.perf_counter()
            done = side.expire(command[1]) if command[0] == "expire" else side.remind()
            results.put((name, command[0], done, time.perf_counter() - started, peak_mib()))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails
        results.put((name, "error", 0, 0.0, traceback.format_exc()))


@dataclass
class Tally:
    rss_start: float = 0.0
    expired: int = 0
    t_expire: float = 0.0
    rss_100k: float = 0.0
    at_100k: int = 0
    t_100k: float = 0.0
    rss_expire: float = 0.0
    planned: int = 0
    t_remind: float = 0.0
    rss_end: float = 0.0


def run_sides(url: str, redis_url: str, now: datetime, batch: int, lots: int) -> dict[str, Tally]:
    """Both sides alive at once; the expiry goes in slices of CHECKPOINT lots, the sides taking turns
    (job, bare, bare, job, ...) so that a machine shared with other work drifts on both alike."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    commands = {name: ctx.Queue() for name in ("job", "bare")}
    args = (url, redis_url, now, batch)
    procs = [ctx.Process(target=side_process, args=(n, args, commands[n], results), name=f"bench-expiry-{n}")
             for n in ("job", "bare")]  # fmt: skip
    for proc in procs:
        proc.start()
    tallies = {"job": Tally(), "bare": Tally()}

    def ask(name: str, *command: Any) -> tuple[int, float, float]:
        commands[name].put(command)
        who, what, done, seconds, rss = results.get()
        if what == "error":
            raise SystemExit(f"bench: the {who} side failed:\n{rss}")
        return done, seconds, rss

    try:
        for _ in ("job", "bare"):
            who, what, _, _, rss = results.get()
            if what == "error":
                raise SystemExit(f"bench: the {who} side failed:\n{rss}")
            tallies[who].rss_start = rss
        slice_batches = max(1, CHECKPOINT // batch)
        turn = 0
        while any(t.expired < lots for t in tallies.values()):
            order = ("job", "bare") if turn % 2 == 0 else ("bare", "job")
            for name in order:
                tally = tallies[name]
                if tally.expired >= lots:
                    continue
                done, seconds, rss = ask(name, "expire", slice_batches)
                tally.expired, tally.t_expire, tally.rss_expire = tally.expired + done, tally.t_expire + seconds, rss
                if not tally.at_100k:
                    tally.rss_100k, tally.at_100k, tally.t_100k = rss, tally.expired, tally.t_expire
                if done == 0:
                    raise SystemExit(f"bench: the {name} side expired nothing more at {tally.expired} lots")
            turn += 1
        for name in ("job", "bare"):
            done, seconds, rss = ask(name, "remind")
            tallies[name].planned, tallies[name].t_remind, tallies[name].rss_end = done, seconds, rss
    finally:
        for name in ("job", "bare"):
            commands[name].put(None)
        for proc in procs:
            proc.join(timeout=60)
    return tallies


# ---------------------------------------------------------------------------------------------------
# Checks and report


def verify(url: str, redis_url: str, members: int, lots: int, job: Tally, bare: Tally) -> list[str]:
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
        if not (expires == distinct == lots == job.expired) or left:
            problems.append(f"expiry: {expires} expire entries on {distinct} lots for {lots} lots, {left} not expired")
        reminders = db.session.scalar(select(func.count()).select_from(PointsReminder))
        if not (reminders == members == job.planned):
            problems.append(f"reminders: {reminders} rows, {job.planned} planned, for {members} members")
        problems += points.check()
        problems += [str(p) for p in check_ledger()]
        db.session.rollback()
    from rq import Queue

    queue = Queue(QUEUE, connection=Redis.from_url(redis_url))
    queued = [i for job in queue.get_jobs() for i in job.args[0]]
    if len(queued) != members or len(set(queued)) != members:
        problems.append(f"queue: {len(queued)} reminders ({len(set(queued))} distinct) queued for {members}")
    if bare.expired != lots or bare.planned != members:
        problems.append(f"bare: {bare.expired} lots, {bare.planned} reminders")
    return problems


def clear_queue(redis_url: str) -> None:
    from redis import Redis
    from rq import Queue

    Queue(QUEUE, connection=Redis.from_url(redis_url)).empty()


def line(label: str, out: Tally) -> str:
    return (
        f"{label:<5} expiry {out.expired / out.t_expire:>9,.0f} lots/s ({out.expired:,} in {out.t_expire:.1f} s; "
        f"first {out.at_100k:,} at {out.at_100k / out.t_100k:,.0f}/s)  reminders {out.planned / out.t_remind:>8,.0f}/s "
        f"({out.planned:,} in {out.t_remind:.1f} s)  peak memory {out.rss_start:.0f} MiB at start, "
        f"{out.rss_100k:.0f} at {out.at_100k:,} lots, {out.rss_expire:.0f} at {out.expired:,}, "
        f"{out.rss_end:.0f} after the reminders"
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
    tallies = run_sides(url, redis_url, now, args.batch, args.lots)
    job, bare = tallies["job"], tallies["bare"]
    print(line("job", job), flush=True)
    print(line("bare", bare), flush=True)
    problems = verify(url, redis_url, args.members, args.lots, job, bare)
    print(
        f"check: {args.lots:,} lots expired once each, {args.members:,} reminders logged and queued; "
        f"{len(problems)} problems" + "".join(f"\n  {p}" for p in problems[:20])
    )
    clear_queue(redis_url)
    expiry_ratio = (job.expired / job.t_expire) / (bare.expired / bare.t_expire)
    remind_ratio = (job.planned / job.t_remind) / (bare.planned / bare.t_remind)
    print(f"expiry: job/bare {expiry_ratio:.2f}; reminders: job/bare {remind_ratio:.2f}")
    print(f"whole run {time.monotonic() - began:.0f} s")
    print(f"ratio {min(expiry_ratio, remind_ratio):.2f}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
