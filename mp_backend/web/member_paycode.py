"""The member's payment code, on the ``member`` blueprint: GET /api/me/pay-code."""

from __future__ import annotations

from ..spending import paycode
from .auth import current_member
from .member import blp
from .open_schemas import PayCodeOut
from .schemas import Error


@blp.route("/me/pay-code", methods=["GET"])
@blp.response(200, PayCodeOut, headers={"Cache-Control": {"schema": {"type": "string"}}})
@blp.alt_response(401, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def pay_code() -> tuple[dict, int, dict]:
    """A fresh payment code for the till to scan (QR and digits): single use, about a minute; replaces the last one."""
    issued = paycode.issue(current_member().id)
    return {"code": issued.code, "expires_in": issued.expires_in}, 200, {"Cache-Control": "no-store"}
