"""The official account's menu: ``wechat_menu.json`` with our public origin filled in, pushed to WeChat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .clients import mp_client, translate_errors
from .state import current_state

PLACEHOLDER = "{PUBLIC_BASE_URL}"


def _substitute(node: Any, public_base_url: str) -> Any:
    if isinstance(node, str):
        return node.replace(PLACEHOLDER, public_base_url)
    if isinstance(node, list):
        return [_substitute(item, public_base_url) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, public_base_url) for key, value in node.items()}
    return node


def load_menu(path: str | Path, public_base_url: str) -> dict[str, Any]:
    """The menu file with every ``{PUBLIC_BASE_URL}`` replaced (the file itself stays portable)."""
    menu = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(menu, dict) or not isinstance(menu.get("button"), list):
        raise ValueError(f"{path}: a menu is an object with a 'button' list")
    return _substitute(menu, public_base_url.rstrip("/"))  # type: ignore[no-any-return]


def push_menu(path: str | Path) -> dict[str, Any]:
    """Replace the official account's menu with the one in ``path``; returns what was sent.

    Needs an app context. WeChat refusals become AppErrors (``translate_errors``).
    """
    menu = load_menu(path, current_state().settings.public_base_url)
    with translate_errors("menu/create"):
        mp_client().menu.create(menu)
    return menu
