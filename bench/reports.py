"""Console reports on a large ledger: the fund overview, a filtered page, a 100,000-row export.

    python -m bench.reports [--rows 1000000] [--members 100000] [--stores 20] [--repeat 20]
                            [--export-rows 100000] [--database-url URL]

1. Loads ``--rows`` ledger rows over ``--members`` members and ``--stores`` stores with multi-row
   INSERTs on a bare PyMySQL connection (bypassing the service, for loading only): each member's rows
   are a consistent history (credits, bonus credits, debits; every row's after-values follow from the
   previous one; wallets end at their last row's values), spread over the last 400 days in id order.
   ``flask ledger check`` rules hold for them.
2. Times the report job catching up from nothing (``reports.summary.catch_up``), then folds 1,000 more
   rows written after it (the minute-by-minute case) and leaves 500 in the live tail.
3. Times through HTTP (Flask's test client, staff token, the whole request): the fund overview as HQ
   and as a clerk, a filtered ledger page (store + kind, page 3, with its capped total), and one indexed
   single-row lookup (a member by card number through the app's session) as the unit.
4. Runs a ledger export of ``--export-rows`` rows (the newest) in a child process and reports its time
   and the child's peak RSS, next to a 10,000-row export in another child: flat memory means about
   the same peak for both.

Prints medians; last ``ratio <overview / indexed lookup>``. The database (``DATABASE_URL``, default the
local MariaDB ``mp_bench_reports``) is emptied and rebuilt by the migrations first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from bench.ledger import _pymysql_args, make_app, prepare_database

DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/mp_bench_reports?charset=utf8mb4"
INSERT_BATCH = 5_000
LEDGER_COLUMNS = (
    "id", "member_id", "kind", "amount_fen", "principal_delta_fen", "bonus_delta_fen", "held_delta_fen",
    "principal_after_fen", "bonus_after_fen", "held_after_fen", "store_id", "operator", "reference",
    "idempotency_key", "request_hash", "note", "created_at",
)  # fmt: skip


def _insert(cur: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows)


def load(url: str, rows: int, members: int, stores: int, seed: int = 15) -> dict[str, Any]:
    """Org, members, wallets and a consistent ledger, by bulk INSERT (loading only)."""
    import pymysql

    rng = random.Random(seed)
    conn = pymysql.connect(**_pymysql_args(url), autocommit=False)
    now = datetime.utcnow().replace(microsecond=0)
    start = now - timedelta(days=400)
    with conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS=0")  # loading only: the wallets' final balances come last
        cur.execute(
            "INSERT INTO merchant (id, name, principal_cap_fen, created_at) VALUES (1, '压测商户', 500000, %s)", (now,)
        )
        cur.execute("INSERT INTO region (id, code, name, created_at) VALUES (1, 'east', '华东区', %s)", (now,))
        _insert(cur, "store", ("id", "code", "name", "region_id", "created_at"),
                [(s, f"s{s:02d}", f"门店{s:02d}", 1, now) for s in range(1, stores + 1)])  # fmt: skip
        people = [(m, f"8{m:011d}", f"会员{m}", f"139{m:08d}", "active", 0, start) for m in range(1, members + 1)]
        _insert(cur, "member", ("id", "card_no", "name", "phone", "status", "subscribed", "created_at"), people)
        balance = {m: [0, 0] for m in range(1, members + 1)}
        per_member = max(1, rows // members)
        batch: list[tuple[Any, ...]] = []
        entry_id = 0
        span = (now - start).total_seconds()
        for round_no in range(per_member):  # every member's next row, round after round: ids follow time
            for member in range(1, members + 1):
                entry_id += 1
                if entry_id > rows:
                    break
                p, b = balance[member]
                roll = rng.random()
                store = rng.randint(1, stores)
                if round_no == 0 or p + b < 500 or roll < 0.35:
                    kind, amount, dp, db_ = "credit", rng.choice((10_000, 20_000, 50_000)), 0, 0
                    dp = amount
                elif roll < 0.45:
                    kind, amount = "credit", rng.choice((1_000, 3_000))
                    dp, db_ = 0, amount
                else:
                    kind, amount = "debit", rng.randint(1, min(p + b, 30_000))
                    db_ = -min(b, round(amount * b / (p + b)))
                    dp = -(amount + db_)
                p, b = p + dp, b + db_
                balance[member] = [p, b]
                moment = start + timedelta(seconds=span * entry_id / rows)
                batch.append((entry_id, member, kind, amount, dp, db_, 0, p, b, 0, store, "bench", None,
                              f"bench:{entry_id}", "0" * 64, "", moment))  # fmt: skip
                if len(batch) >= INSERT_BATCH:
                    _insert(cur, "ledger_entry", LEDGER_COLUMNS, batch)
                    batch.clear()
        if batch:
            _insert(cur, "ledger_entry", LEDGER_COLUMNS, batch)
        _insert(cur, "wallet", ("member_id", "principal_fen", "bonus_fen", "held_fen", "frozen", "created_at"),
                [(m, pb[0], pb[1], 0, 0, start) for m, pb in balance.items()])  # fmt: skip
        cur.execute("SET FOREIGN_KEY_CHECKS=1")
    conn.commit()
    conn.close()
    return {"rows": entry_id if entry_id <= rows else rows, "now": now}


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls (after one warm-up call) and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def export_child(url: str, staff_id: int, created_from: str, out: Any) -> None:
    """In its own process: one export, its time and the process's peak RSS (KiB on Linux)."""
    import tempfile

    app = make_app(url)
    app.config["EXPORT_DIR"] = tempfile.mkdtemp(prefix="bench-exports-")
    with app.app_context():
        from mp_backend.reports import exports

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        job = exports.start_export(staff_id, "ledger", {"created_from": created_from})
        elapsed = time.perf_counter() - t
        job = exports.get_export(staff_id, job.id)
        size = os.path.getsize(os.path.join(app.config["EXPORT_DIR"], job.file_name))
        out.put((job.status, job.rows_done, elapsed, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, size))


def run_export(url: str, staff_id: int, created_from: str) -> tuple[Any, ...]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=export_child, args=(url, staff_id, created_from, queue))
    child.start()
    result = queue.get()
    child.join()
    return result  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--export-rows", type=int, default=100_000)
    parser.add_argument("--database-url", help=f"default: $DATABASE_URL, else {DEFAULT_URL}")
    args = parser.parse_args(argv)
    url = args.database_url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("mysql"):
        parser.error("bench.reports loads with PyMySQL: use a MariaDB / MySQL URL")
    os.environ["DATABASE_URL"] = url

    started = time.monotonic()
    prepare_database(url)
    t = time.perf_counter()
    loaded = load(url, args.rows, args.members, args.stores)
    print(f"load: {loaded['rows']:,} ledger rows, {args.members:,} members, {args.stores} stores by bulk INSERT "
          f"in {time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip

    app = make_app(url)
    app.config["EXPORT_MAX_ROWS"] = max(args.export_rows, 1_000_000)
    with app.app_context():
        from sqlalchemy import select, text

        from mp_backend.extensions import db
        from mp_backend.ledger import service as ledger
        from mp_backend.members.models import Member
        from mp_backend.org import service as org
        from mp_backend.reports import summary

        admin = org.create_staff("admin", "hq_admin", "bench-password-1")
        org.create_staff("clerk", "clerk", "bench-password-1", store_code="s01")
        admin_id = admin.id
        db.session.commit()

        t = time.perf_counter()
        caught = summary.catch_up(max_seconds=3600)
        catch_up_s = time.perf_counter() - t
        print(f"summary job, first catch-up: {caught.ledger_rows:,} rows in {caught.batches} batches, "
              f"{catch_up_s:.1f} s ({caught.ledger_rows / catch_up_s:,.0f} rows/s)", flush=True)  # fmt: skip
        for n in range(1_500):  # through the service: 1,000 folded by the next run, 500 left in the live tail
            ledger.credit(1 + n % args.members, 100, key=f"after-{n}", operator="bench", store_id=1 + n % args.stores)
            if n == 999:
                t = time.perf_counter()
                step = summary.catch_up()
                print(f"summary job, a minute's run: {step.ledger_rows:,} new rows in "
                      f"{(time.perf_counter() - t) * 1000:.0f} ms", flush=True)  # fmt: skip
        db.session.commit()
        tail = db.session.execute(
            text("SELECT COUNT(*) FROM ledger_entry WHERE id > (SELECT ledger_last_id FROM report_total)")
        ).scalar_one()

        client = app.test_client()

        def token(username: str) -> str:
            answer = client.post("/admin/api/auth/login", json={"username": username, "password": "bench-password-1"})
            return str(answer.get_json()["token"])

        hq, clerk = {"Authorization": f"Bearer {token('admin')}"}, {"Authorization": f"Bearer {token('clerk')}"}

        def get(path: str, headers: dict[str, str]) -> Any:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return response.get_json()

        overview_s, answer = timed(lambda: get("/admin/api/overview", hq), args.repeat)
        clerk_s, _ = timed(lambda: get("/admin/api/overview", clerk), args.repeat)
        daily_s, _ = timed(lambda: get("/admin/api/overview/daily?days=90", hq), args.repeat)
        page_s, page = timed(lambda: get("/admin/api/ledger?store=s05&kind=debit&page=3&per_page=50", hq), args.repeat)
        card = f"8{args.members // 2:011d}"

        def lookup() -> Any:
            found = db.session.execute(select(Member.id, Member.card_no).where(Member.card_no == card)).one()
            db.session.rollback()
            return found

        lookup_s, _ = timed(lookup, args.repeat * 10)
        # the truth, for the record: the overview's principal is the wallets' sum
        wallets = db.session.execute(text("SELECT SUM(principal_fen), SUM(bonus_fen) FROM wallet")).one()
        db.session.rollback()
        assert answer["balance"]["principal_fen"] == wallets[0] and answer["balance"]["bonus_fen"] == wallets[1]
        newest = db.session.execute(
            text("SELECT created_at FROM ledger_entry ORDER BY id DESC LIMIT 1 OFFSET :n"), {"n": args.export_rows - 1}
        ).scalar_one()
        small = db.session.execute(
            text("SELECT created_at FROM ledger_entry ORDER BY id DESC LIMIT 1 OFFSET 9999")
        ).scalar_one()
        db.session.rollback()

    balance = answer["balance"]
    print(f"overview (HQ, {tail} rows in the live tail): {overview_s * 1000:.1f} ms median of {args.repeat}; "
          f"balance = the wallets' sum ({balance['principal_fen']:,} + {balance['bonus_fen']:,} fen)")  # fmt: skip
    print(f"overview (clerk, one store): {clerk_s * 1000:.1f} ms")
    print(f"daily series, 90 days: {daily_s * 1000:.1f} ms")
    print(f"filtered page (store + kind, page 3 of 50, total {page['total']:,}"
          f"{'+' if page.get('total_capped') else ''}): {page_s * 1000:.1f} ms")  # fmt: skip
    print(f"indexed single-row lookup (member by card number): {lookup_s * 1000:.3f} ms median of {args.repeat * 10}")
    big = run_export(url, admin_id, newest.isoformat() + "+00:00")
    little = run_export(url, admin_id, small.isoformat() + "+00:00")
    for label, (status, rows, seconds, before, peak, size) in (("export", big), ("export (for comparison)", little)):
        print(f"{label}: {rows:,} ledger rows to .xlsx ({size / 1e6:.1f} MB) {status} in {seconds:.1f} s, "
              f"peak RSS {peak / 1024:.0f} MiB (after start-up {before / 1024:.0f} MiB)")  # fmt: skip
    print(f"whole run {time.monotonic() - started:.0f} s")
    if overview_s > 0.2:
        print("overview over 200 ms: FAILED")
    print(f"ratio {overview_s / lookup_s:.1f}", flush=True)
    return 0 if overview_s <= 0.2 and big[0] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
