"""The ledger invariants of DESIGN.md section 3, checked on whatever database is configured.

Read-only, streaming, and on one consistent snapshot (REPEATABLE READ with a consistent snapshot on
MariaDB, one read transaction on SQLite), so it can run against production while traffic flows and
never reports a debit committed between two of its reads as a broken wallet:

1. every wallet's buckets equal the sums of its ledger deltas, and every row's "after" values equal
   the running sums (replaying the ledger from nothing reproduces every balance);
2. no bucket is negative, in the wallet or in any row;
3. every idempotency key took effect once;
4. every row obeys the rule of its kind: a credit moves one bucket by its amount; a debit or hold takes
   exactly its amount, split by a spending policy, or (a hold only) exactly as the buckets its caller
   named and the row records (``split_principal_fen``); captures and voids mirror the hold they close;
   a refund points at a payment of the same member, gives back exactly its amount and never, with the
   refunds before it, more than each bucket of the payment took; a withdrawal takes principal only; a
   reversal mirrors its credit;
5. the held bucket equals the open holds, no entry is closed twice, and the refund guard
   (``payment_refundable``) agrees with the refunds in the ledger;
6. points: every member's points entries add up to what their lots hold, lot by lot.

Each broken row is one finding naming the row (``entry_id``), not also the correct rows after it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import Connection, text

from ..extensions import db
from . import points
from .policy import split_refund, split_spend

CREDIT_KINDS = ("credit",)
SPEND_KINDS = ("debit", "hold")
PAYMENT_KINDS = ("debit", "capture")


@dataclass(frozen=True)
class Problem:
    member_id: int | None
    invariant: str
    detail: str
    entry_id: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.entry_id} (wallet {self.member_id})" if self.entry_id is not None else None
        if where is None:
            where = f"wallet {self.member_id}" if self.member_id is not None else "ledger"
        return f"{where}: {self.invariant}: {self.detail}"


@dataclass
class _Findings:
    """Row findings are merged per entry, so that one broken row is one finding."""

    rows: dict[int, tuple[int, list[str], list[str]]] = field(default_factory=dict)
    other: list[Problem] = field(default_factory=list)

    def row(self, entry_id: int, member_id: int, invariant: str, why: str) -> None:
        _, invariants, reasons = self.rows.setdefault(entry_id, (member_id, [], []))
        if invariant not in invariants:
            invariants.append(invariant)
        reasons.append(why)

    def add(self, problem: Problem) -> None:
        self.other.append(problem)

    def problems(self) -> list[Problem]:
        found = [
            Problem(member_id, " + ".join(invariants), f"entry {entry_id} " + "; ".join(reasons), entry_id)
            for entry_id, (member_id, invariants, reasons) in sorted(self.rows.items())
        ]
        return found + self.other


def check_ledger(batch_size: int = 5000, policies: Sequence[str] | None = None) -> list[Problem]:
    """``policies``: the spending policies the debits, holds and captures may have been split by
    (default: the configured ``SPENDING_POLICY``; name more for a deployment that changed it)."""
    allowed = tuple(policies or (current_app.config["SPENDING_POLICY"],))
    with _snapshot() as conn:
        findings = _Findings()
        sums = _replay_rows(conn, findings, batch_size, allowed)
        guard = _refund_guard(conn)
        _check_references(conn, findings, guard, batch_size, allowed)
        _check_guard_rows(conn, findings)
        _check_wallets(conn, findings, sums)
        _check_holds(conn, findings, sums)
        for problem in points.check(conn=conn):  # the points ledger against its lots, same snapshot
            findings.add(Problem(None, "points", problem))
        for key, count in conn.execute(
            text("SELECT idempotency_key, COUNT(*) FROM ledger_entry GROUP BY idempotency_key HAVING COUNT(*) > 1")
        ):
            findings.add(Problem(None, "idempotency key used twice", f"{key!r} x{count}"))
        return findings.problems()


class _snapshot:  # noqa: N801 (a context manager, used like a function)
    """A connection whose reads all see one moment of the database.

    MariaDB: a connection of its own at REPEATABLE READ with a consistent snapshot, so traffic goes on.
    SQLite: the session's own transaction, which already holds the database's one write lock (BEGIN
    IMMEDIATE); a second connection would wait for it.
    """

    def __enter__(self) -> Connection:
        self.own = db.engine.dialect.name == "mysql"
        if not self.own:
            self.conn = db.session.connection()
            return self.conn
        self.conn = db.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        # The snapshot is taken here, for every statement that follows, not at each first read.
        self.conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.own:
            self.conn.rollback()
            self.conn.close()
        else:
            db.session.rollback()


def _stream(conn: Connection, sql: str, batch_size: int) -> Iterator[tuple]:
    yield from conn.execution_options(yield_per=batch_size).execute(text(sql))


def _replay_rows(
    conn: Connection, findings: _Findings, batch_size: int, policies: tuple[str, ...]
) -> dict[int, list[int]]:
    """Replay each wallet's rows in order; check each row's after-values and the rule of its kind."""
    sums: dict[int, list[int]] = {}
    expected: list[int] = []  # the after-values the next row should build on
    alternative: list[int] | None = None  # after a broken row: its own stored after-values
    current = None
    rows = _stream(
        conn,
        "SELECT id, member_id, kind, amount_fen, principal_delta_fen, bonus_delta_fen, held_delta_fen, "
        "principal_after_fen, bonus_after_fen, held_after_fen, related_entry_id, closes_entry_id, split_principal_fen "
        "FROM ledger_entry ORDER BY member_id, id",
        batch_size,
    )
    for eid, member_id, kind, amount, dp, dbonus, dh, pa, ba, ha, related, closes, named in rows:
        if member_id != current:
            current, expected, alternative = member_id, [0, 0, 0], None
            sums[member_id] = [0, 0, 0]
        total = sums[member_id]
        total[0] += dp
        total[1] += dbonus
        total[2] += dh
        stored = [pa, ba, ha]
        if named is not None:
            why = _named_split_error(kind, amount, dp, dbonus, named)
            if why:
                findings.row(eid, member_id, "split", why)
        elif kind in SPEND_KINDS and not _split_by_a_policy(amount, expected[0], expected[1], -dp, -dbonus, policies):
            findings.row(
                eid,
                member_id,
                "split",
                f"a {kind} of {amount} from ({expected[0]}, {expected[1]}) took ({-dp}, {-dbonus}), "
                f"not what the spending policy ({', '.join(policies)}) takes",
            )
        replayed = [expected[0] + dp, expected[1] + dbonus, expected[2] + dh]
        if stored == replayed:
            expected, alternative = stored, None
        elif alternative is not None and stored == [alternative[0] + dp, alternative[1] + dbonus, alternative[2] + dh]:
            # The broken row before this one carried the right after-values for what followed
            # (its delta was wrong, or a row is missing before it): follow the stored chain.
            expected, alternative = stored, None
        else:
            findings.row(eid, member_id, "replay", f"says after=({pa}, {ba}, {ha}), replay gives {tuple(replayed)}")
            expected, alternative = replayed, stored
        if min(pa, ba, ha) < 0:
            findings.row(eid, member_id, "negative bucket", f"leaves ({pa}, {ba}, {ha})")
        for why in _shape_errors(kind, amount, dp, dbonus, dh, related, closes):
            findings.row(eid, member_id, "kind rule", why)
    return sums


def _split_by_a_policy(amount: int, principal: int, bonus: int, took_principal: int, took_bonus: int,
                      policies: tuple[str, ...]) -> bool:  # fmt: skip
    if took_principal + took_bonus != amount or amount > principal + bonus:
        return True  # the kind rule or the replay reports it
    return any(split_spend(amount, principal, bonus, policy) == (took_principal, took_bonus) for policy in policies)


def _named_split_error(kind: str, amount: int, dp: int, dbonus: int, named: int) -> str | None:
    """A row that records named buckets: only a hold may, and it must have taken exactly those."""
    if kind != "hold":
        return f"a {kind} records named buckets (principal {named}); only a hold may name its buckets"
    if not 0 <= named <= amount or (-dp, -dbonus) != (named, amount - named):
        return f"a hold of {amount} records named buckets ({named}, {amount - named}) but took ({-dp}, {-dbonus})"
    return None


def _shape_errors(kind: str, amount: int, dp: int, dbonus: int, dh: int, related: int | None,
                  closes: int | None) -> list[str]:  # fmt: skip
    """The rule of each kind that needs no other row."""
    errors = []
    if amount <= 0:
        errors.append(f"amount {amount} is not positive")
    if kind == "credit":
        if dh != 0 or sorted((dp, dbonus)) != [0, amount]:
            errors.append(f"a credit of {amount} must move one bucket by {amount}, moved ({dp}, {dbonus}, {dh})")
    elif kind in SPEND_KINDS:
        held = amount if kind == "hold" else 0
        if dp > 0 or dbonus > 0 or -(dp + dbonus) != amount or dh != held:
            errors.append(f"a {kind} of {amount} must take exactly {amount}, moved ({dp}, {dbonus}, {dh})")
    elif kind in ("capture", "void"):
        if dp < 0 or dbonus < 0 or dh >= 0:
            errors.append(f"a {kind} must release held money, moved ({dp}, {dbonus}, {dh})")
    elif kind == "refund":
        if dp < 0 or dbonus < 0 or dp + dbonus != amount or dh != 0:
            errors.append(f"a refund of {amount} must give back exactly {amount}, moved ({dp}, {dbonus}, {dh})")
    elif kind == "withdrawal":
        if (dp, dbonus, dh) != (-amount, 0, 0):
            errors.append(
                f"a withdrawal of {amount} must take {amount} of principal only, moved ({dp}, {dbonus}, {dh})"
            )
    elif kind == "reversal":
        if dp > 0 or dbonus > 0 or dh != 0 or -(dp + dbonus) != amount:
            errors.append(f"a reversal of {amount} must take back exactly {amount}, moved ({dp}, {dbonus}, {dh})")
    else:
        errors.append(f"unknown kind {kind!r}")
    closing = kind in ("capture", "void", "reversal")
    if kind == "refund" and (related is None or closes is not None):
        errors.append("a refund must point at the payment it refunds, and close nothing")
    elif closing and (related is None or closes != related):
        errors.append(f"a {kind} must point at and close the entry it settles")
    elif kind not in ("refund", "capture", "void", "reversal") and (related is not None or closes is not None):
        errors.append(f"a {kind} points at no other entry")
    return errors


def _refund_guard(conn: Connection) -> dict[int, tuple[int, int, int, int]]:
    """payment id -> (taken principal, taken bonus, refunded principal, refunded bonus), as the guard says."""
    return {
        pid: (tp, tb, rp, rb)
        for pid, tp, tb, rp, rb in conn.execute(
            text(
                "SELECT payment_entry_id, taken_principal_fen, taken_bonus_fen, refunded_principal_fen, "
                "refunded_bonus_fen FROM payment_refundable"
            )
        )
    }


def _check_references(
    conn: Connection,
    findings: _Findings,
    guard: dict[int, tuple[int, int, int, int]],
    batch_size: int,
    policies: tuple[str, ...],
) -> None:
    """Rows that point at another row: the kind, the member and the amounts must agree with it; refunds
    add up within their payment and within what the refund guard recorded."""
    rows = _stream(
        conn,
        "SELECT r.id, r.member_id, r.kind, r.amount_fen, r.principal_delta_fen, r.bonus_delta_fen, "
        "r.held_delta_fen, p.id, p.member_id, p.kind, p.amount_fen, p.principal_delta_fen, p.bonus_delta_fen, "
        "h.principal_delta_fen, h.bonus_delta_fen "
        "FROM ledger_entry r "
        "LEFT JOIN ledger_entry p ON p.id = r.related_entry_id "
        "LEFT JOIN ledger_entry h ON h.id = p.related_entry_id AND p.kind = 'capture' "
        "WHERE r.related_entry_id IS NOT NULL ORDER BY r.related_entry_id, r.id",
        batch_size,
    )
    refunded: dict[int, list[int]] = {}  # the refunds that point at a payment of their own wallet
    all_refunds: dict[int, list[int]] = {}
    for eid, member_id, kind, amount, dp, dbonus, dh, pid, pmember, pkind, pamount, pdp, pdb, hdp, hdb in rows:
        if pid is None:
            findings.row(eid, member_id, "reference", "points at an entry that does not exist")
            continue
        if kind == "refund":  # whatever else is wrong with it, the guard may have counted it
            in_ledger = all_refunds.setdefault(pid, [0, 0])
            in_ledger[0] += dp
            in_ledger[1] += dbonus
        if pmember != member_id:
            findings.row(eid, member_id, "reference", f"points at entry {pid} of another wallet ({pmember})")
            continue
        if pid >= eid:
            findings.row(eid, member_id, "reference", f"points at a later entry {pid}")
        if kind in ("capture", "void"):
            if pkind != "hold":
                findings.row(eid, member_id, "reference", f"a {kind} must settle a hold, entry {pid} is a {pkind}")
            elif kind == "void" and (dp, dbonus, dh, amount) != (-pdp, -pdb, -pamount, pamount):
                findings.row(eid, member_id, "reference", f"a void must give back hold {pid} exactly")
            elif kind == "capture" and (
                dh != -pamount or dp > -pdp or dbonus > -pdb or amount != pamount - dp - dbonus
            ):
                findings.row(eid, member_id, "reference", f"a capture of {amount} does not add up with hold {pid}")
            elif kind == "capture" and not _split_by_a_policy(amount, -pdp, -pdb, -pdp - dp, -pdb - dbonus, policies):
                findings.row(
                    eid,
                    member_id,
                    "split",
                    f"a capture of {amount} from hold {pid} of ({-pdp}, {-pdb}) took ({-pdp - dp}, {-pdb - dbonus}), "
                    f"not what the spending policy ({', '.join(policies)}) takes",
                )
        elif kind == "reversal":
            if pkind != "credit":
                findings.row(eid, member_id, "reference", f"a reversal must undo a credit, entry {pid} is a {pkind}")
            elif (dp, dbonus, amount) != (-pdp, -pdb, pamount):
                findings.row(eid, member_id, "reference", f"a reversal must mirror credit {pid}")
        elif kind == "refund":
            if pkind not in PAYMENT_KINDS:
                findings.row(
                    eid, member_id, "reference", f"a refund must refund a debit or capture, entry {pid} is a {pkind}"
                )
                continue
            taken = (-pdp, -pdb) if pkind == "debit" else (-(hdp or 0) - pdp, -(hdb or 0) - pdb)
            so_far = refunded.setdefault(pid, [0, 0])
            if min(taken) >= 0 and dp + dbonus <= sum(taken) - sum(so_far):
                fair = split_refund(dp + dbonus, taken[0], taken[1], so_far[0], so_far[1])
                if fair != (dp, dbonus):
                    findings.row(
                        eid,
                        member_id,
                        "split",
                        f"a refund of {dp + dbonus} of payment {pid} gave back ({dp}, {dbonus}); in the payment's "
                        f"proportion it gives back {fair}",
                    )
            so_far[0] += dp
            so_far[1] += dbonus
            if so_far[0] > taken[0] or so_far[1] > taken[1]:
                findings.row(
                    eid,
                    member_id,
                    "refund exceeds payment",
                    f"refunds of payment {pid} reach ({so_far[0]}, {so_far[1]}), it took ({taken[0]}, {taken[1]})",
                )
            recorded = guard.get(pid, (0, 0, 0, 0))
            if so_far[0] > recorded[2] or so_far[1] > recorded[3]:
                findings.row(
                    eid,
                    member_id,
                    "refund guard",
                    f"not recorded by the refund guard of payment {pid} (payment_refundable)",
                )
    # The other way round: the guard records refunds the ledger does not have.
    for pid, (_tp, _tb, rp, rb) in sorted(guard.items()):
        in_ledger = all_refunds.get(pid, [0, 0])
        if rp > in_ledger[0] or rb > in_ledger[1]:
            findings.add(
                Problem(
                    None,
                    "refund guard out of step",
                    f"payment {pid}: payment_refundable says ({rp}, {rb}) refunded, the ledger's refunds "
                    f"({in_ledger[0]}, {in_ledger[1]})",
                )
            )


def _check_wallets(conn: Connection, findings: _Findings, sums: dict[int, list[int]]) -> None:
    for member_id, principal, bonus, held in conn.execute(
        text("SELECT member_id, principal_fen, bonus_fen, held_fen FROM wallet ORDER BY member_id")
    ):
        ledger = sums.get(member_id, [0, 0, 0])
        if [principal, bonus, held] != ledger:
            findings.add(
                Problem(
                    member_id,
                    "balance != sum of ledger",
                    f"wallet ({principal}, {bonus}, {held}), ledger {tuple(ledger)}",
                )
            )
        if min(principal, bonus, held) < 0:
            findings.add(Problem(member_id, "negative bucket", f"wallet ({principal}, {bonus}, {held})"))


def _check_holds(conn: Connection, findings: _Findings, sums: dict[int, list[int]]) -> None:
    open_held: dict[int, int] = defaultdict(int)
    for member_id, amount in conn.execute(
        text(
            "SELECT h.member_id, SUM(h.amount_fen) FROM ledger_entry h "
            "WHERE h.kind = 'hold' AND NOT EXISTS (SELECT 1 FROM ledger_entry c WHERE c.closes_entry_id = h.id) "
            "GROUP BY h.member_id"
        )
    ):
        open_held[member_id] = int(amount)
    for member_id, ledger in sums.items():
        if ledger[2] != open_held.get(member_id, 0):
            findings.add(
                Problem(member_id, "held != open holds", f"held {ledger[2]}, open holds {open_held.get(member_id, 0)}")
            )
    for closes, count in conn.execute(
        text(
            "SELECT closes_entry_id, COUNT(*) FROM ledger_entry WHERE closes_entry_id IS NOT NULL "
            "GROUP BY closes_entry_id HAVING COUNT(*) > 1"
        )  # fmt: skip
    ):
        findings.add(Problem(None, "closed twice", f"entry {closes} closed by {count} entries"))


def _check_guard_rows(conn: Connection, findings: _Findings) -> None:
    """Each refund guard row belongs to a payment of its member and says what that payment took."""
    for pid, member_id, tp, tb, _rp, _rb, kind, pmember, pdp, pdb, hdp, hdb in conn.execute(
        text(
            "SELECT g.payment_entry_id, g.member_id, g.taken_principal_fen, g.taken_bonus_fen, "
            "g.refunded_principal_fen, g.refunded_bonus_fen, p.kind, p.member_id, p.principal_delta_fen, "
            "p.bonus_delta_fen, h.principal_delta_fen, h.bonus_delta_fen "
            "FROM payment_refundable g LEFT JOIN ledger_entry p ON p.id = g.payment_entry_id "
            "LEFT JOIN ledger_entry h ON h.id = p.related_entry_id AND p.kind = 'capture' "
            "ORDER BY g.payment_entry_id"
        )
    ):
        if kind not in PAYMENT_KINDS or pmember != member_id:
            why = f"points at entry {pid}, a {kind} of wallet {pmember}, not a payment of wallet {member_id}"
        else:
            taken = (-pdp, -pdb) if kind == "debit" else (-(hdp or 0) - pdp, -(hdb or 0) - pdb)
            if (tp, tb) == taken:
                continue
            why = f"payment {pid} took {taken}, payment_refundable says ({tp}, {tb})"
        findings.add(Problem(member_id, "refund guard out of step", why))
