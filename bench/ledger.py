"""Ledger debits per second: the service next to the bare-driver baseline of shared/PERF.md.

    python -m bench.ledger [--workers 4] [--seconds 5 | --ops 20000] [--rounds 5]
                           [--database-url URL] [--engine-options JSON] [--profile]

N worker *processes* (spawned, each with a fresh app and its own connections; threads would measure
the GIL, not the database) run four phases:

1. ``service, own wallets``: ``mp_backend.ledger.service.debit``, each process on its own wallet;
2. ``raw, own wallets``: the minimal debit of PERF.md on a bare driver connection (PyMySQL, or sqlite3
   for a SQLite URL): conditional ``UPDATE wallet``, ``SELECT`` of the new balance, ``INSERT`` of one
   ledger row with a unique idempotency key, ``COMMIT``;
3. ``service, one wallet``: all processes on one wallet (its row lock serialises them);
4. ``raw, one wallet``: the same for the baseline.

The phases take turns in short slices (``--rounds``) so that a drift of the machine hits them alike.
Afterwards it checks that nothing was lost (each wallet's balance is its funding minus the debits the
workers counted, the ledger has exactly that many debit rows, and ``check_ledger`` finds no problem),
and prints, last, ``ratio <service/raw>`` of phases 1 and 2. ``--profile`` instead times both ways on
one connection in this process and profiles the service with cProfile.

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
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench?charset=utf8mb4"
AMOUNT_FEN = 100
MAX_CREDIT_FEN = 100_000_000  # the service's MAX_AMOUNT_FEN: larger fundings are several credits
WARM_UP = 30  # debits per worker before the clock starts (connection, statement caches)
RATE_CEILING = 10_000  # debits/s per wallet assumed when funding a --seconds run
REQUEST_HASH = "0" * 64
BENCH_SECRET_KEY = secrets.token_urlsafe(32)  # per process: no benchmark verifies a token


# ---------------------------------------------------------------------------------------------------
# Setup and checks (main process)


def bench_config(url: str) -> Any:
    from mp_backend.config import Config, engine_options

    config = Config()
    config.SQLALCHEMY_DATABASE_URI = url
    # BENCH_ENGINE_OPTIONS (JSON, set by --engine-options) tries a change of the pool or engine settings
    tried = json.loads(os.environ.get("BENCH_ENGINE_OPTIONS") or "{}")
    config.SQLALCHEMY_ENGINE_OPTIONS = {**engine_options(url), **tried}
    config.REDIS_URL = None
    # A benchmark runs with its own database and no sandbox: the app refuses the built-in dev key there.
    config.SECRET_KEY = os.environ.get("SECRET_KEY") or BENCH_SECRET_KEY
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
# The two ways to debit (in the worker processes)


class ServiceDebits:
    """``ledger.debit`` in a long-lived app context, as a worker process (RQ, gunicorn) would call it."""

    def __init__(self, url: str) -> None:
        from mp_backend.errors import AppError
        from mp_backend.ledger import service as ledger

        self.app = make_app(url)
        self.context = self.app.app_context()
        self.context.push()
        self.ledger, self.app_error = ledger, AppError
        self.refusals: dict[str, int] = {}
        self.retries = _RetryCounter()
        logging.getLogger("mp_backend.transaction").addFilter(self.retries)

    def debit(self, member_id: int, key: str) -> bool:
        try:
            self.ledger.debit(member_id, AMOUNT_FEN, key=key, operator="bench")
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

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url  # URL parsing only

        self.refusals: dict[str, int] = {}
        self.retries = _RetryCounter()  # nothing retries here: a deadlock would be an error
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn: Any = sqlite3.connect(parsed.database, timeout=30, isolation_level=None)
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

    def debit(self, member_id: int, key: str) -> bool:
        cur = self.cur
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(self.update, (AMOUNT_FEN, member_id, AMOUNT_FEN))
        if cur.rowcount != 1:
            cur.execute("ROLLBACK") if self.sqlite else self.conn.rollback()
            self.refusals["insufficient_balance"] = self.refusals.get("insufficient_balance", 0) + 1
            return False
        cur.execute(self.select, (member_id,))
        principal, bonus, held = cur.fetchone()
        now = datetime.now(UTC).replace(tzinfo=None)
        cur.execute(
            self.insert,
            (member_id, "debit", AMOUNT_FEN, -AMOUNT_FEN, 0, 0, principal, bonus, held, "bench", key,
             REQUEST_HASH, "", now),
        )  # fmt: skip
        cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        return True

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


# ---------------------------------------------------------------------------------------------------
# Phases. The workers live through the whole run and take the phases in turns, in short slices
# (service, raw, service hot, raw hot, service, ...): a machine shared with other work drifts, and the
# ratio should compare like with like.


@dataclass(frozen=True)
class Phase:
    label: str
    way: str  # "service" | "raw"
    hot: bool  # all workers on one wallet, or each on its own


PHASES = (
    Phase("service, own wallets", "service", False),
    Phase("raw, own wallets", "raw", False),
    Phase("service, one wallet", "service", True),
    Phase("raw, one wallet", "raw", True),
)


@dataclass
class Slice:
    phase: int
    debits: int
    refusals: dict[str, int]
    retries: int
    started: float
    ended: float
    cpu_s: float


def worker(index: int, url: str, wallets: dict[str, int], slices: list[tuple[int, float | None, int | None]],
           barrier: Any, results: Any) -> None:  # fmt: skip
    """One process: warm up both ways, then run each slice (phase, seconds or debit count) in step."""
    try:
        runners = {"service": ServiceDebits(url), "raw": RawDebits(url)}
        lost: dict[int, int] = {}  # member id -> successful debits, warm-up included
        serial = 0

        def debit(way: str, member_id: int) -> bool:
            nonlocal serial
            serial += 1
            ok = runners[way].debit(member_id, f"{way}-{index}-{serial}")
            if ok:
                lost[member_id] = lost.get(member_id, 0) + 1
            return ok

        for way, runner in runners.items():
            for _ in range(WARM_UP):
                debit(way, wallets[f"{way}-own"])
            runner.refusals.clear()
            runner.retries.count = 0
        done: list[Slice] = []
        for phase_no, seconds, ops in slices:
            phase = PHASES[phase_no]
            runner, member_id = runners[phase.way], wallets[f"{phase.way}-{'hot' if phase.hot else 'own'}"]
            barrier.wait()
            started, cpu0 = time.monotonic(), time.process_time()
            n = 0
            if ops is not None:
                n = sum(debit(phase.way, member_id) for _ in range(ops))
            else:
                deadline = started + (seconds or 0)
                while time.monotonic() < deadline:
                    n += debit(phase.way, member_id)
            ended, cpu1 = time.monotonic(), time.process_time()
            done.append(Slice(phase_no, n, dict(runner.refusals), runner.retries.count, started, ended, cpu1 - cpu0))
            runner.refusals.clear()
            runner.retries.count = 0
        for runner in runners.values():
            runner.close()
        results.put(("ok", done, lost))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc(), {}))


@dataclass
class PhaseResult:
    phase: Phase
    debits: int = 0
    elapsed: float = 0.0
    cpu_s: float = 0.0
    retries: int = 0
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.debits / self.elapsed if self.elapsed else 0.0

    def line(self, workers: int) -> str:
        extra = f", {self.retries} deadlock retries" if self.retries else ""
        if self.refusals:
            extra += ", refused " + ", ".join(f"{code} x{count}" for code, count in sorted(self.refusals.items()))
        wallets = "1 wallet" if self.phase.hot else f"{workers} wallets"
        cpu = 1000 * self.cpu_s / max(self.debits, 1)
        return (f"{self.phase.way:<8} {workers} processes, {wallets:<10} {self.rate:7.0f} debits/s  "
                f"{cpu:5.2f} ms CPU/debit  ({self.debits} debits in {self.elapsed:.1f} s{extra})")  # fmt: skip


def run(url: str, workers: int, own: dict[str, list[int]], hot: dict[str, int], seconds: float,
        ops: int | None, rounds: int) -> tuple[list[PhaseResult], dict[int, int]]:  # fmt: skip
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers, timeout=180)
    results = ctx.SimpleQueue()
    per_slice_ops = None if ops is None else max(1, math.ceil(ops / workers / rounds))
    slices = [(p, seconds / rounds, per_slice_ops) for _ in range(rounds) for p in range(len(PHASES))]
    processes = []
    for i in range(workers):
        wallets = {f"{way}-own": own[way][i] for way in own} | {f"{way}-hot": hot[way] for way in hot}
        processes.append(ctx.Process(target=worker, args=(i, url, wallets, slices, barrier, results)))
    for p in processes:
        p.start()
    outcomes = [results.get() for _ in processes]
    for p in processes:
        p.join()
    errors = [detail for status, detail, _ in outcomes if status == "error"]
    if errors:
        raise SystemExit("bench: a worker failed:\n" + "\n".join(errors))

    phases = [PhaseResult(phase) for phase in PHASES]
    lost: dict[int, int] = {}
    for _, _, worker_lost in outcomes:
        for member_id, count in worker_lost.items():
            lost[member_id] = lost.get(member_id, 0) + count
    for slice_no in range(len(slices)):
        parts: list[Slice] = [done[slice_no] for _, done, _ in outcomes]
        result = phases[parts[0].phase]
        result.debits += sum(s.debits for s in parts)
        result.elapsed += max(s.ended for s in parts) - min(s.started for s in parts)
        result.cpu_s += sum(s.cpu_s for s in parts)
        result.retries += sum(s.retries for s in parts)
        for s in parts:
            for code, count in s.refusals.items():
                result.refusals[code] = result.refusals.get(code, 0) + count
    return phases, lost


# ---------------------------------------------------------------------------------------------------
# Profile: the service in this process, under cProfile


def profile(url: str, member_id: int, ops: int) -> None:
    import cProfile
    import pstats

    service, raw = ServiceDebits(url), RawDebits(url)
    for n in range(WARM_UP):
        service.debit(member_id, f"warm-s-{n}")
        raw.debit(member_id, f"warm-r-{n}")
    for name, debits in (("raw", raw), ("service", service)):
        cpu0, t0 = time.process_time(), time.monotonic()
        for n in range(ops):
            debits.debit(member_id, f"{name}-{n}")
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        print(f"{name:<8} 1 connection: {ops / wall:7.0f} debits/s  {1000 * cpu / ops:5.2f} ms CPU/debit")
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(ops):
        service.debit(member_id, f"profiled-{n}")
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    print(f"\n--- service, {ops} debits, by own time ---")
    stats.sort_stats("tottime").print_stats(25)
    print(f"--- service, {ops} debits, cumulative ---")
    stats.sort_stats("cumulative").print_stats(40)
    print("--- who talks to the server ---")
    stats.print_callers(r"_execute_command|\(ping\)|\(commit\)|\(rollback\)")
    service.close()
    raw.close()


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--seconds", type=float, default=5.0, help="length of each of the 4 phases (default 5)")
    how_long.add_argument("--ops", type=int, help="debits per phase, split across the workers, instead of --seconds")
    parser.add_argument("--rounds", type=int, default=5, help="slices each phase is cut into, in turns (default 5)")
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    parser.add_argument("--engine-options", help="JSON merged into the app's engine options, to try a change")
    parser.add_argument("--profile", action="store_true", help="profile the service in one process instead")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rounds < 1:
        parser.error("--workers and --rounds must be at least 1")

    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    os.environ["DATABASE_URL"] = url
    if args.engine_options:
        json.loads(args.engine_options)  # fail here, not in every worker
        os.environ["BENCH_ENGINE_OPTIONS"] = args.engine_options
    n, ops = args.workers, args.ops

    started = time.monotonic()
    prepare_database(url)
    app = make_app(url)
    if args.profile:
        ops = ops or 3000
        (wallet,) = fund_wallets(app, 1, AMOUNT_FEN * (3 * ops + 2 * WARM_UP))
        profile(url, wallet, ops)
        return 0

    per_wallet = ops if ops is not None else RATE_CEILING * args.seconds
    funding = AMOUNT_FEN * math.ceil(per_wallet + n * WARM_UP)
    wallets = fund_wallets(app, 2 * n + 2, funding)
    own = {"service": wallets[:n], "raw": wallets[n : 2 * n]}
    hot = {"service": wallets[2 * n], "raw": wallets[2 * n + 1]}
    where = url.split("?")[0].rsplit("/", 1)[-1]
    length = f"{ops} debits" if ops else f"{args.seconds:g} s"
    print(f"ledger debits on {url.split(':', 1)[0]} ({where}): {n} worker processes, {length} per phase "
          f"in {args.rounds} slices, {AMOUNT_FEN} fen each", flush=True)  # fmt: skip
    phases, lost = run(url, n, own, hot, args.seconds, ops, args.rounds)
    for phase in phases:
        print(phase.line(n))

    problems = verify(app, dict.fromkeys(wallets, 0) | lost, funding)
    hot_debits = lost.get(hot["service"], 0)
    hot_ok = not any(p.startswith(f"wallet {hot['service']}:") for p in problems)
    print(f"check: one wallet took {hot_debits} service debits, balance {funding - AMOUNT_FEN * hot_debits} "
          f"{'as expected' if hot_ok else 'WRONG'}; {len(problems)} problems in {len(wallets)} wallets "
          f"and the ledger" + "".join(f"\n  {p}" for p in problems[:20]))  # fmt: skip
    print(f"one wallet: service/raw {phases[2].rate / max(phases[3].rate, 1e-9):.2f}")
    print(f"whole run {time.monotonic() - started:.0f} s")
    print(f"ratio {phases[0].rate / max(phases[1].rate, 1e-9):.2f}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
