"""WeChat Pay notifications per second through the full HTTP path, next to the bare ledger credit rate.

    python -m bench.notify [--workers W] [--bare 4] [--clients 8] [--orders 3000] [--rounds 4] [--members 32]
                           [--rewards] [--database-url URL] [--port PORT]

The app is served by gunicorn with W worker *processes* (``--workers``, default gunicorn.conf.py's) and
production's settings (``gunicorn -c gunicorn.conf.py -w W wsgi:app``: gthread workers, threads and
keep-alive as configured there, on 127.0.0.1, a free port in 5300-5399, ``DATABASE_URL`` set,
``WECHAT_SANDBOX=1``, no ``REDIS_URL``), as production runs it. Before the clock starts, this process
creates the recharge orders through the service layer (``recharge.start_recharge``: the cap check, the
snapshot, WeChat Pay's unified order answered by the fake WeChat on a local port), marks them paid at the
fake and takes the notification XML the fake signs for each (``FakeWeChat.payment_notification``: WeChat's
fields, HMAC-SHA256, no ``sign_type`` field, as WeChat sends them). Two phases then take turns in
``--rounds`` slices:

1. ``http``: M client processes (``--clients``) POST the signed notifications to
   ``/wechat/pay/notify`` over plain connections (``bench.wire``, a lean HTTP/1.1 client), each
   notification once; every answer must be WeChat's SUCCESS XML;
2. ``credit``: N worker processes (``--bare``, default 4 as in shared/PERF.md) call
   ``mp_backend.ledger.service.credit`` (the bare ledger credit: one principal credit with its idempotency
   key, in a long-lived app context, no HTTP, no order), as many credits per slice as there were
   notifications, each process on its own wallet.

A notification does more than one credit (verify the signature, read the order, a guarded order
``UPDATE``, the credit, and the bonus and points credits with ``--rewards``), behind gunicorn's HTTP
parsing and a new TCP connection per request (WeChat opens one per notification). Afterwards it checks that
every order is paid, credited exactly once (one ``recharge:<no>:principal`` ledger row each, every
member's balance the sum of their orders), that no anomaly was recorded, that the credit wallets hold
what their workers counted, and that ``check_ledger()`` finds nothing; the exit status is 1 otherwise.
The last line is ``ratio <http/bare>`` (issue 12's target: at least 0.25).

The database (``DATABASE_URL``, default the local MariaDB ``mp_bench_notify``) is emptied and rebuilt
by the app's migrations first: never point this at data you want to keep.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import wire
from bench.ledger import make_app, prepare_database


def port_range(spec: str | None, default: range) -> range:
    """``FIRST-LAST`` (inclusive) as a range, or ``default`` when unset."""
    if not spec:
        return default
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench_notify?charset=utf8mb4"
# BENCH_PORTS=FIRST-LAST moves the servers into another range (engineers sharing one machine).
PORTS = port_range(os.environ.get("BENCH_PORTS"), range(5300, 5400))
AMOUNT_FEN = 100  # 1.00 yuan: many orders per member stay far below the principal cap
WARM_UP = 20  # requests / credits per process before the clock starts
CREATE_THREADS = 6  # order creation waits on the database and the fake: threads overlap the waits
ROOT = Path(__file__).resolve().parent.parent


def free_port(skip: set[int] | None = None, ports: range = PORTS) -> int:
    """The first port of ``ports`` that is free on 127.0.0.1 (and not in ``skip``)."""
    for port in ports:
        if skip and port in skip:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"bench: no free port in {ports.start}-{ports.stop - 1}")


# ---------------------------------------------------------------------------------------------------
# Setup (main process): members, a rule, orders through the service layer, notifications signed by
# the fake WeChat


class Fake:
    """The fake WeChat on a local port, so that ``start_recharge`` reaches it through wechatpy."""

    def __init__(self) -> None:
        import threading

        from werkzeug.serving import make_server

        from mp_backend.wechat.fake import FakeWeChat, _QuietHandler

        self.wechat = FakeWeChat()
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self.wechat.app, threaded=True, request_handler=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-wechat")
        self.thread.start()

    def config(self) -> dict[str, Any]:
        origin = f"http://127.0.0.1:{self.port}"
        return self.wechat.app_config(f"{origin}/wechat/", f"{origin}/wechatpay/")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def setup_app(url: str, fake: Fake) -> Any:
    from bench.ledger import bench_config
    from mp_backend import create_app

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mp_backend.wechat").setLevel(logging.ERROR)
    config = bench_config(url)
    config.WECHAT_SANDBOX = False
    for key, value in fake.config().items():
        setattr(config, key, value)
    return create_app(config)


@dataclass
class Orders:
    rule_id: int
    wxa_appid: str
    members: list[int]
    numbers: list[str]  # out_trade_no, in creation order
    xml: list[str]  # the signed notification of each
    member_of: dict[str, int]


def create_orders(app: Any, fake: Fake, count: int, members: int, rewards: bool) -> Orders:
    """``count`` orders through ``recharge.start_recharge``, in a few threads (each its own app context
    and session): the time goes into round trips to the database and the fake, not into Python."""
    from concurrent.futures import ThreadPoolExecutor

    from mp_backend.members import service as member_service
    from mp_backend.org import service as org
    from mp_backend.recharge import service as recharge

    with app.app_context():
        org.ensure_merchant("bench 商户")
        fields: dict[str, Any] = {"name": "bench 充1元", "amount_fen": AMOUNT_FEN}
        if rewards:
            fields |= {"bonus_fen": 10, "points": 1}
        rule_id = recharge.ensure_rule("bench1", fields).id
        appid = app.config["WECHAT_WXA_APPID"]
        member_ids = [member_service.login_with_openid(appid, f"bench-{n}").member.id for n in range(members)]

    def create(chunk: range) -> list[tuple[str, int]]:
        made = []
        with app.app_context():
            for n in chunk:
                member_id = member_ids[n % members]
                order = recharge.start_recharge(member_id, appid, rule_id=rule_id, client_ip="127.0.0.1").order
                made.append((order.out_trade_no, member_id))
        return made

    threads = CREATE_THREADS
    with ThreadPoolExecutor(threads) as pool:
        made = [pair for part in pool.map(create, [range(i, count, threads) for i in range(threads)]) for pair in part]
    numbers = [no for no, _ in made]
    xml = []
    for no in numbers:
        fake.wechat.mark_paid(no)
        xml.append(fake.wechat.payment_notification(no, include_sign_type=False))
    return Orders(rule_id, appid, member_ids, numbers, xml, dict(made))


def fund_credit_wallets(app: Any, count: int) -> list[int]:
    from mp_backend.members import service as member_service

    with app.app_context():
        return [member_service.create_member(name=f"bench-credit-{n}").id for n in range(count)]


# ---------------------------------------------------------------------------------------------------
# gunicorn


class Gunicorn:
    def __init__(
        self, url: str, workers: int, port: int, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BENCH_ENGINE_OPTIONS")}
        env |= extra_env or {}
        env |= {
            "DATABASE_URL": url,
            "WECHAT_SANDBOX": "1",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PYTHONUNBUFFERED": "1",
        }
        self.port = port
        self.log = log_path.open("w")
        # Production's settings (gunicorn.conf.py: worker class, threads, keep-alive), this many processes.
        command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", str(workers),
                   "-b", f"127.0.0.1:{port}", "--backlog", "512", "--timeout", "60", "wsgi:app"]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = workers

    @staticmethod
    def default_workers() -> int:
        """The worker processes gunicorn.conf.py gives in this environment (production's default)."""
        import runpy

        return int(runpy.run_path(str(ROOT / "gunicorn.conf.py")).get("workers", 1))

    @staticmethod
    def describe() -> str:
        """The worker class, threads and keep-alive that gunicorn.conf.py gives in this environment."""
        import runpy

        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
        text = str(conf.get("worker_class", "sync"))
        if text == "gthread":
            text += f", {conf.get('threads', 1)} threads, keep-alive {conf.get('keepalive', 2)} s"
        extra = os.environ.get("GUNICORN_CMD_ARGS")
        return f"{text}; GUNICORN_CMD_ARGS {extra}" if extra else text

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                if conn.getresponse().status == 200 and len(self.worker_pids()) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"bench: gunicorn did not answer within {timeout:.0f} s; see {self.log.name}")

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers so far (Linux /proc), 0 where unknown."""
        total = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------------------
# The two phases (child processes)


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One POST on a new connection, closed after the answer (WeChat opens one per notification)."""
    return wire.post_once(port, path, body, headers)


def post(port: int, xml: bytes) -> tuple[int, bytes]:
    return http_post(port, "/wechat/pay/notify", xml, {"Content-Type": "text/xml"})


def run_slices(index: int, slices: list[list[Any]], barrier: Any, results: Any,
               send: Callable[[Any], str | None]) -> None:  # fmt: skip
    """The client side of an HTTP bench, in its own process: per slice, ``send`` each item one after the
    other (None when the answer was right, else what went wrong), in step with the other processes."""
    try:
        done = []
        for batch in slices:
            barrier.wait()
            started, cpu0 = time.monotonic(), time.process_time()
            failed = [failure for failure in map(send, batch) if failure is not None]
            done.append((len(batch) - len(failed), started, time.monotonic(), time.process_time() - cpu0, failed))
            barrier.wait()
        results.put(("ok", index, done))
    except BaseException:
        barrier.abort()
        results.put(("error", index, traceback.format_exc()))


def client(index: int, port: int, slices: list[list[str]], barrier: Any, results: Any) -> None:
    """One HTTP client process: per slice, post its notifications one after the other."""

    def send(xml: str) -> str | None:
        status, body = post(port, xml.encode())
        return None if status == 200 and b"SUCCESS" in body else f"HTTP {status}: {body[:200]!r}"

    run_slices(index, slices, barrier, results, send)


def creditor(index: int, url: str, member_id: int, slices: list[int], barrier: Any, results: Any) -> None:
    """One ledger worker process: per slice, that many ``ledger.credit`` calls on its own wallet."""
    try:
        from mp_backend.errors import AppError
        from mp_backend.extensions import db
        from mp_backend.ledger import service as ledger

        app = make_app(url)
        context = app.app_context()
        context.push()
        serial = 0
        credited, refused = 0, 0

        def credit() -> bool:
            nonlocal serial
            serial += 1
            try:
                ledger.credit(member_id, AMOUNT_FEN, key=f"bare-{index}-{serial}", operator="bench")
                return True
            except AppError:
                return False

        credited += sum(credit() for _ in range(WARM_UP))
        done = []
        for ops in slices:
            barrier.wait()
            started, cpu0 = time.monotonic(), time.process_time()
            ok = sum(credit() for _ in range(ops))
            credited += ok
            refused += ops - ok
            done.append((ok, started, time.monotonic(), time.process_time() - cpu0, []))
            barrier.wait()
        db.session.remove()
        context.pop()
        results.put(("ok", index, (done, credited, refused)))
    except BaseException:
        barrier.abort()
        results.put(("error", index, traceback.format_exc()))


@dataclass
class PhaseResult:
    label: str
    processes: int
    ops: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    def add(self, parts: list[tuple[int, float, float, float, list[str]]]) -> None:
        self.ops += sum(p[0] for p in parts)
        self.elapsed += max(p[2] for p in parts) - min(p[1] for p in parts)
        self.client_cpu += sum(p[3] for p in parts)


# ---------------------------------------------------------------------------------------------------
# Checks (main process)


def verify(app: Any, orders: Orders, credit_wallets: dict[int, int], rewards: bool) -> list[str]:
    from sqlalchemy import func, select

    from mp_backend.extensions import db
    from mp_backend.ledger.check import check_ledger
    from mp_backend.ledger.models import LedgerEntry
    from mp_backend.ledger.service import get_balance
    from mp_backend.recharge.models import RechargeAnomaly, RechargeOrder

    problems = []
    with app.app_context():
        statuses = dict(
            db.session.execute(select(RechargeOrder.status, func.count()).group_by(RechargeOrder.status)).all()
        )
        if statuses != {"paid": len(orders.numbers)}:
            problems.append(f"orders by status {statuses}, expected all {len(orders.numbers)} paid")
        e = LedgerEntry.__table__
        keys = dict(
            db.session.execute(
                select(e.c.idempotency_key, func.count())
                .where(e.c.idempotency_key.like("recharge:%:principal"))
                .group_by(e.c.idempotency_key)
            ).all()
        )
        missing = [no for no in orders.numbers if keys.get(f"recharge:{no}:principal") != 1]
        if missing or len(keys) != len(orders.numbers):
            problems.append(f"{len(keys)} principal credits for {len(orders.numbers)} orders; e.g. {missing[:3]}")
        per_member: dict[int, int] = {}
        for no in orders.numbers:
            per_member[orders.member_of[no]] = per_member.get(orders.member_of[no], 0) + AMOUNT_FEN
        bonus_each = 10 if rewards else 0
        for member_id, fen in per_member.items():
            balance = get_balance(member_id)
            expected_bonus = bonus_each * fen // AMOUNT_FEN
            if (balance.principal_fen, balance.bonus_fen) != (fen, expected_bonus):
                problems.append(
                    f"member {member_id}: principal {balance.principal_fen} bonus {balance.bonus_fen}, "
                    f"expected {fen} and {expected_bonus}"
                )
        for member_id, credits in credit_wallets.items():
            balance = get_balance(member_id).principal_fen
            if balance != AMOUNT_FEN * credits:
                problems.append(f"credit wallet {member_id}: {balance}, workers counted {credits} credits")
        anomalies = db.session.scalar(select(func.count()).select_from(RechargeAnomaly))
        if anomalies:
            problems.append(f"{anomalies} recharge anomalies recorded")
        db.session.rollback()
        problems += [str(p) for p in check_ledger()]
    return problems


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--bare", type=int, default=4, help="ledger credit processes (default 4, as shared/PERF.md)")
    parser.add_argument("--clients", type=int, default=8, help="HTTP client processes (default 8)")
    parser.add_argument("--orders", type=int, default=3000, help="notifications, one per order (default 3000)")
    parser.add_argument("--rounds", type=int, default=4, help="slices each phase is cut into, in turns (default 4)")
    parser.add_argument("--members", type=int, default=32, help="members the orders are spread over (default 32)")
    parser.add_argument("--rewards", action="store_true", help="orders with a bonus and points too (3 credits)")
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    parser.add_argument("--port", type=int, help="gunicorn's port (default: the first free one in 5300-5399)")
    args = parser.parse_args(argv)
    args.workers = args.workers or Gunicorn.default_workers()
    if min(args.workers, args.bare, args.clients, args.rounds, args.members, args.orders) < 1:
        parser.error("--workers, --bare, --clients, --rounds, --members and --orders must be at least 1")

    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if url.split("?")[0].rsplit("/", 1)[-1] == "test":
        raise SystemExit("bench: refusing the database `test` (the bench empties its database)")
    os.environ["DATABASE_URL"] = url
    started = time.monotonic()
    w, n, m, rounds = args.workers, args.bare, args.clients, args.rounds

    prepare_database(url)
    fake = Fake()
    app = setup_app(url, fake)
    t0 = time.monotonic()
    orders = create_orders(app, fake, args.orders + m * WARM_UP, args.members, args.rewards)
    fake.stop()
    created_in = time.monotonic() - t0
    credit_wallets = fund_credit_wallets(app, n)

    port = args.port or free_port({fake.port})
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-notify-gunicorn-{port}.log"
    server = Gunicorn(url, w, port, log_path)
    try:
        server.wait_ready()
        # Warm-up: each worker's first requests build its connections and statement caches.
        warm = orders.xml[: m * WARM_UP]
        for xml in warm:
            status, body = post(port, xml.encode())
            if status != 200 or b"SUCCESS" not in body:
                raise SystemExit(f"bench: warm-up notification refused: HTTP {status} {body[:300]!r}")
        timed = orders.xml[m * WARM_UP :]
        per_round = math.ceil(len(timed) / rounds)
        batches = [timed[r * per_round : (r + 1) * per_round] for r in range(rounds)]
        client_slices = [[batch[i::m] for batch in batches] for i in range(m)]
        credit_slices = [[math.ceil(len(batch) / n) for batch in batches] for _ in range(n)]

        where = url.split("?")[0].rsplit("/", 1)[-1]
        rewards = " with bonus and points" if args.rewards else ""
        served = f"gunicorn -w {w} ({Gunicorn.describe()})"
        print(f"pay notifications on {url.split(':', 1)[0]} ({where}): {served}, {m} client "
              f"processes, {len(timed)} orders of {AMOUNT_FEN} fen{rewards} in {rounds} slices, "
              f"{args.members} members; orders created in {created_in:.0f} s", flush=True)  # fmt: skip

        ctx = mp.get_context("spawn")
        http_barrier, credit_barrier = ctx.Barrier(m + 1, timeout=300), ctx.Barrier(n + 1, timeout=300)
        results = ctx.SimpleQueue()
        processes = [
            ctx.Process(target=client, args=(i, port, client_slices[i], http_barrier, results)) for i in range(m)
        ] + [
            ctx.Process(target=creditor, args=(i, url, credit_wallets[i], credit_slices[i], credit_barrier, results))
            for i in range(n)
        ]
        for p in processes:
            p.start()
        http_phase, credit_phase = PhaseResult("http", m), PhaseResult("credit", n)
        for _ in range(rounds):
            cpu0 = server.cpu_seconds()
            http_barrier.wait()  # go
            http_barrier.wait()  # every client done with its slice
            http_phase.server_cpu += server.cpu_seconds() - cpu0
            credit_barrier.wait()
            credit_barrier.wait()
        outcomes = [results.get() for _ in processes]
        for p in processes:
            p.join()
    finally:
        server.stop()
    errors = [detail for status, _, detail in outcomes if status == "error"]
    if errors:
        raise SystemExit("bench: a process failed:\n" + "\n".join(errors))

    failures: list[str] = []
    counted: dict[int, int] = {}
    refused = 0
    for r in range(rounds):
        http_parts, credit_parts = [], []
        for _, _index, detail in outcomes:
            if isinstance(detail, tuple):  # a creditor
                credit_parts.append(detail[0][r])
            else:
                http_parts.append(detail[r])
                failures += detail[r][4]
        http_phase.add(http_parts)
        credit_phase.add(credit_parts)
    for _, index, detail in outcomes:
        if isinstance(detail, tuple):
            counted[credit_wallets[index]] = detail[1]
            refused += detail[2]

    ms = 1000 / max(http_phase.ops, 1)
    print(f"http     gunicorn -w {w}, {m} clients   {http_phase.rate:6.0f} notifications/s  "
          f"server {http_phase.server_cpu * ms:5.2f} ms CPU, client {http_phase.client_cpu * ms:5.2f} ms CPU "
          f"per notification  ({http_phase.ops} in {http_phase.elapsed:.1f} s, "
          f"{len(failures)} not acknowledged)")  # fmt: skip
    print(f"bare     ledger.credit, {n} processes {credit_phase.rate:6.0f} credits/s        "
          f"{1000 * credit_phase.client_cpu / max(credit_phase.ops, 1):5.2f} ms CPU per credit  "
          f"({credit_phase.ops} in {credit_phase.elapsed:.1f} s"
          f"{f', {refused} refused' if refused else ''})")  # fmt: skip
    for failure in failures[:5]:
        print(f"  not acknowledged: {failure}")

    problems = verify(app, orders, counted, args.rewards)
    print(f"check: {len(orders.numbers)} orders (warm-up included) each paid and credited once, "
          f"{n} credit wallets as counted, check_ledger clean: "
          f"{'yes' if not problems else 'NO'}" + "".join(f"\n  {p}" for p in problems[:20]))  # fmt: skip
    print(f"whole run {time.monotonic() - started:.0f} s (gunicorn log: {log_path})")
    print(f"ratio {http_phase.rate / max(credit_phase.rate, 1e-9):.2f}", flush=True)
    return 1 if problems or failures else 0


if __name__ == "__main__":
    sys.exit(main())
