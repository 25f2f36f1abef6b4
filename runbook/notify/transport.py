"""Delivery to Slack: the Web API (``chat.postMessage``/``chat.update``) or an incoming webhook.

``slack_sdk`` (~200 ms to import) is imported on the first send, in the sender thread, never on
the operator's path. Every failure becomes a :class:`DeliveryError` classified as rate-limited,
transient, permanent (bad token or channel) or content (Slack will never take this message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbook.notify.settings import SlackSettings

# Error codes that a retry cannot fix by waiting a little: bad credentials or destination.
PERMANENT = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "restricted_action",
        "team_access_not_granted",
        "ekm_access_denied",
        "no_service",
        "invalid_token",
        "action_prohibited",
        "team_disabled",
        "posting_to_general_channel_denied",
        "not_configured",
    }
)
# Errors about the message itself: resent once without blocks, text truncated.
CONTENT = frozenset(
    {
        "msg_too_long",
        "invalid_blocks",
        "invalid_blocks_format",
        "no_text",
        "too_many_attachments",
        "invalid_payload",
        "invalid_attachments",
    }
)


class DeliveryError(Exception):
    """One failed Slack call, classified for the retry policy.

    Attributes:
        kind: ``rate_limited`` (wait ``retry_after``), ``transient`` (back off), ``permanent``
            (bad token/channel: retry slowly) or ``content`` (the message itself is refused).
        error: Slack's error code or a short description of the failure.
        retry_after: Seconds Slack asked us to wait (429), if any.
    """

    def __init__(self, kind: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error
        self.retry_after = retry_after


@dataclass
class Posted:
    """What Slack answered for a delivered message (``ts`` is None for webhooks)."""

    channel: str | None
    ts: str | None


class SlackTransport:
    """Posts through slack_sdk: ``WebClient`` (chat.postMessage / chat.update) or ``WebhookClient``.

    Clients are built on first use, without slack_sdk's own retry handlers: the outbox owns the
    retry policy (Retry-After, backoff, ordering), so one call here is one HTTP request.
    """

    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self._web: Any = None
        self._web_token: str | None = None
        self._hook: Any = None
        self._hook_url: str | None = None

    def _client(self) -> Any:
        token = self.settings.token()
        if not token:
            raise _not_configured(self.settings.token_env, "token_env")
        if self._web is None or token != self._web_token:
            from slack_sdk import WebClient

            kw: dict[str, Any] = {"token": token, "timeout": int(max(1, self.settings.timeout)), "retry_handlers": []}
            if self.settings.base_url:
                kw["base_url"] = self.settings.base_url.rstrip("/") + "/"
            self._web, self._web_token = WebClient(**kw), token
        return self._web

    def _webhook(self) -> Any:
        url = self.settings.webhook_url()
        if not url:
            raise _not_configured(self.settings.webhook_url_env, "webhook_url_env")
        if self._hook is None or url != self._hook_url:
            from slack_sdk.webhook import WebhookClient

            self._hook, self._hook_url = (
                WebhookClient(url, timeout=int(max(1, self.settings.timeout)), retry_handlers=[]),
                url,
            )
        return self._hook

    def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None = None
    ) -> Posted:
        """Post one message (a thread reply when ``thread_ts`` is given).

        Raises:
            DeliveryError: Classified failure.
        """
        if self.settings.via == "webhook":
            return self._send_webhook(text, blocks)
        client = self._client()
        kw: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if blocks is not None:
            kw["blocks"] = blocks
        if thread_ts:
            kw["thread_ts"] = thread_ts
        resp = self._call(client.chat_postMessage, kw)
        return Posted(resp.get("channel"), resp.get("ts"))

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None) -> Posted:
        """Replace a message's text and blocks (chat.update).

        Raises:
            DeliveryError: Classified failure.
        """
        client = self._client()
        kw: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            kw["blocks"] = blocks
        resp = self._call(client.chat_update, kw)
        return Posted(resp.get("channel"), resp.get("ts"))

    def _call(self, method: Any, kw: dict[str, Any]) -> Any:
        from slack_sdk.errors import SlackApiError, SlackRequestError

        try:
            return method(**kw)
        except SlackApiError as exc:
            resp = exc.response
            status = getattr(resp, "status_code", 200)
            code = ""
            try:
                code = str(resp.get("error") or "")
            except Exception:  # noqa: BLE001 - a non-JSON body
                code = ""
            raise _classify(status, code or f"http_{status}", _retry_after(getattr(resp, "headers", {}))) from None
        except SlackRequestError as exc:
            raise DeliveryError("permanent", f"bad request: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors, timeouts: all transient
            raise DeliveryError("transient", _connection_error(exc)) from None

    def _send_webhook(self, text: str, blocks: list[dict[str, Any]] | None) -> Posted:
        from slack_sdk.errors import SlackRequestError

        hook = self._webhook()
        try:
            resp = hook.send(text=text, blocks=blocks) if blocks is not None else hook.send(text=text)
        except SlackRequestError as exc:
            raise DeliveryError("permanent", f"bad webhook URL: {str(exc).split(':')[0]}") from None
        except Exception as exc:  # noqa: BLE001
            raise DeliveryError("transient", _connection_error(exc)) from None
        if resp.status_code == 200:
            return Posted(None, None)
        body = (resp.body or "").strip()[:100] or f"http_{resp.status_code}"
        raise _classify(resp.status_code, body, _retry_after(resp.headers or {}))


def _retry_after(headers: Any) -> float | None:
    try:
        items = headers.items()
    except AttributeError:
        return None
    for k, v in items:
        if str(k).lower() == "retry-after":
            value = v[0] if isinstance(v, list) and v else v
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _classify(status: int, code: str, retry_after: float | None) -> DeliveryError:
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return DeliveryError("rate_limited", "ratelimited", retry_after if retry_after is not None else 1.0)
    if status >= 500 or code in ("internal_error", "fatal_error", "service_unavailable", "request_timeout"):
        return DeliveryError(
            "transient", f"{code} (HTTP {status})" if not code.startswith("http_") else f"HTTP {status}"
        )
    if code in CONTENT:
        return DeliveryError("content", code)
    if code in PERMANENT or 400 <= status < 500:
        return DeliveryError("permanent", code)
    return DeliveryError("permanent", code)


def _connection_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    inner = reason if isinstance(reason, BaseException) else exc
    name = type(inner).__name__
    if isinstance(inner, ConnectionRefusedError):
        return "Slack unreachable (connection refused)"
    if isinstance(inner, TimeoutError) or "timed out" in str(inner):
        return "Slack unreachable (timed out)"
    if isinstance(inner, ConnectionError) or name == "RemoteDisconnected":
        return "Slack unreachable (connection closed)"
    return f"Slack unreachable ({name})"


def _not_configured(variable: str | None, setting: str) -> DeliveryError:
    """The secret's variable is not set in this process: retried slowly, and on resume."""
    return DeliveryError("permanent", f"not_configured: the environment variable {variable} ({setting}) is not set")
