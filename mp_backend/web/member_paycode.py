"""The member's payment code, on the ``member`` blueprint: GET /api/me/pay-code."""

from __future__ import annotations

from ..recharge.qr import qr_image
from ..spending import paycode
from .auth import current_member
from .member import blp
from .open_schemas import PayCodeOut, PayCodeQuery
from .schemas import Error


@blp.route("/me/pay-code", methods=["GET"])
@blp.arguments(PayCodeQuery, location="query")
@blp.response(200, PayCodeOut, headers={"Cache-Control": {"schema": {"type": "string"}}})
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def pay_code(query: dict) -> tuple[dict, int, dict]:
    """A fresh payment code for the till to scan (QR and digits): single use, about a minute; replaces the last one.

    ``?qr=svg`` adds the QR code of the same code as an SVG image (``qr_svg``), rendered here so the
    member page needs no QR library and the image can never show another code than the digits."""
    issued = paycode.issue(current_member().id)
    body = {"code": issued.code, "expires_in": issued.expires_in}
    if query.get("qr") == "svg":
        body["qr_svg"] = qr_image(issued.code, "svg", size=10, margin=4).decode()
    return body, 200, {"Cache-Control": "no-store"}
