"""Mini-program codes of recharge rules: the scene a code carries, and the code itself.

A mini-program code (``wxacode.getUnlimited``) opens one page of the mini program
(``WECHAT_WXA_RECHARGE_PAGE``) with ``scene`` in its query; the scene is all it can carry (32
characters at most, no ``%``). Ours names, separated by ``*`` (a character no field may contain):

    <rule code>[*<src>[*<store>]]      e.g. ``demo100``, ``demo100*poster7``, ``demo100**sh01``

Empty fields at the end are left out; an empty rule code is the recharge home (every active rule):
``*poster7``, or ``*`` alone. The mini program reads ``decodeURIComponent(options.scene)`` and asks
``GET /api/rules?scene=<scene>``, which answers the rules and the scene's fields; it sends ``src``
and ``store`` along with ``POST /api/recharges``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import current_app

from ..errors import ValidationFailed
from ..wechat import wxacode
from . import service

SEPARATOR = "*"
MAX_SCENE_LENGTH = 32
DEFAULT_PAGE = "pages/recharge/index"
# The fields' own alphabets: a rule or store code, and a source tag (as the short links take them).
CODE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
SRC_PATTERN = r"^[A-Za-z0-9_.:-]{1,32}$"


class SceneTooLong(ValidationFailed):
    code = "scene_too_long"
    message = f"小程序码参数最多 {MAX_SCENE_LENGTH} 个字符（活动码、来源标记和门店编码合计），请缩短来源标记"


class InvalidScene(ValidationFailed):
    code, message = "invalid_scene", "无法识别的小程序码参数"


@dataclass(frozen=True)
class Scene:
    code: str | None = None  # the rule's short code; None: the recharge home
    src: str | None = None
    store: str | None = None

    def text(self) -> str:
        fields = [self.code or "", self.src or "", self.store or ""]
        while fields and not fields[-1]:
            fields.pop()
        return SEPARATOR.join(fields) or SEPARATOR

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "src": self.src, "store": self.store}


def parse_scene(text: str) -> Scene:
    """The fields of a scene made by ``Scene.text``; anything else is 400 ``invalid_scene``."""
    fields = text.split(SEPARATOR)
    if not 1 <= len(text) <= MAX_SCENE_LENGTH or len(fields) > 3:
        raise InvalidScene()
    code, src, store = (fields + ["", ""])[:3]
    for value, pattern in ((code, CODE_PATTERN), (src, SRC_PATTERN), (store, CODE_PATTERN)):
        if value and not re.match(pattern, value):
            raise InvalidScene()
    return Scene(code or None, src or None, store or None)


def recharge_page() -> str:
    return str(current_app.config.get("WECHAT_WXA_RECHARGE_PAGE") or DEFAULT_PAGE)


@dataclass(frozen=True)
class RuleCode:
    name: str  # for the download's file name
    scene: str
    code: wxacode.WxaCode


def rule_code(
    staff_id: int,
    rule_id: int | None,
    *,
    src: str | None = None,
    store: str | None = None,
    width: int = wxacode.DEFAULT_WIDTH,
) -> RuleCode:
    """The mini-program code of an active rule (``rule_id`` None: the recharge home) with a source tag
    and store, for a staff member within their scope (``service.code_target``)."""
    target = service.code_target(staff_id, rule_id, store, active_only=True)
    scene = Scene(target.code, src, store).text()
    if len(scene) > MAX_SCENE_LENGTH:
        raise SceneTooLong(details={"scene_length": len(scene), "max_length": MAX_SCENE_LENGTH})
    return RuleCode(target.name, scene, wxacode.unlimited_code(scene, page=recharge_page(), width=width))
