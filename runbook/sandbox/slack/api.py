"""The Slack stand-in's answers: the Web API methods runbook uses and incoming webhooks.

``auth.test``, ``chat.postMessage``, ``chat.update`` and ``conversations.list``, with the token
from ``Authorization: Bearer`` or a ``token`` parameter. A ``thread_ts`` that names no message in
the channel is refused with ``thread_not_found`` -- stricter than Slack, on purpose, so a lost
parent is caught in tests. Webhooks answer ``ok`` / ``invalid_payload`` / ``no_service`` as text.

Each request is first counted and matched against the fault in force (:mod:`.faults`); a fault
answers instead (:meth:`SlackApi.fault_reply`), except ``slow``, which the caller waits out before
the normal answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from runbook.sandbox.slack.faults import Fault, Faults
from runbook.sandbox.slack.limits import (
    WEBHOOK_ERROR_STATUS,
    ApiError,
    message_content,
    parse_webhook_body,
)
from runbook.sandbox.slack.state import MessageStore, Record
from runbook.sandbox.slack.workspace import TEAM_ID, Workspace, token_fingerprint

BOT_USER_ID = "U0RUNBOOK"
BOT_ID = "B0RUNBOOK"
APP_ID = "A0RUNBOOK"
API_METHODS = ("auth.test", "chat.postMessage", "chat.update", "conversations.list")
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"


class Reply:
    """One HTTP answer; ``drop`` means close the connection without answering."""

    __slots__ = ("status", "body", "content_type", "headers", "drop")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        content_type: str = JSON_TYPE,
        headers: Mapping[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.drop = drop

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(data).encode(), headers=headers)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, text.encode(), TEXT_TYPE, headers)


def message_view(record: Record) -> Record:
    """The ``message`` object Slack returns for a bot post."""
    message: Record = {
        "user": BOT_USER_ID,
        "type": "message",
        "ts": record["ts"],
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": record["text"],
        "team": TEAM_ID,
        "bot_profile": {
            "id": BOT_ID,
            "app_id": APP_ID,
            "name": "runbook",
            "deleted": False,
            "team_id": TEAM_ID,
        },
    }
    if record["blocks"] is not None:
        message["blocks"] = record["blocks"]
    if record["attachments"] is not None:
        message["attachments"] = record["attachments"]
    if record["thread_ts"]:
        message["thread_ts"] = record["thread_ts"]
        message["parent_user_id"] = BOT_USER_ID
    if record["edited"]:
        message["edited"] = {"user": BOT_USER_ID, "ts": record["edited_ts"]}
    return message


class SlackApi:
    """Answers API and webhook requests from the workspace, the messages and the faults."""

    def __init__(self, workspace: Workspace, store: MessageStore, faults: Faults) -> None:
        self.workspace = workspace
        self.store = store
        self.faults = faults

    def finish(self, entry: dict[str, Any], reply: Reply, error: str | None = None) -> Reply:
        self.faults.finish(entry, None if reply.drop else reply.status, error)
        return reply

    def fault_reply(self, entry: dict[str, Any], fault: Fault | None, *, webhook: bool) -> Reply | None:
        """The answer a fault gives instead of the normal one; None when there is none (or ``slow``)."""
        kind = fault["fault"] if fault else None
        if fault is None or kind == "slow":
            return None
        if kind == "down":
            return self.finish(entry, Reply(drop=True), "down")
        retry = {"Retry-After": str(fault.get("retry_after"))}
        if webhook:
            code = fault.get("error", "")
            replies = {
                "status_500": ("internal_error", Reply.text("internal_error", fault.get("status", 500))),
                "rate_limited": ("rate_limited", Reply.text("rate_limited", 429, retry)),
                "error": (code, Reply.text(code, WEBHOOK_ERROR_STATUS.get(code, 400))),
            }
        else:
            replies = {
                "status_500": (
                    "fatal_error",
                    Reply.json({"ok": False, "error": "fatal_error"}, fault.get("status", 500)),
                ),
                "rate_limited": (
                    "ratelimited",
                    Reply.json({"ok": False, "error": "ratelimited"}, 429, retry),
                ),
                "error": (fault.get("error"), Reply.json({"ok": False, "error": fault.get("error")})),
            }
        error, reply = replies[str(kind)]
        return self.finish(entry, reply, error)

    def call(
        self, entry: dict[str, Any], method: str, params: dict[str, Any], auth_header: str | None
    ) -> Reply:
        """The normal answer to a Web API request."""
        try:
            if isinstance(params.get("_body_error"), str):
                raise ApiError(params["_body_error"])
            if method not in API_METHODS:
                raise ApiError("unknown_method", 404)
            token = self._authenticate(params, auth_header)
            data = getattr(self, "_api_" + method.replace(".", "_"))(params, token)
        except ApiError as err:
            return self.finish(entry, Reply.json({"ok": False, "error": err.code}, err.status), err.code)
        return self.finish(entry, Reply.json({"ok": True, **data}))

    def webhook(self, entry: dict[str, Any], path: str, body: bytes, content_type: str) -> Reply:
        """The normal answer to an incoming-webhook post (``path`` is a known webhook)."""
        name, channel_id = self.workspace.webhooks[path]
        try:
            payload = parse_webhook_body(body, content_type)
            text, blocks, attachments = message_content(payload, require=True)
            thread_ts = self.store.thread_root(channel_id, payload.get("thread_ts"))
        except ApiError as err:
            status = 404 if err.code == "thread_not_found" else 400
            reply = Reply.text(err.code, WEBHOOK_ERROR_STATUS.get(err.code, status))
            return self.finish(entry, reply, err.code)
        self._post(channel_id, thread_ts, (text, blocks, attachments), via="webhook", webhook=name)
        return self.finish(entry, Reply.text("ok"))

    def _authenticate(self, params: Mapping[str, Any], auth_header: str | None) -> str:
        token: str | None = None
        if auth_header and auth_header.lower().startswith("bearer "):
            token = auth_header[7:].strip()
        elif params.get("token"):
            token = str(params["token"])
        if not token:
            raise ApiError("not_authed")
        if token not in self.workspace.tokens:
            raise ApiError("invalid_auth")
        return token

    def _post(
        self,
        channel_id: str,
        thread_ts: str | None,
        content: tuple[str | None, list[Any] | None, list[Any] | None],
        *,
        via: str,
        token: str | None = None,
        webhook: str | None = None,
    ) -> Record:
        text, blocks, attachments = content
        fields: Record = {
            "thread_ts": thread_ts,
            "text": text or "",
            "blocks": blocks,
            "attachments": attachments,
            "via": via,
            "token": None if token is None else self.workspace.tokens[token],
            "token_fingerprint": None if token is None else token_fingerprint(token),
            "webhook": webhook,
            "received_at": time.time(),
            "edited": 0,
            "edited_ts": None,
        }
        return self.store.post(channel_id, self.workspace.channels[channel_id], fields)

    def _channel(self, params: Mapping[str, Any]) -> str:
        channel_id = self.workspace.resolve_channel(params.get("channel"))
        if channel_id is None:
            raise ApiError("channel_not_found")
        return channel_id

    # Web API methods: each returns the answer's fields besides "ok", or raises ApiError.

    def _api_auth_test(self, params: Mapping[str, Any], token: str) -> Record:
        return {
            "url": "https://runbook-sandbox.slack.com/",
            "team": "Runbook Sandbox",
            "user": "runbook",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_conversations_list(self, params: Mapping[str, Any], token: str) -> Record:
        channels = [
            {
                "id": cid,
                "name": name,
                "name_normalized": name,
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_private": False,
                "is_archived": False,
                "is_general": name == "general",
                "is_member": True,
                "created": 1700000000,
                "num_members": 1,
            }
            for cid, name in self.workspace.channels.items()
        ]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def _api_chat_postMessage(self, params: Mapping[str, Any], token: str) -> Record:  # noqa: N802
        channel_id = self._channel(params)
        content = message_content(params, require=True)
        thread_ts = self.store.thread_root(channel_id, params.get("thread_ts"))
        record = self._post(channel_id, thread_ts, content, via="api", token=token)
        return {"channel": channel_id, "ts": record["ts"], "message": message_view(record)}

    def _api_chat_update(self, params: Mapping[str, Any], token: str) -> Record:
        channel_id = self._channel(params)
        text, blocks, attachments = message_content(params, require=True)
        changes = {"text": text, "blocks": blocks, "attachments": attachments}
        record = self.store.update(channel_id, str(params.get("ts") or ""), changes)
        return {
            "channel": channel_id,
            "ts": record["ts"],
            "text": record["text"],
            "message": message_view(record),
        }
