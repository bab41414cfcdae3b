"""The open API for the merchant's till and shop system: /open/api/v1/... (DESIGN.md section 5).

Every request is signed (X-Client-Id, X-Timestamp, X-Nonce, X-Signature), checked before anything
else, even before the body is validated. Mutating calls carry an ``Idempotency-Key``: the same key
with the same body answers the first answer again (header ``Idempotent-Replayed: true``) and moves no
money twice; with a different body it is 409 ``idempotency_conflict``. A client the merchant
deactivated (``flask clients deactivate``) is refused with 403 ``client_deactivated``.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request

from ..clients import service as clients
from ..spending import till
from .open_schemas import (
    CaptureIn,
    CaptureOut,
    ChargeList,
    ChargeOut,
    ChargesQuery,
    HoldOut,
    MemberLookupOut,
    MemberQuery,
    RefundIn,
    RefundOut,
    TakeIn,
    VoidOut,
    take_in_fast,
)
from .schemas import Blueprint, Error

blp = Blueprint(
    "open",
    __name__,
    url_prefix="/open/api/v1",
    description="The merchant's till and shop system: signed requests (README, “Open API for the till and shop”)",
)

SIGNED = [{"openApiSignature": []}]
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": True,
    "description": "1-64 visible ASCII characters, one per operation; a retry sends the same key and body",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
MUTATING = {"security": SIGNED, "parameters": [IDEMPOTENCY_KEY]}


def _path_with_query() -> str:
    # What the client sent, before any decoding: gunicorn and Werkzeug's server keep it as RAW_URI.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and raw.startswith("/"):
        return str(raw)
    query = request.query_string.decode("latin-1")
    return request.script_root + request.path + (f"?{query}" if query else "")


@blp.before_request
def _verify_signature() -> None:
    # A mutating request's nonce goes into its operation's transaction (one commit): _idempotent takes
    # it, and _burn_unused_nonce records it when the request ends before that (a body refused, say).
    deferred = request.method == "POST" and clients.nonce_in_transaction()
    g.open_client = clients.verify_request(
        method=request.method,
        path_with_query=_path_with_query(),
        headers=request.headers,
        body=request.get_data(cache=True),
        remote_addr=request.remote_addr,
        remember_nonce=not deferred,
    )
    g.open_nonce = request.headers["X-Nonce"] if deferred else None


@blp.after_request
def _burn_unused_nonce(response: Response) -> Response:
    nonce = g.pop("open_nonce", None)
    if nonce is None:
        return response
    try:
        clients.remember_nonce(_client(), nonce, request.remote_addr)
    except clients.SignatureRejected as error:  # a racing copy with the same nonce came first
        refused = jsonify(error.to_dict())
        refused.status_code = error.status
        return refused
    return response


def _client() -> clients.Client:
    return g.open_client  # type: ignore[no-any-return]


def _idempotent(body: Any, operation) -> Response:  # type: ignore[no-untyped-def]
    client = _client()
    key = clients.check_idempotency_key(request.headers.get("Idempotency-Key"))
    fingerprint = clients.request_hash(request.method, request.path, body)
    nonce = g.pop("open_nonce", None)
    answer = clients.run_idempotent(client, key, fingerprint, lambda: operation(client, key), nonce=nonce)
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    # The answer as stored, sent as it is (a replay sends the same bytes): the route's schema documents
    # it, and the operation's body has exactly its fields (tests/till/test_answers_match_schemas.py).
    return Response(answer.text, answer.status, headers, mimetype="application/json")


@blp.route("/members", methods=["GET"])
@blp.arguments(MemberQuery, location="query")
@blp.response(200, MemberLookupOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=SIGNED)
def lookup_member(query: dict) -> dict:
    """Find a member by ``card_no``, ``phone`` or ``pay_code`` (exactly one; a payment code is not used up)."""
    return till.lookup(_client(), query)


@blp.route("/charges", methods=["POST"])
@blp.arguments(TakeIn, fast=take_in_fast)
@blp.response(201, ChargeOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(**MUTATING)
def create_charge(body: dict) -> Any:
    """Charge the member's balance (the till's price, no discount applied here); the split by bucket."""
    return _idempotent(body, lambda client, key: till.charge(client, key, body))


@blp.route("/charges", methods=["GET"])
@blp.arguments(ChargesQuery, location="query")
@blp.response(200, ChargeList)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.doc(security=SIGNED)
def charges_by_order(query: dict) -> dict:
    """This client's charges and holds with the merchant's ``order_no``, with their refunds."""
    return till.charges_by_order(_client(), query["order_no"])


@blp.route("/holds", methods=["POST"])
@blp.arguments(TakeIn, fast=take_in_fast)
@blp.response(201, HoldOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(**MUTATING)
def create_hold(body: dict) -> Any:
    """Freeze an amount of the member's balance, to capture or void later."""
    return _idempotent(body, lambda client, key: till.hold(client, key, body))


@blp.route("/holds/<big_id:hold_id>/capture", methods=["POST"])
@blp.arguments(CaptureIn)
@blp.response(200, CaptureOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(**MUTATING)
def capture_hold(body: dict, hold_id: int) -> Any:
    """Take all (``{}``) or part (``{"amount_fen": ...}``) of a hold; the rest goes back to the member."""
    return _idempotent(body, lambda client, key: till.capture(client, key, hold_id, body.get("amount_fen")))


@blp.route("/holds/<big_id:hold_id>/void", methods=["POST"])
@blp.response(200, VoidOut)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(**MUTATING)
def void_hold(hold_id: int) -> Any:
    """Release a hold in full."""
    return _idempotent(None, lambda client, key: till.void(client, key, hold_id))


@blp.route("/refunds", methods=["POST"])
@blp.arguments(RefundIn)
@blp.response(201, RefundOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(**MUTATING)
def create_refund(body: dict) -> Any:
    """Refund part or all of a charge (or a captured hold) to the buckets it took; never above what was paid."""
    return _idempotent(body, lambda client, key: till.refund(client, key, body["charge_id"], body["amount_fen"]))
