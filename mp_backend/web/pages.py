"""Pages for people: the landing page, the member centre (static H5, no build step) and the merchant console."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, redirect, request

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify(
        {
            "service": "member stored-value backend",
            "member_centre": f"{current_app.config['PUBLIC_BASE_URL']}/member",
            "openapi": f"{current_app.config['PUBLIC_BASE_URL']}/openapi.json",
            "sandbox": bool(current_app.config["WECHAT_SANDBOX"]),
        }
    )


@bp.get("/member")
def member_centre():  # type: ignore[no-untyped-def]
    """The member centre H5 page; it logs in through official-account OAuth when it has no session.
    An invitation code (``?ref=``) is passed on to the page."""
    code = request.args.get("ref", "")
    if code and len(code) <= 16 and code.isascii() and code.isalnum():
        return redirect(f"/static/member.html?ref={code}")
    return redirect("/static/member.html")


@bp.get("/r")
@bp.get("/r/<code>")
def recharge_home(code: str | None = None):  # type: ignore[no-untyped-def]
    """The recharge page: every active rule (/r) or one rule's short link (/r/<code>); ``?src=`` and
    ``?store=`` are read by the page and kept on the order. The page logs in through OAuth itself."""
    page = Path(current_app.static_folder or "", "recharge.html").read_text(encoding="utf-8")
    return Response(page, mimetype="text/html")


@bp.get("/admin")
def console_redirect():  # type: ignore[no-untyped-def]
    return redirect("/admin/")


@bp.get("/admin/")
def console():  # type: ignore[no-untyped-def]
    """The merchant console (static HTML and small scripts over /admin/api; login first). Its pages are
    hash routes (/admin/#/members/12), so a reload or a shared link opens the same page."""
    page = Path(current_app.static_folder or "", "admin", "index.html").read_text(encoding="utf-8")
    response = Response(page, mimetype="text/html")
    # The console is never framed (clickjacking on the money dialogs) and loads nothing from elsewhere.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response
