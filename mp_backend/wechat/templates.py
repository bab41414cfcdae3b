"""Official-account template messages with ``client_msg_id`` (wechatpy's ``send_template`` has no
such parameter: the same endpoint, through the configured client, with the field added)."""

from __future__ import annotations

from typing import Any

from .clients import mp_client


def send_template(
    openid: str, template_id: str, data: dict[str, Any], *, url: str | None = None, client_msg_id: str | None = None
) -> Any:
    """Raises wechatpy's ``WeChatClientException`` with WeChat's errcode; the token is refreshed once
    on 40001/42001 by the client."""
    body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
    if url:
        body["url"] = url
    if client_msg_id:
        body["client_msg_id"] = client_msg_id
    return mp_client().message._post("message/template/send", data=body)


def send_subscribe(openid: str, template_id: str, data: dict[str, Any], *, page: str | None = None) -> Any:
    """A mini-program subscribe message (``subscribeMessage.send``): WeChat lets one through per consent
    the member gave, and answers 43101 when none is left."""
    from .clients import wxa_client

    return wxa_client().wxa.send_subscribe_message(openid, template_id, data, page=page)
