"""Charges, holds and refunds from the merchant's till and shop system (the open API).

A ``till_charge`` links the client, the store, the member, the merchant's ``order_no`` (UNIQUE per
client) and the ledger entries: the debit of a charge, or the hold and the capture or void that settles
it. A ``till_refund`` links each refund to its ledger entry. Money moves only through the ledger
(debit, hold, capture, void, refund), in the same transaction as these rows, with ledger keys derived
from the client and its ``Idempotency-Key`` (``Client.ledger_key``); the ledger's
``payment_refundable`` guard is what keeps refunds within the payment, ``refunded_fen`` here mirrors it
under its own CHECK.

Pricing is the till's: the open API charges the amount the till sends and applies no card discount
(the lookup tells the till the member's level and ``discount_percent`` so it can price the order).

Each function here runs inside ``clients.service.run_idempotent``'s transaction and returns
``(status, body)``; the body is stored as the answer to the key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .. import hotpath
from ..clients.service import Client
from ..errors import Conflict, Forbidden, MemberNotFound, NotFound, ValidationFailed
from ..extensions import db
from ..hotpath import Sql
from ..ledger import service as ledger
from ..loyalty import service as loyalty
from ..models_base import BigId, ExactString, created_at_column, utcnow
from ..notices import service as notices
from ..org.models import Store
from . import paycode

KINDS = ("charge", "hold")
STATUSES = ("paid", "held", "captured", "voided")


class TillCharge(db.Model):  # type: ignore[name-defined]
    __tablename__ = "till_charge"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open_client.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("store.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    order_no: Mapped[str] = mapped_column(ExactString(64))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10))
    amount_fen: Mapped[int] = mapped_column(BigId)  # asked for: the charge, or the hold
    principal_fen: Mapped[int] = mapped_column(BigId)  # what the debit / hold took from each bucket
    bonus_fen: Mapped[int] = mapped_column(BigId)
    paid_fen: Mapped[int] = mapped_column(BigId)  # what the member paid: the charge, the capture, 0 for a hold
    refunded_fen: Mapped[int] = mapped_column(BigId, default=0)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_entry.id"), unique=True)  # debit or hold
    settle_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("client_id", "order_no", name="uq_till_charge_client_order_no"),
        CheckConstraint("kind IN ('charge', 'hold')", name="kind_known"),
        CheckConstraint("status IN ('paid', 'held', 'captured', 'voided')", name="status_known"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("principal_fen >= 0 AND bonus_fen >= 0", name="split_non_negative"),
        CheckConstraint("principal_fen + bonus_fen = amount_fen", name="split_is_amount"),
        CheckConstraint("paid_fen >= 0 AND paid_fen <= amount_fen", name="paid_within_amount"),
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= paid_fen", name="refunded_within_paid"),
    )


class TillRefund(db.Model):  # type: ignore[name-defined]
    __tablename__ = "till_refund"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    charge_id: Mapped[int] = mapped_column(BigId, ForeignKey("till_charge.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigId)
    principal_fen: Mapped[int] = mapped_column(BigId)  # restored to each bucket
    bonus_fen: Mapped[int] = mapped_column(BigId)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_entry.id"), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("principal_fen >= 0 AND bonus_fen >= 0", name="split_non_negative"),
        CheckConstraint("principal_fen + bonus_fen = amount_fen", name="split_is_amount"),
    )


def till_key(charge_id: int) -> str:
    """A till charge's (or captured hold's) own key for the points it earns: ``earn:till:<id>``."""
    return f"till:{charge_id}"


class StoreOutOfScope(Forbidden):
    code, message = "store_out_of_scope", "该客户端只能在其所属门店收款"


class OrderNoTaken(Conflict):
    code, message = "order_no_taken", "该订单号已有一笔收款或冻结，请使用新的订单号"


class ChargeNotFound(NotFound):
    code, message = "charge_not_found", "收款记录不存在"


class HoldNotFound(NotFound):
    code, message = "hold_not_found", "预授权（冻结）记录不存在"


# ---------------------------------------------------------------------------------------------------
# Who and where (every charge asks: on the driver cursor, ``hotpath``)

_STORE_BY_CODE = Sql("SELECT id FROM store WHERE code = ?")
_MEMBER_BY = {kind: Sql(f"SELECT id FROM member WHERE {kind} = ?") for kind in ("card_no", "phone")}
# A charge's "who is it", the debit's wallet lock (ledger.prime_locked_wallet) and the payment's referral
# question (loyalty.on_spend) in one round trip. The member row is read, not locked: a locking read locks
# no rows of a nested subquery.
_LOCK_MEMBER_BY = {
    kind: Sql(
        f"SELECT w.member_id, {', '.join('w.' + c for c in ledger.LOCKED_WALLET_COLUMNS)}, "
        f"{loyalty.REFERRAL_BOUND_COLUMN.format(member='w.member_id')} "
        f"FROM wallet w WHERE w.member_id = (SELECT id FROM member WHERE {kind} = ?) FOR UPDATE"
    )
    for kind in ("card_no", "phone")
}


def store_for(client: Client, store_code: str) -> int:
    """The store a request acts in, within the client's scope."""
    if client.store_id is not None:
        if store_code != client.store_code:
            raise StoreOutOfScope(details={"store_code": client.store_code})
        return client.store_id
    found = _STORE_BY_CODE.one(hotpath.cursor(), (store_code,))
    store_id = None if found is None else found[0]
    if store_id is None:
        raise NotFound(f"门店 {store_code} 不存在", code="store_not_found")
    return int(store_id)


def find_member(identifier: dict[str, str], *, consume_code: bool) -> int:
    """The member named by exactly one of card_no, phone, pay_code; a payment consumes the code."""
    return _find_member(identifier, consume_code=consume_code)[0]


def _find_member(identifier: dict[str, str], *, consume_code: bool) -> tuple[int, bool | None]:
    """(the member, whether a referral waits for their first payment, None when not asked)."""
    given = {k: v for k, v in identifier.items() if v is not None}
    if len(given) != 1:
        raise ValidationFailed("请只提供 card_no、phone、pay_code 其中一项", code="member_identifier_required")
    ((kind, value),) = given.items()
    if kind == "pay_code":
        return (paycode.consume(value) if consume_code else paycode.member_of(value)), None
    if consume_code:  # a charge or hold: lock the wallet now, the ledger's debit finds it locked
        row = _LOCK_MEMBER_BY[kind].one(hotpath.cursor(), (value,))
        if row is None:
            raise MemberNotFound()
        member_id = int(row[0])
        ledger.prime_locked_wallet(member_id, row[1:-1])
        return member_id, bool(row[-1])
    found = _MEMBER_BY[kind].one(hotpath.cursor(), (value,))
    if found is None:
        raise MemberNotFound()
    return int(found[0]), None


def lookup(client: Client, identifier: dict[str, str]) -> dict[str, Any]:
    """What the till shows before charging: who, which card and level, what is available. Masked."""
    from ..members.cards import card_of
    from ..members.models import Member

    member_id = find_member(identifier, consume_code=False)
    member = db.session.get(Member, member_id)
    assert member is not None
    card_type = card_of(member_id)
    balance = ledger.get_balance(member_id)
    return {
        "member_id": member_id,
        "name": _mask_name(member.name),
        "phone": _mask_phone(member.phone),
        "status": member.status,
        "card": {
            "card_no": _mask_card(member.card_no),
            "level": card_type.name if card_type else "普通会员",
            "discount_percent": card_type.discount_percent if card_type else 100,
        },
        "balance": balance.as_dict(),
    }


def _mask_name(name: str) -> str:
    return "" if not name else name[0] + "*" * max(1, len(name) - 1)


def _mask_phone(phone: str | None) -> str | None:
    return None if not phone else (phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****")


def _mask_card(card_no: str) -> str:
    return "*" * max(0, len(card_no) - 4) + card_no[-4:]


# ---------------------------------------------------------------------------------------------------
# Charge and hold


_CHARGE_COLUMNS = (
    "client_id",
    "store_id",
    "member_id",
    "order_no",
    "kind",
    "status",
    "amount_fen",
    "principal_fen",
    "bonus_fen",
    "paid_fen",
    "refunded_fen",
    "entry_id",
    "created_at",
)
_INSERT_CHARGE = Sql(f"INSERT INTO till_charge ({', '.join(_CHARGE_COLUMNS)}) VALUES ({', '.join('?' * 13)})")


def charge(client: Client, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _take(client, key, body, "charge")


def hold(client: Client, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _take(client, key, body, "hold")


def _take(client: Client, key: str, body: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    store_id = store_for(client, body["store_code"])
    member_id, referral_bound = _find_member(body["member"], consume_code=True)
    operation = ledger.debit if kind == "charge" else ledger.hold
    posting = operation(
        member_id,
        body["amount_fen"],
        key=client.ledger_key(key),
        operator=client.operator,
        store_id=store_id,
        reference=body["order_no"],
    )
    if posting.replayed:
        # The ledger already holds this key's entry but no answer was stored for it: only a request that
        # reached the ledger outside the open API could do that. Refuse rather than link it twice.
        raise Conflict("该请求号已被使用", code="idempotency_conflict")
    if kind == "charge":  # a hold tells the member when it is captured
        notices.notify_after_commit(posting, title="门店消费")
    taken_principal, taken_bonus = -posting.principal_delta_fen, -posting.bonus_delta_fen
    values = {
        "client_id": client.id,
        "store_id": store_id,
        "member_id": member_id,
        "order_no": body["order_no"],
        "kind": kind,
        "status": "paid" if kind == "charge" else "held",
        "amount_fen": posting.amount_fen,
        "principal_fen": taken_principal,
        "bonus_fen": taken_bonus,
        "paid_fen": posting.amount_fen if kind == "charge" else 0,
        "refunded_fen": 0,
        "entry_id": posting.entry_id,
    }
    tx = hotpath.cursor()
    try:
        charge_id = _INSERT_CHARGE.run(tx, [*(values[c] for c in _CHARGE_COLUMNS[:-1]), tx.timestamp()]).lastrowid
    except IntegrityError as error:
        if "order_no" in str(error.orig):
            raise OrderNoTaken(details={"order_no": body["order_no"]}) from error
        raise
    if kind == "charge":
        answer_points = loyalty.on_spend(
            member_id,
            posting.amount_fen,
            payment_key=till_key(charge_id),
            store_id=store_id,
            reference=body["order_no"],
            referral_bound=referral_bound,
        )
    answer: dict[str, Any] = {
        "charge_id" if kind == "charge" else "hold_id": charge_id,
        "kind": kind,
        "status": values["status"],
        "order_no": body["order_no"],
        "store_code": body["store_code"],
        "member_id": member_id,
        "amount_fen": posting.amount_fen,
        "principal_fen": taken_principal,
        "bonus_fen": taken_bonus,
        "balance": posting.balance.as_dict(),
    }
    if kind == "hold":
        answer["charge_id"] = charge_id  # refunds of the captured amount name it as the charge
    else:
        answer["points_earned"] = answer_points
    return 201, answer


# ---------------------------------------------------------------------------------------------------
# Capture and void


def _own(client: Client, charge_id: int, not_found: type[NotFound]) -> dict[str, Any]:
    t = TillCharge.__table__
    if not 1 <= charge_id <= ledger.MAX_ENTRY_ID:
        raise not_found()
    row = db.session.execute(select(t).where(t.c.id == charge_id, t.c.client_id == client.id)).mappings().first()
    if row is None:
        raise not_found()
    return dict(row)


def capture(client: Client, key: str, hold_id: int, amount_fen: int | None) -> tuple[int, dict[str, Any]]:
    held = _own(client, hold_id, HoldNotFound)
    if held["kind"] != "hold":
        raise HoldNotFound()
    posting = ledger.capture(
        held["entry_id"],
        amount_fen,
        key=client.ledger_key(key),
        operator=client.operator,
        store_id=held["store_id"],
        reference=held["order_no"],
    )
    notices.notify_after_commit(posting, title="门店消费")
    # The capture released (principal_delta, bonus_delta) of the hold back to the buckets.
    taken_principal = held["principal_fen"] - posting.principal_delta_fen
    taken_bonus = held["bonus_fen"] - posting.bonus_delta_fen
    _settle(held["id"], "captured", posting.entry_id, posting.amount_fen)
    earned = loyalty.on_spend(
        held["member_id"],
        posting.amount_fen,
        payment_key=till_key(held["id"]),
        store_id=held["store_id"],
        reference=held["order_no"],
    )
    return 200, {
        "points_earned": earned,
        "hold_id": held["id"],
        "charge_id": held["id"],
        "status": "captured",
        "order_no": held["order_no"],
        "member_id": held["member_id"],
        "held_fen": held["amount_fen"],
        "amount_fen": posting.amount_fen,
        "principal_fen": taken_principal,
        "bonus_fen": taken_bonus,
        "released_fen": held["amount_fen"] - posting.amount_fen,
        "balance": posting.balance.as_dict(),
    }


def void(client: Client, key: str, hold_id: int) -> tuple[int, dict[str, Any]]:
    held = _own(client, hold_id, HoldNotFound)
    if held["kind"] != "hold":
        raise HoldNotFound()
    posting = ledger.void(
        held["entry_id"],
        key=client.ledger_key(key),
        operator=client.operator,
        store_id=held["store_id"],
        reference=held["order_no"],
    )
    _settle(held["id"], "voided", posting.entry_id, 0)
    return 200, {
        "hold_id": held["id"],
        "status": "voided",
        "order_no": held["order_no"],
        "member_id": held["member_id"],
        "held_fen": held["amount_fen"],
        "released_fen": posting.amount_fen,
        "balance": posting.balance.as_dict(),
    }


def _settle(charge_id: int, status: str, entry_id: int, paid_fen: int) -> None:
    t = TillCharge.__table__
    done = db.session.execute(
        update(t)
        .where(t.c.id == charge_id, t.c.status == "held")
        .values(status=status, settle_entry_id=entry_id, paid_fen=paid_fen)
    )
    if done.rowcount != 1:  # the ledger settles a hold once (UNIQUE closes_entry_id): never seen here
        raise Conflict("该冻结已处理", code="hold_already_settled")


# ---------------------------------------------------------------------------------------------------
# Refund


def refund(client: Client, key: str, charge_id: int, amount_fen: int) -> tuple[int, dict[str, Any]]:
    paid = _own(client, charge_id, ChargeNotFound)
    if paid["status"] not in ("paid", "captured"):
        what = {"held": "尚未扣款（请先确认扣款或撤销冻结）", "voided": "已撤销，没有可退的金额"}[paid["status"]]
        raise Conflict(f"该笔{what}", code="charge_not_refundable", details={"status": paid["status"]})
    payment_entry = paid["entry_id"] if paid["kind"] == "charge" else paid["settle_entry_id"]
    posting = ledger.refund(
        payment_entry,
        amount_fen,
        key=client.ledger_key(key),
        operator=client.operator,
        store_id=paid["store_id"],
        reference=paid["order_no"],
    )
    notices.notify_after_commit(posting, title="门店退款")
    values = {
        "charge_id": paid["id"],
        "amount_fen": posting.amount_fen,
        "principal_fen": posting.principal_delta_fen,
        "bonus_fen": posting.bonus_delta_fen,
        "entry_id": posting.entry_id,
        "created_at": utcnow(),
    }
    refund_id = db.session.execute(insert(TillRefund.__table__).values(**values)).inserted_primary_key[0]
    t = TillCharge.__table__
    db.session.execute(update(t).where(t.c.id == paid["id"]).values(refunded_fen=t.c.refunded_fen + posting.amount_fen))
    refunded = db.session.scalar(select(t.c.refunded_fen).where(t.c.id == paid["id"]))  # ours, row locked
    back = loyalty.refund_points(
        paid["member_id"],
        till_key(paid["id"]),
        refund_key=f"refund:{refund_id}",
        refund_fen=posting.amount_fen,
        payment_fen=paid["paid_fen"],
    )
    return 201, {
        "refund_id": refund_id,
        "charge_id": paid["id"],
        "order_no": paid["order_no"],
        "member_id": paid["member_id"],
        "amount_fen": posting.amount_fen,
        "principal_fen": posting.principal_delta_fen,
        "bonus_fen": posting.bonus_delta_fen,
        "refunded_fen": int(refunded),
        "refundable_fen": paid["paid_fen"] - int(refunded),
        "points_taken_back": back.voided + back.taken,
        "balance": posting.balance.as_dict(),
    }


# ---------------------------------------------------------------------------------------------------
# Query


def charges_by_order(client: Client, order_no: str) -> dict[str, Any]:
    t, r = TillCharge.__table__, TillRefund.__table__
    rows = db.session.execute(
        select(t).where(t.c.client_id == client.id, t.c.order_no == order_no).order_by(t.c.id)
    ).mappings()
    items = []
    for row in rows:
        refunds = db.session.execute(select(r).where(r.c.charge_id == row["id"]).order_by(r.c.id)).mappings()
        store_code = db.session.scalar(select(Store.code).where(Store.id == row["store_id"]))
        items.append(
            {
                "charge_id": row["id"],
                "kind": row["kind"],
                "status": row["status"],
                "order_no": row["order_no"],
                "store_code": store_code,
                "member_id": row["member_id"],
                "amount_fen": row["amount_fen"],
                "principal_fen": row["principal_fen"],
                "bonus_fen": row["bonus_fen"],
                "paid_fen": row["paid_fen"],
                "refunded_fen": row["refunded_fen"],
                "refundable_fen": row["paid_fen"] - row["refunded_fen"],
                "created_at": row["created_at"].isoformat(timespec="seconds") + "Z",
                "refunds": [
                    {
                        "refund_id": f["id"],
                        "amount_fen": f["amount_fen"],
                        "principal_fen": f["principal_fen"],
                        "bonus_fen": f["bonus_fen"],
                        "created_at": f["created_at"].isoformat(timespec="seconds") + "Z",
                    }
                    for f in refunds
                ],
            }
        )
    return {"items": items}
