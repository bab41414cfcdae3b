"""Ledger debits per second: the service next to the bare-driver baseline of shared/PERF.md.

    python -m bench.ledger [--workers 4] [--seconds 4 | --ops 20000] [--profile]

Phases, each with N worker *processes* (spawned, a fresh app and connection each; threads would
measure the GIL, not the database):

1. ``service``: ``mp_backend.ledger.service.debit`` in a loop, each process on its own wallet;
2. ``raw``: the minimal debit of PERF.md on a bare driver connection (PyMySQL, or sqlite3 for a SQLite
   URL), each process on its own wallet: conditional ``UPDATE wallet``, ``SELECT`` of the new balance,
   ``INSERT`` of one ledger row with a unique idempotency key, ``COMMIT``;
3. ``service, one wallet``: all processes on one wallet (the row lock serialises them);
4. ``raw, one wallet``: the same for the baseline.

Then it checks that nothing was lost (every wallet's balance is its funding minus the debits the
workers counted, and ``check_ledger`` finds no problem) and prints, last, ``ratio <service/raw>`` for
phases 1 and 2. ``--profile`` instead runs the service in this process under cProfile.

The database (``DATABASE_URL``, default the local MariaDB ``mp_bench``) is emptied and rebuilt by the
app's migrations first: never point this at data you want to keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench?charset=utf8mb4"
AMOUNT_FEN = 100
MAX_CREDIT_FEN = 100_000_000  # the service's MAX_AMOUNT_FEN: larger fundings are several credits
WARM_UP = 30  # debits per worker before the clock starts (connection, statement caches)
RATE_CEILING = 10_000  # debits/s per wallet assumed when funding a --seconds run
REQUEST_HASH = "0" * 64


# ---------------------------------------------------------------------------------------------------
# Setup and checks (main process)


def bench_config(url: str) -> Any:
    from mp_backend.config import Config, engine_options

    config = Config()
    config.SQLALCHEMY_DATABASE_URI = url
    # BENCH_ENGINE_OPTIONS (JSON, set by --engine-options) tries a change of the pool or engine settings
    config.SQLALCHEMY_ENGINE_OPTIONS = {**engine_options(url), **json.loads(os.environ.get("BENCH_ENGINE_OPTIONS", "{}"))}
    config.REDIS_URL = None
    return config


def make_app(url: str) -> Any:
    from mp_backend import create_app

    # Before create_app, whose basicConfig(INFO) then does nothing: keep stdout for the figures.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mp_backend.wechat").setLevel(logging.ERROR)  # the sandbox banner, once per process
    return create_app(bench_config(url))


def prepare_database(url: str) -> None:
    """Create the database if need be, drop every table and build the schema by the migrations."""
    from flask_migrate import upgrade
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "mysql":
        import pymysql

        server = pymysql.connect(**_pymysql_args(url, with_database=False))
        with server.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` CHARACTER SET utf8mb4")
        server.close()
    elif parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise SystemExit("bench: an in-memory SQLite database cannot be shared by processes; use sqlite:///path")
        os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)

    engine = create_engine(url)
    with engine.begin() as conn:
        names = inspect(conn).get_table_names()
        mysql = conn.dialect.name == "mysql"
        if mysql:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        else:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`" if mysql else f'DROP TABLE IF EXISTS "{name}"')
        if mysql:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
    engine.dispose()

    app = make_app(url)
    with app.app_context():
        upgrade()
    logging.getLogger("alembic").setLevel(logging.WARNING)


def fund_wallets(app: Any, count: int, funding_fen: int) -> list[int]:
    from mp_backend.ledger import service as ledger
    from mp_backend.members import service as members

    wallets = []
    with app.app_context():
        for n in range(count):
            member_id = members.create_member(name=f"bench-{n}").id
            left, k = funding_fen, 0
            while left > 0:
                chunk = min(left, MAX_CREDIT_FEN)
                ledger.credit(member_id, chunk, key=f"fund-{member_id}-{k}", operator="bench")
                left, k = left - chunk, k + 1
            wallets.append(member_id)
    return wallets


def verify(app: Any, expected_debits: dict[int, int], funding_fen: int) -> list[str]:
    """Every wallet holds its funding minus the debits counted by the workers; the ledger checks out."""
    from sqlalchemy import func, select

    from mp_backend.extensions import db
    from mp_backend.ledger.check import check_ledger
    from mp_backend.ledger.models import LedgerEntry
    from mp_backend.ledger.service import get_balance

    problems = []
    with app.app_context():
        e = LedgerEntry.__table__
        rows = dict(
            db.session.execute(
                select(e.c.member_id, func.count()).where(e.c.kind == "debit").group_by(e.c.member_id)
            ).all()
        )
        for member_id, debits in expected_debits.items():
            balance = get_balance(member_id).available_fen
            if balance != funding_fen - AMOUNT_FEN * debits:
                problems.append(f"wallet {member_id}: balance {balance}, expected {funding_fen - AMOUNT_FEN * debits}")
            if rows.get(member_id, 0) != debits:
                problems.append(f"wallet {member_id}: {rows.get(member_id, 0)} debit rows, workers counted {debits}")
        db.session.rollback()
        problems += [str(p) for p in check_ledger()]
    return problems


# ---------------------------------------------------------------------------------------------------
# The two ways to debit (worker processes)


class ServiceDebits:
    """``ledger.debit`` in a long-lived app context, as a worker process would call it."""

    def __init__(self, url: str, member_id: int, tag: str) -> None:
        from mp_backend.errors import AppError, InsufficientBalance
        from mp_backend.ledger import service as ledger

        self.app = make_app(url)
        self.context = self.app.app_context()
        self.context.push()
        self.member_id, self.tag = member_id, tag
        self.ledger, self.app_error, self.insufficient = ledger, AppError, InsufficientBalance
        self.refusals: dict[str, int] = {}
        self.retries = _RetryCounter()
        logging.getLogger("mp_backend.transaction").addFilter(self.retries)

    def debit(self, n: int) -> bool:
        try:
            self.ledger.debit(self.member_id, AMOUNT_FEN, key=f"{self.tag}-{n}", operator="bench")
            return True
        except self.app_error as error:  # busy (retries exhausted) or a real refusal: counted, not lost
            self.refusals[error.code] = self.refusals.get(error.code, 0) + 1
            return False

    def close(self) -> None:
        from mp_backend.extensions import db

        db.session.remove()
        self.context.pop()


class _RetryCounter(logging.Filter):
    """Counts (and silences) the ``transactional`` retry messages: one per deadlock or lock timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("retrying"):
            self.count += 1
            return False
        return True


class RawDebits:
    """The minimal debit of PERF.md on a bare DB-API connection: 3 statements and a COMMIT."""

    def __init__(self, url: str, member_id: int, tag: str) -> None:
        from sqlalchemy.engine import make_url  # URL parsing only

        self.member_id, self.tag = member_id, tag
        self.refusals: dict[str, int] = {}
        self.retries = _RetryCounter()
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn = sqlite3.connect(parsed.database, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=30000")
            mark = "?"
        else:
            import pymysql

            self.conn = pymysql.connect(**_pymysql_args(url), autocommit=False)
            with self.conn.cursor() as cur:  # the app's isolation level (mp_backend.config.engine_options)
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self.conn.commit()
            mark = "%s"
        self.cur = self.conn.cursor()
        self.update = (
            f"UPDATE wallet SET principal_fen = principal_fen - {mark} "
            f"WHERE member_id = {mark} AND principal_fen >= {mark}"
        )
        self.select = f"SELECT principal_fen, bonus_fen, held_fen FROM wallet WHERE member_id = {mark}"
        columns = (
            "member_id, kind, amount_fen, principal_delta_fen, bonus_delta_fen, held_delta_fen, "
            "principal_after_fen, bonus_after_fen, held_after_fen, operator, idempotency_key, request_hash, "
            "note, created_at"
        )
        self.insert = f"INSERT INTO ledger_entry ({columns}) VALUES ({', '.join([mark] * 14)})"

    def debit(self, n: int) -> bool:
        cur = self.cur
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(self.update, (AMOUNT_FEN, self.member_id, AMOUNT_FEN))
        if cur.rowcount != 1:
            self._rollback()
            self.refusals["insufficient_balance"] = self.refusals.get("insufficient_balance", 0) + 1
            return False
        cur.execute(self.select, (self.member_id,))
        principal, bonus, held = cur.fetchone()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        cur.execute(
            self.insert,
            (self.member_id, "debit", AMOUNT_FEN, -AMOUNT_FEN, 0, 0, principal, bonus, held, "bench",
             f"{self.tag}-{n}", REQUEST_HASH, "", now),
        )  # fmt: skip
        if self.sqlite:
            cur.execute("COMMIT")
        else:
            self.conn.commit()
        return True

    def _rollback(self) -> None:
        if self.sqlite:
            self.cur.execute("ROLLBACK")
        else:
            self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


def _pymysql_args(url: str, with_database: bool = True) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    args: dict[str, Any] = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 3306,
        "user": parsed.username or "root",
        "password": parsed.password or "",
        "charset": parsed.query.get("charset", "utf8mb4"),
    }
    if with_database:
        args["database"] = parsed.database
    return args


@dataclass
class WorkerResult:
    member_id: int
    debits: int  # every successful debit, warm-up included (what the wallet lost)
    timed_debits: int  # the successful debits while the clock ran
    refusals: dict[str, int]
    retries: int
    started: float
    ended: float
    cpu_s: float


def worker(way: str, url: str, member_id: int, tag: str, seconds: float, ops: int | None,
           barrier: Any, results: Any) -> None:  # fmt: skip
    """One process of one phase: warm up, wait for the others, debit until the time or count is up."""
    try:
        debits = (ServiceDebits if way == "service" else RawDebits)(url, member_id, tag)
        warm = sum(debits.debit(-1 - n) for n in range(WARM_UP))
        debits.refusals.clear()
        debits.retries.count = 0
        barrier.wait()
        started, cpu0 = time.monotonic(), time.process_time()
        done = 0
        if ops is not None:
            for n in range(ops):
                done += debits.debit(n)
        else:
            n, deadline = 0, started + seconds
            while time.monotonic() < deadline:
                done += debits.debit(n)
                n += 1
        ended, cpu1 = time.monotonic(), time.process_time()
        debits.close()
        results.put(("ok", WorkerResult(member_id, warm + done, done, debits.refusals, debits.retries.count,
                                        started, ended, cpu1 - cpu0)))  # fmt: skip
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


@dataclass
class PhaseResult:
    label: str
    workers: list[WorkerResult]

    @property
    def timed_debits(self) -> int:
        return sum(w.timed_debits for w in self.workers)

    @property
    def elapsed(self) -> float:
        return max(w.ended for w in self.workers) - min(w.started for w in self.workers)

    @property
    def rate(self) -> float:
        return self.timed_debits / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * sum(w.cpu_s for w in self.workers) / max(self.timed_debits, 1)

    @property
    def refusals(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for w in self.workers:
            for code, count in w.refusals.items():
                total[code] = total.get(code, 0) + count
        return total

    @property
    def retries(self) -> int:
        return sum(w.retries for w in self.workers)

    def line(self) -> str:
        extra = f", {self.retries} deadlock retries" if self.retries else ""
        if self.refusals:
            extra += ", refused " + ", ".join(f"{code} x{count}" for code, count in sorted(self.refusals.items()))
        return (f"{self.label:<34} {self.rate:8.0f} debits/s  {self.cpu_ms:5.2f} ms CPU/debit  "
                f"({self.timed_debits} debits in {self.elapsed:.1f} s{extra})")  # fmt: skip


def run_phase(label: str, way: str, url: str, wallets: list[int], seconds: float, ops: int | None) -> PhaseResult:
    """One worker process per entry of ``wallets`` (a wallet listed N times gets N processes)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(wallets), timeout=120)
    results = ctx.SimpleQueue()
    per_worker = None if ops is None else math.ceil(ops / len(wallets))
    tag = label.split()[0] + "-" + "-".join(map(str, sorted(set(wallets))))
    processes = [
        ctx.Process(target=worker, args=(way, url, member_id, f"{tag}-{i}", seconds, per_worker, barrier, results))
        for i, member_id in enumerate(wallets)
    ]
    for p in processes:
        p.start()
    outcomes = [results.get() for _ in processes]
    for p in processes:
        p.join()
    errors = [detail for status, detail in outcomes if status == "error"]
    if errors:
        raise SystemExit(f"bench: phase {label!r} failed:\n" + "\n".join(errors))
    return PhaseResult(label, [result for _, result in outcomes])


# ---------------------------------------------------------------------------------------------------
# Profile: the service in this process, under cProfile


def profile(url: str, member_id: int, ops: int) -> None:
    import cProfile
    import pstats

    service = ServiceDebits(url, member_id, "profile")
    raw = RawDebits(url, member_id, "profile-raw")
    for n in range(WARM_UP):
        service.debit(-1 - n)
        raw.debit(-1 - n)
    for name, debits in (("raw", raw), ("service", service)):
        cpu0, t0 = time.process_time(), time.monotonic()
        for n in range(ops):
            debits.debit(n)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        print(f"{name:<8} 1 connection: {ops / wall:7.0f} debits/s  {1000 * cpu / ops:5.2f} ms CPU/debit")
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(ops):
        service.debit(ops + n)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    print(f"\n--- service, {ops} debits, by own time ---")
    stats.sort_stats("tottime").print_stats(25)
    print(f"--- service, {ops} debits, cumulative ---")
    stats.sort_stats("cumulative").print_stats(40)
    service.close()
    raw.close()


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes per phase (default 4)")
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--seconds", type=float, default=4.0, help="length of each phase (default 4)")
    how_long.add_argument("--ops", type=int, help="debits per phase, split across the workers, instead of --seconds")
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    parser.add_argument("--profile", action="store_true", help="profile the service in one process instead")
    parser.add_argument("--engine-options", help='JSON merged into the engine options, e.g. \'{"pool_pre_ping": false}\'')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    os.environ["DATABASE_URL"] = url
    if args.engine_options:
        json.loads(args.engine_options)  # fail here, not in every worker
        os.environ["BENCH_ENGINE_OPTIONS"] = args.engine_options
    n = args.workers
    ops = args.ops
    if args.profile:
        ops = ops or 3000
    per_wallet = (ops if ops is not None else RATE_CEILING * args.seconds) + n * WARM_UP
    funding = AMOUNT_FEN * math.ceil(per_wallet * 2)

    started = time.monotonic()
    prepare_database(url)
    app = make_app(url)
    if args.profile:
        (wallet,) = fund_wallets(app, 1, AMOUNT_FEN * (3 * ops + 3 * WARM_UP + 10))
        profile(url, wallet, ops)
        return 0

    wallets = fund_wallets(app, 2 * n + 2, funding)
    own_service, own_raw, (hot_service, hot_raw) = wallets[:n], wallets[n : 2 * n], wallets[2 * n :]
    dialect = url.split(":", 1)[0]
    print(f"ledger debits on {dialect} ({url.rsplit('/', 1)[-1].split('?')[0]}), {n} worker processes, "
          f"{'%d debits' % ops if ops else '%g s' % args.seconds} per phase, {AMOUNT_FEN} fen each")  # fmt: skip
    phases = [
        run_phase(f"service  {n} processes, {n} wallets", "service", url, own_service, args.seconds, ops),
        run_phase(f"raw      {n} processes, {n} wallets", "raw", url, own_raw, args.seconds, ops),
        run_phase(f"service  {n} processes, 1 wallet", "service", url, [hot_service] * n, args.seconds, ops),
        run_phase(f"raw      {n} processes, 1 wallet", "raw", url, [hot_raw] * n, args.seconds, ops),
    ]
    for phase in phases:
        print(phase.line())

    expected: dict[int, int] = dict.fromkeys(wallets, 0)
    for phase in phases:
        for w in phase.workers:
            expected[w.member_id] += w.debits
    problems = verify(app, expected, funding)
    hot = expected[hot_service]
    print(f"check: one-wallet run {hot} service debits, balance {funding - AMOUNT_FEN * hot} as expected"
          if not any(f"wallet {hot_service}:" in p for p in problems) else "check: one-wallet run LOST debits")  # fmt: skip
    print(f"check: {len(problems)} problems in {len(wallets)} wallets and the ledger"
          + ("".join(f"\n  {p}" for p in problems[:20])))  # fmt: skip
    print(f"one wallet: ratio {phases[2].rate / phases[3].rate:.2f} (service/raw)")
    print(f"whole run {time.monotonic() - started:.0f} s")
    print(f"ratio {phases[0].rate / phases[1].rate:.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
