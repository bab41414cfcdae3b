"""Mini-program codes (``wxacode.getUnlimited``) through wechatpy, each made once and then kept.

WeChat answers ``wxa/getwxacodeunlimit`` with the image itself (``image/jpeg``; a PNG with
``is_hyaline``) or, when it refuses, with ``{"errcode", "errmsg"}`` JSON. wechatpy hands back the raw
``requests.Response`` for an answer that is not JSON and raises ``WeChatClientException`` for an
errcode, which the mini program's client turns into one token refresh and retry (40001 / 42001) or
leaves to ``translate_errors``: 41030 (the page) is ``wxacode_page_invalid``, 45009 / 45011
``wechat_rate_limited``, the rest ``wechat_unavailable``.

A code for the same app, page, width and scene never changes (WeChat: "永久有效"), and WeChat rations
the calls (5,000 a minute per app), so a made image is kept for ``CACHE_SECONDS`` in the shared image
cache (Redis when configured). A refusal is never kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import requests
from wechatpy.exceptions import WeChatClientException

from .clients import translate_errors, wxa_client
from .errors import UpstreamError, WxaCodePageInvalid
from .state import current_state

log = logging.getLogger(__name__)

# WeChat's rules for the scene: 1-32 visible characters of these (no %, so nothing URL-encoded).
SCENE_PATTERN = re.compile(r"^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}$")
MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 280, 1280, 430
CACHE_SECONDS = 30 * 24 * 3600
PAGE_ERRCODES = frozenset({41030})
IMAGE_KINDS = ((b"\x89PNG\r\n\x1a\n", "image/png", "png"), (b"\xff\xd8\xff", "image/jpeg", "jpg"))


@dataclass(frozen=True)
class WxaCode:
    image: bytes
    mimetype: str  # image/jpeg as WeChat draws it; image/png from the sandbox's fake
    extension: str  # "jpg" or "png", for a download's file name


def image_kind(image: bytes) -> tuple[str, str] | None:
    """(mimetype, extension) of a PNG or JPEG by its first bytes; None for anything else."""
    for magic, mimetype, extension in IMAGE_KINDS:
        if image.startswith(magic):
            return mimetype, extension
    return None


def unlimited_code(scene: str, *, page: str | None, width: int = DEFAULT_WIDTH) -> WxaCode:
    """The mini-program code that opens ``page`` (the mini program's home page when None) with ``scene``.

    Raises ``ValueError`` for a scene or width WeChat would refuse (callers check them first, so
    that a mistake of ours never spends a call), ``WxaCodePageInvalid`` (502) when WeChat does not
    know the page, ``WeChatRateLimited`` (429) and ``UpstreamError`` (502) as every WeChat call does.
    """
    if not SCENE_PATTERN.match(scene):
        raise ValueError(f"not a scene WeChat accepts: {scene!r}")
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"width {width} is outside {MIN_WIDTH}-{MAX_WIDTH}")
    client = wxa_client()
    cache = current_state().image_cache
    made_of = f"{client.api_root}\n{client.appid}\n{page}\n{width}\n{scene}"
    key = "wxacode:" + hashlib.sha256(made_of.encode()).hexdigest()
    kept = cache.get(key)
    kind = image_kind(kept) if kept else None
    if kept and kind:
        return WxaCode(kept, *kind)
    with translate_errors("getwxacodeunlimit"):
        try:
            answer = client.wxa.get_wxa_code_unlimited(scene, width=width, page=page)
        except WeChatClientException as error:
            if error.errcode in PAGE_ERRCODES:
                log.warning("getwxacodeunlimit: WeChat does not know the page %r (%s)", page, error.errmsg)
                raise WxaCodePageInvalid() from error
            raise
    image = answer.content if isinstance(answer, requests.Response) else b""
    kind = image_kind(image)
    if kind is None:
        # JSON without an errcode, or bytes that are no image: nothing to hand a merchant to print.
        log.warning("getwxacodeunlimit: not an image (%r)", answer if not image else image[:32])
        raise UpstreamError()
    cache.put(key, image, CACHE_SECONDS)
    return WxaCode(image, *kind)
