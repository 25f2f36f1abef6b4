"""What the Slack stand-in accepts: request parsing and the limits of Slack's that matter.

Text over 40,000 characters is ``msg_too_long`` and more than 50 blocks (or a block without a
``type``) ``invalid_blocks``; form bodies carry blocks and attachments as JSON text. Errors are
raised as :class:`ApiError` and answered ``{"ok": false, "error": code}`` (HTTP 200, as Slack does,
unless ``status`` says otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_ATTACHMENTS = 100
# Incoming webhooks answer errors as text with these statuses; anything else is a 400.
WEBHOOK_ERROR_STATUS = {
    "no_service": 404,
    "channel_not_found": 404,
    "team_disabled": 404,
    "channel_is_archived": 410,
    "action_prohibited": 403,
    "invalid_token": 403,
    "posting_to_general_channel_denied": 403,
}

Content = tuple[str | None, list[Any] | None, list[Any] | None]


class ApiError(Exception):
    """A Slack error code to answer with (``{"ok": false, "error": code}``)."""

    def __init__(self, code: str, status: int = 200) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


def json_array(value: Any, format_error: str) -> list[Any] | None:
    """Accept a list, or a JSON string of one (form bodies carry blocks as JSON text)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(format_error) from None
    if not isinstance(value, list):
        raise ApiError(format_error)
    return value


def message_content(params: Mapping[str, Any], *, require: bool) -> Content:
    """Validate text/blocks/attachments the way Slack does for the limits that matter.

    Returns:
        ``(text, blocks, attachments)``, each None when not given.
    """
    text = params.get("text")
    text = None if text is None else str(text)
    blocks = json_array(params.get("blocks"), "invalid_blocks_format")
    attachments = json_array(params.get("attachments"), "invalid_attachments")
    if require and not text and not blocks and not attachments:
        raise ApiError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if blocks is not None and (
        len(blocks) > MAX_BLOCKS or not all(isinstance(b, dict) and "type" in b for b in blocks)
    ):
        raise ApiError("invalid_blocks")
    if attachments is not None and len(attachments) > MAX_ATTACHMENTS:
        raise ApiError("too_many_attachments")
    return text, blocks, attachments


def parse_api_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Merge query-string and body parameters; a malformed body becomes ``_body_error``."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return {**params, "_body_error": "invalid_json"}
        if not isinstance(data, dict):
            return {**params, "_body_error": "json_not_object"}
        params.update(data)
    else:
        try:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            return {**params, "_body_error": "invalid_form_data"}
    return params


def parse_webhook_body(body: bytes, content_type: str) -> dict[str, Any]:
    """Decode a webhook payload: a JSON body, or a form with a ``payload`` field (legacy)."""
    try:
        raw: str | bytes = body
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            raw = dict(parse_qsl(body.decode("utf-8"))).get("payload", "")
        data = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        raise ApiError("invalid_payload") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_payload")
    return data
