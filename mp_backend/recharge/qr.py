"""QR codes of recharge links (PNG through pypng, SVG), made with ``qrcode``."""

from __future__ import annotations

import io
import re
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.pure
import qrcode.image.svg


def link_with(base: str, **query: str | None) -> str:
    params = {k: v for k, v in query.items() if v}
    return f"{base}?{urlencode(params)}" if params else base


def qr_image(data: str, fmt: str, *, size: int, margin: int) -> bytes:
    factory = qrcode.image.pure.PyPNGImage if fmt == "png" else qrcode.image.svg.SvgPathImage
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=size, border=margin)
    qr.add_data(data)
    qr.make(fit=True)
    image = qr.make_image(image_factory=factory)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def download_name(name: str, fmt: str) -> tuple[str, str]:
    """(ASCII fallback, RFC 5987 ``filename*``) for Content-Disposition, from a rule's (Chinese) name."""
    cleaned = re.sub(r'[\\/:*?"<>|\r\n\t]+', "_", name).strip() or "qrcode"
    ascii_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cleaned).strip("_") or "qrcode"
    return f"{ascii_name}.{fmt}", f"UTF-8''{quote(cleaned + '.' + fmt)}"
