"""WeChat's member card (卡券 会员卡) through wechatpy's card API (``client.card``), official account.

Errors stay wechatpy's ``WeChatClientException`` (the callers record WeChat's errcode in the card's
notification log and decide whether to retry); ``to_app_error`` turns one into an AppError.
"""

from __future__ import annotations

from typing import Any

from .clients import mp_client

# The activation form's fields, as WeChat names them in ``user_info.common_field_list``.
FORM_PHONE = "USER_FORM_INFO_FLAG_MOBILE"
FORM_NAME = "USER_FORM_INFO_FLAG_NAME"
FORM_BIRTHDAY = "USER_FORM_INFO_FLAG_BIRTHDAY"


def membercard_user_info(card_id: str, code: str) -> dict[str, Any]:
    """``card/membercard/userinfo/get``: the holder's openid, the activation form they submitted, and
    what the card shows now (``membership_number``, ``bonus``, ``balance``)."""
    result = mp_client().card.get_membercard_user_info(card_id, code)
    return result if isinstance(result, dict) else {}


def form_fields(user_info: dict[str, Any]) -> dict[str, str]:
    """The submitted form as ``{field name: value}``; WeChat sends the birthday as ``YYYY-M-D`` or
    ``YYYY-MM-DD``, normalised here to the ISO form."""
    fields: dict[str, str] = {}
    common = (user_info.get("user_info") or {}).get("common_field_list") or []
    for field in common if isinstance(common, list) else []:
        if isinstance(field, dict) and isinstance(field.get("name"), str):
            fields[field["name"]] = str(field.get("value") or "")
    birthday = fields.get(FORM_BIRTHDAY, "")
    parts = birthday.split("-")
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        fields[FORM_BIRTHDAY] = f"{int(parts[0]):04d}-{int(parts[1]):02d}-{int(parts[2]):02d}"
    return fields


def activate_membercard(
    card_id: str, code: str, membership_number: str, *, balance_fen: int, points: int
) -> dict[str, Any]:
    """``card/membercard/activate`` with the membership number and the opening balance (fen) and points."""
    result = mp_client().card.activate_membercard(
        membership_number,
        code,
        card_id=card_id,
        init_balance=balance_fen,
        init_bonus=points,
        init_bonus_record="开卡同步积分",
    )
    return result if isinstance(result, dict) else {}


def update_membercard(card_id: str, code: str, *, balance_fen: int, points: int, **extra: str) -> dict[str, Any]:
    """``card/membercard/updateuser`` with the current totals (never deltas: a repeated or late push
    then cannot add twice), so the card shows exactly what the ledger says. ``extra``: custom fields."""
    result = mp_client().card.update_membercard(code, card_id, balance=balance_fen, bonus=points, **extra)
    return result if isinstance(result, dict) else {}
