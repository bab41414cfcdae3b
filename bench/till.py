"""Open-API charges per second through the full HTTP path, next to the bare ledger debit rate.

    python -m bench.till [--workers W] [--bare 4] [--clients 8] [--charges 3000] [--rounds 4] [--members 32]
                         [--redis-url URL] [--database-url URL] [--port PORT]

The app is served by gunicorn with W worker *processes* (``--workers``, default gunicorn.conf.py's, as
production runs it) and production's settings (``gunicorn -c gunicorn.conf.py -w W wsgi:app``: gthread
workers, threads and keep-alive as configured there, on 127.0.0.1, a free port in 5500-5549,
``DATABASE_URL`` set, no ``REDIS_URL`` unless ``--redis-url``: nonces then live in Redis instead of the
``open_nonce`` table). Before the clock starts, this process creates an open-API client
(``clients.create_client``) and funds the members. Two phases then take turns in ``--rounds`` slices:

1. ``http``: M client processes (``--clients``) POST ``/open/api/v1/charges`` (1.00 yuan by card number,
   a unique order number and ``Idempotency-Key`` each), each request signed as DESIGN.md section 5 says
   (X-Client-Id, X-Timestamp, X-Nonce, X-Signature), over one connection per till process kept open
   from charge to charge, as a till system keeps it (``Till``, on ``bench.wire``: a lean HTTP/1.1 client,
   the load generator shares the cores); every answer must be a 201;
2. ``bare``: N processes (``--bare``, default 4 as in shared/PERF.md) issue the minimal debit of
   ``shared/PERF.md`` on a bare PyMySQL connection (``bench.ledger.RawDebits``: conditional UPDATE, SELECT,
   INSERT of the ledger row, COMMIT), each on its own wallet, as many debits per slice as there were
   charges.

A charge does more than a debit: the signature check (client row and secret, cached per process for a
few seconds), the nonce remembered with the stored answer lookup in one statement, the member by card
number, the store, the ledger's own debit (wallet lock, entry, wallet update), the balance notice row,
the ``till_charge`` row and the stored answer, behind gunicorn's HTTP parsing.
Afterwards it checks that every charge is one ledger row with its key, one ``till_charge``, that every
member's balance is its funding minus its charges, that the bare wallets hold what their processes
counted, and that ``check_ledger()`` finds nothing; the exit status is 1 otherwise. The last line is
``ratio <http/bare>`` (issue 13's target: at least 0.25).

The database (``DATABASE_URL``, default the local MariaDB ``mp_bench_till``) is emptied and rebuilt by the
app's migrations first: never point this at data you want to keep.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import multiprocessing as mp
import os
import secrets
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import wire
from bench.ledger import BENCH_SECRET_KEY, RawDebits, make_app, prepare_database
from bench.notify import Gunicorn, PhaseResult, port_range, run_slices
from bench.notify import free_port as notify_free_port

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench_till?charset=utf8mb4"
# BENCH_PORTS=FIRST-LAST moves the servers into another range (engineers sharing one machine).
PORTS = port_range(os.environ.get("BENCH_PORTS"), range(5500, 5550))
AMOUNT_FEN = 100
WARM_UP = 20  # requests / debits per process before the clock starts
PATH = "/open/api/v1/charges"
STORE = "b01"


def free_port() -> int:
    return notify_free_port(ports=PORTS)


def setup(
    app: Any, members: int, charges_per_member: int, bare: int
) -> tuple[str, str, list[tuple[int, str]], list[int]]:
    from mp_backend.clients.service import create_client
    from mp_backend.extensions import db
    from mp_backend.ledger import service as ledger
    from mp_backend.members import service as member_service
    from mp_backend.members.models import Member
    from mp_backend.org import service as org

    with app.app_context():
        org.ensure_merchant("bench 商户")
        org.ensure_region("bench", "bench 区")
        org.ensure_store(STORE, "bench 店", "bench")
        created = create_client("bench 收银台", STORE)
        cards = []
        for n in range(members):
            member_id = member_service.create_member(name=f"bench-till-{n}").id
            # three quarters principal, a quarter bonus: the proportional split runs on every charge
            need = AMOUNT_FEN * charges_per_member
            ledger.credit(member_id, need - need // 4, key=f"fund-p-{member_id}", operator="bench")
            ledger.credit(member_id, need // 4, bucket="bonus", key=f"fund-b-{member_id}", operator="bench")
            cards.append((member_id, db.session.get(Member, member_id).card_no))
        wallets = []
        for n in range(bare):
            member_id = member_service.create_member(name=f"bench-bare-{n}").id
            ledger.credit(member_id, 50_000_000, key=f"fund-bare-{member_id}", operator="bench")
            wallets.append(member_id)
        db.session.remove()
    return created.client.client_id, created.secret, cards, wallets


# ---------------------------------------------------------------------------------------------------
# The two phases (child processes)


def signature(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """A till's own signing, as the README describes it: the client processes import nothing of the app."""
    message = "\n".join((method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_headers(client_id: str, secret: str, data: bytes, key: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    return {
        "Content-Type": "application/json",
        "X-Client-Id": client_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": signature(secret, "POST", PATH, timestamp, nonce, data),
        "Idempotency-Key": key,
    }


class Till:
    """A till's HTTP connection, kept open from one charge to the next as a till system keeps it (HTTP/1.1
    keep-alive; ``bench.wire``, a lean client). When the server has closed it while idle, the charge is
    signed again (a new nonce: the first may have arrived) and sent on a new connection, with the same
    Idempotency-Key and body."""

    def __init__(self, port: int, client_id: str, secret: str) -> None:
        self.port, self.client_id, self.secret = port, client_id, secret
        self.conn: wire.Connection | None = None
        self.reconnects = 0

    def charge(self, body: dict[str, Any], key: str) -> tuple[int, bytes]:
        data = json.dumps(body, separators=(",", ":")).encode()
        while True:
            reused = self.conn is not None
            if self.conn is None:
                self.conn = wire.Connection(self.port)
            try:
                headers = signed_headers(self.client_id, self.secret, data, key)
                status, answer, keep = self.conn.request("POST", PATH, data, headers)
            except (wire.Closed, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused:
                    raise
                self.reconnects += 1
                continue
            if not keep:
                self.close()
            return status, answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def client(index: int, port: int, client_id: str, secret: str, slices: list[list[tuple[str, str]]],
           barrier: Any, results: Any) -> None:  # fmt: skip
    """One till process: per slice, its charges one after the other on its one kept-open connection."""
    till = Till(port, client_id, secret)

    def send(item: tuple[str, str]) -> str | None:
        card_no, order_no = item
        body = {"member": {"card_no": card_no}, "amount_fen": AMOUNT_FEN, "order_no": order_no, "store_code": STORE}
        status, answer = till.charge(body, order_no)
        return None if status == 201 else f"HTTP {status}: {answer[:200]!r}"

    run_slices(index, slices, barrier, results, send)
    till.close()


def debitor(index: int, url: str, member_id: int, slices: list[int], barrier: Any, results: Any) -> None:
    """One bare process: per slice, that many minimal debits on its own wallet (bench.ledger.RawDebits)."""
    try:
        raw = RawDebits(url)
        serial = debited = 0

        def debit() -> bool:
            nonlocal serial
            serial += 1
            return raw.debit(member_id, f"bare-{index}-{serial}")

        debited += sum(debit() for _ in range(WARM_UP))
        done = []
        for ops in slices:
            barrier.wait()
            started, cpu0 = time.monotonic(), time.process_time()
            ok = sum(debit() for _ in range(ops))
            debited += ok
            done.append((ok, started, time.monotonic(), time.process_time() - cpu0, []))
            barrier.wait()
        raw.close()
        results.put(("ok", index, (done, debited)))
    except BaseException:
        barrier.abort()
        results.put(("error", index, traceback.format_exc()))


# ---------------------------------------------------------------------------------------------------
# Checks (main process)


def verify(app: Any, charged: dict[int, int], bare: dict[int, int], orders: int) -> list[str]:
    from sqlalchemy import func, select

    from mp_backend.extensions import db
    from mp_backend.ledger.check import check_ledger
    from mp_backend.ledger.models import LedgerEntry
    from mp_backend.ledger.service import get_balance
    from mp_backend.spending.till import TillCharge

    problems = []
    with app.app_context():
        e = LedgerEntry.__table__
        debits = db.session.scalar(
            select(func.count()).select_from(e).where(e.c.kind == "debit", e.c.idempotency_key.like("open:%"))
        )
        rows = db.session.scalar(select(func.count()).select_from(TillCharge.__table__))
        if debits != orders or rows != orders:
            problems.append(f"{debits} open-API debits and {rows} till charges for {orders} charges answered 201")
        for member_id, count in charged.items():
            balance = get_balance(member_id)
            if balance.available_fen != 0 or balance.held_fen != 0:
                problems.append(f"member {member_id}: {balance}, expected empty after {count} charges")
        for member_id, count in bare.items():
            left = get_balance(member_id).principal_fen
            if left != 50_000_000 - AMOUNT_FEN * count:
                problems.append(f"bare wallet {member_id}: {left}, its process counted {count} debits")
        db.session.rollback()
        problems += [str(p) for p in check_ledger()]
    return problems


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.till", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--bare", type=int, default=4, help="bare debit processes (default 4, as shared/PERF.md)")
    parser.add_argument("--clients", type=int, default=8, help="HTTP client processes (default 8)")
    parser.add_argument("--charges", type=int, default=3000, help="timed charges (default 3000)")
    parser.add_argument("--rounds", type=int, default=4, help="slices each phase is cut into, in turns (default 4)")
    parser.add_argument("--members", type=int, default=32, help="members the charges are spread over (default 32)")
    parser.add_argument("--redis-url", help="nonces in this Redis (default: the open_nonce table)")
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    parser.add_argument("--port", type=int, help="gunicorn's port (default: the first free one in 5500-5549)")
    args = parser.parse_args(argv)
    args.workers = args.workers or Gunicorn.default_workers()
    if min(args.workers, args.bare, args.clients, args.rounds, args.members, args.charges) < 1:
        parser.error("--workers, --bare, --clients, --rounds, --members and --charges must be at least 1")

    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if url.split("?")[0].rsplit("/", 1)[-1] == "test":
        raise SystemExit("bench: refusing the database `test` (the bench empties its database)")
    os.environ["DATABASE_URL"] = url
    # As gunicorn's environment says (bench.notify.Gunicorn): the sandbox. Both sides derive the client
    # secret's key from SECRET_KEY: this process's bench key (bench_config) goes to gunicorn too.
    os.environ.setdefault("WECHAT_SANDBOX", "1")
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET_KEY)
    started = time.monotonic()
    w, n, m, rounds = args.workers, args.bare, args.clients, args.rounds
    total = args.charges + m * WARM_UP
    per_member = math.ceil(total / args.members)
    total = per_member * args.members  # every member is charged down to exactly zero

    prepare_database(url)
    app = make_app(url)
    client_id, secret, cards, wallets = setup(app, args.members, per_member, n)
    orders = [(cards[i % args.members][1], f"T{i:07d}") for i in range(total)]

    port = args.port or free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-till-gunicorn-{port}.log"
    extra = {"REDIS_URL": args.redis_url} if args.redis_url else {}
    server = Gunicorn(url, w, port, log_path, extra_env=extra)
    try:
        server.wait_ready()
        warm_till = Till(port, client_id, secret)
        for card_no, order_no in orders[: m * WARM_UP]:
            body = {"member": {"card_no": card_no}, "amount_fen": AMOUNT_FEN, "order_no": order_no, "store_code": STORE}
            status, answer = warm_till.charge(body, order_no)
            if status != 201:
                raise SystemExit(f"bench: warm-up charge refused: HTTP {status} {answer[:300]!r}")
        warm_till.close()
        timed = orders[m * WARM_UP :]
        per_round = math.ceil(len(timed) / rounds)
        batches = [timed[r * per_round : (r + 1) * per_round] for r in range(rounds)]
        client_slices = [[batch[i::m] for batch in batches] for i in range(m)]
        bare_slices = [[math.ceil(len(batch) / n) for batch in batches] for _ in range(n)]

        where = url.split("?")[0].rsplit("/", 1)[-1]
        nonces = "Redis" if args.redis_url else "the open_nonce table"
        served = f"gunicorn -w {w} ({Gunicorn.describe()})"
        print(f"open-API charges on {url.split(':', 1)[0]} ({where}): {served}, {m} client "
              f"processes, {len(timed)} charges of {AMOUNT_FEN} fen in {rounds} slices over {args.members} "
              f"members, nonces in {nonces}", flush=True)  # fmt: skip

        ctx = mp.get_context("spawn")
        http_barrier, bare_barrier = ctx.Barrier(m + 1, timeout=300), ctx.Barrier(n + 1, timeout=300)
        results = ctx.SimpleQueue()
        processes = [
            ctx.Process(target=client, args=(i, port, client_id, secret, client_slices[i], http_barrier, results))
            for i in range(m)
        ] + [
            ctx.Process(target=debitor, args=(i, url, wallets[i], bare_slices[i], bare_barrier, results))
            for i in range(n)
        ]
        for p in processes:
            p.start()
        http_phase, bare_phase = PhaseResult("http", m), PhaseResult("bare", n)
        for _ in range(rounds):
            cpu0 = server.cpu_seconds()
            http_barrier.wait()
            http_barrier.wait()
            http_phase.server_cpu += server.cpu_seconds() - cpu0
            bare_barrier.wait()
            bare_barrier.wait()
        outcomes = [results.get() for _ in processes]
        for p in processes:
            p.join()
    finally:
        server.stop()
    errors = [detail for status, _, detail in outcomes if status == "error"]
    if errors:
        raise SystemExit("bench: a process failed:\n" + "\n".join(errors))

    failures: list[str] = []
    bare_counted: dict[int, int] = {}
    for r in range(rounds):
        http_parts, bare_parts = [], []
        for _, _index, detail in outcomes:
            if isinstance(detail, tuple):
                bare_parts.append(detail[0][r])
            else:
                http_parts.append(detail[r])
                failures += detail[r][4]
        http_phase.add(http_parts)
        bare_phase.add(bare_parts)
    for _, index, detail in outcomes:
        if isinstance(detail, tuple):
            bare_counted[wallets[index]] = detail[1]

    ms = 1000 / max(http_phase.ops, 1)
    print(f"http     gunicorn -w {w}, {m} clients   {http_phase.rate:6.0f} charges/s   "
          f"server {http_phase.server_cpu * ms:5.2f} ms CPU, client {http_phase.client_cpu * ms:5.2f} ms CPU "
          f"per charge  ({http_phase.ops} in {http_phase.elapsed:.1f} s, {len(failures)} refused)")  # fmt: skip
    print(f"bare     PyMySQL debit, {n} processes  {bare_phase.rate:6.0f} debits/s    "
          f"{1000 * bare_phase.client_cpu / max(bare_phase.ops, 1):5.2f} ms CPU per debit  "
          f"({bare_phase.ops} in {bare_phase.elapsed:.1f} s)")  # fmt: skip
    for failure in failures[:5]:
        print(f"  refused: {failure}")

    charged = {member_id: per_member for member_id, _ in cards}
    problems = verify(app, charged, bare_counted, total - len(failures))
    print(f"check: {total} charges (warm-up included) each one ledger row and one till charge, every member "
          f"charged down to exactly 0, {n} bare wallets as counted, check_ledger clean: "
          f"{'yes' if not problems else 'NO'}" + "".join(f"\n  {p}" for p in problems[:20]))  # fmt: skip
    print(f"whole run {time.monotonic() - started:.0f} s (gunicorn log: {log_path})")
    print(f"ratio {http_phase.rate / max(bare_phase.rate, 1e-9):.2f}", flush=True)
    return 1 if problems or failures else 0


if __name__ == "__main__":
    sys.exit(main())
