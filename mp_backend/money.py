"""Fen <-> yuan, at the edges only. Everything inside is integer fen."""

from __future__ import annotations

import re
import unicodedata

_YUAN = re.compile(r"^(-)?([0-9]{1,12})(?:\.([0-9]{1,2}))?$")  # ASCII digits: "\d" takes any script's


def yuan(fen: int) -> str:
    """12300 -> '123.00'; always two decimals."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError("fen must be an int")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_yuan(text: str) -> int:
    """'12.3' -> 1230. Refuses more than two decimals, exponents, spaces inside and floats."""
    # Full-width digits and point (a Chinese keyboard's "１００．５") fold to ASCII; other scripts' do not.
    match = _YUAN.match(unicodedata.normalize("NFKC", text).strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not a yuan amount: {text!r}")
    sign, whole, cents = match.groups()
    fen = int(whole) * 100 + int((cents or "0").ljust(2, "0"))
    return -fen if sign else fen
