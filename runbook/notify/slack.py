"""Slack delivery: settings, Block Kit builders, size limits, secret scrubbing and the transport.

Everything here except :class:`SlackTransport` is pure and cheap, so composing a message on the
operator's path costs microseconds. ``slack_sdk`` (~200 ms to import) is imported by the
transport on the first send, in the sender thread, never on the operator's path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.core.redact import MASK

if TYPE_CHECKING:
    from runbook.core.environment import Environment
    from runbook.stores.config import Config

# Slack's limits (https://api.slack.com/methods/chat.postMessage, Block Kit reference).
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION = 3_000
MAX_HEADER = 150
MAX_FIELD = 2_000
# Headroom under MAX_TEXT for the "[DRILL]" prefix and the "(part i/n)" note.
TEXT_CHUNK = 39_000
MAX_PARTS = 5  # beyond this a long message is truncated: the full text stays in the journal

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

# Credentials that may appear in step output without anybody declaring them secret.
_SCRUB = re.compile(
    "|".join(
        [
            r"\bxox[abprse]-[A-Za-z0-9-]{6,}",  # Slack tokens
            r"\bxapp-[A-Za-z0-9-]{6,}",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",  # a webhook URL is a credential
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"\bya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access token
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            r"\bsk-[A-Za-z0-9_-]{20,}",
        ]
    )
)
# ``password=…``, ``token: …``, ``Authorization: Bearer …``: keep the key, mask the value.
_SCRUB_KV = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|authorization)"
    r"\b[\"']?\s*[=:]\s*(?:bearer\s+|basic\s+)?[\"']?)([^\s\"'<>&|,;]{3,})"
)
_SCRUB_URL = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s/]+)(@)")


def needs_scrub(text: str) -> bool:
    """Cheap test: could ``text`` hold a credential pattern :func:`scrub` masks?"""
    low = text.lower()
    # Unrolled `in` tests: ~10x cheaper than a case-insensitive regex search on short strings.
    return (
        "key" in low or "token" in low or "pass" in low or "secret" in low or "auth" in low or "://" in low
        or "xox" in low or "xapp" in low or "gh" in low or "akia" in low or "aiza" in low or "ya29" in low
        or "eyj" in low or "private" in low or "sk-" in low or "pwd" in low or "hooks.slack" in low
    )


def scrub(text: str, secrets: Any = ()) -> str:
    """Mask known secret values and anything that looks like a credential.

    Args:
        text: Text bound for Slack or an export.
        secrets: Exact values to mask (e.g. the bot token, secret param values).

    Returns:
        The text with every secret replaced by the engine's mask.
    """
    if not text:
        return text
    for s in secrets:
        if s and len(s) >= 3 and s in text:
            text = text.replace(s, MASK)
    if not needs_scrub(text):  # fast path: most lines carry nothing to look at
        return text
    text = _SCRUB.sub(MASK, text)
    text = _SCRUB_KV.sub(lambda m: m.group(1) + MASK, text)
    return _SCRUB_URL.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def mrkdwn_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves (also defuses ``<!channel>`` pings)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlackSettings:
    """Where and how to post. Holds variable *names*, never a token or a webhook URL.

    Attributes:
        channel: The incident channel (``#incidents`` or an id).
        token_env: Name of the environment variable holding the bot token (API mode).
        webhook_url_env: Name of the variable holding an incoming-webhook URL (webhook mode).
        base_url: Web API base URL (the local stand-in in the sandbox), or None for Slack's.
        security_channel: Channel for security notifications (``notify.slack`` with ``security``).
        retry_cap: Longest wait between retries of a connection error or 5xx, in seconds.
        permanent_retry: Wait before retrying a permanent error (bad token, unknown channel).
        flush_seconds: How long a short-lived run waits at exit for delivery.
        timeout: HTTP timeout of one Slack call.
        source: Where the settings came from (for messages).
    """

    channel: str
    token_env: str | None = None
    webhook_url_env: str | None = None
    base_url: str | None = None
    security_channel: str | None = None
    retry_cap: float = 30.0
    permanent_retry: float = 60.0
    flush_seconds: float = 5.0
    timeout: float = 10.0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def via(self) -> str:
        """``api`` (threads and updates) or ``webhook`` (separate messages only)."""
        return "api" if self.token_env else "webhook"

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None

    def webhook_url(self) -> str | None:
        return os.environ.get(self.webhook_url_env) if self.webhook_url_env else None

    def secret_values(self) -> list[str]:
        """The token and webhook URL values, so they can be scrubbed from every message."""
        return [v for v in (self.token(), self.webhook_url()) if v]


def settings_from(config: Config | None, environment: Environment | None) -> SlackSettings | None:
    """Resolve Slack settings: the environment's ``slack`` store over ``[notify.slack]``.

    Returns:
        The settings, or None when Slack is not configured (no channel, or neither ``token_env``
        nor ``webhook_url_env``, or ``enabled = false``).
    """
    base: dict[str, Any] = {}
    source = []
    notify = getattr(config, "notify", None) or {}
    if isinstance(notify.get("slack"), dict):
        base.update(notify["slack"])
        source.append("[notify.slack]")
    stores = getattr(environment, "stores", None) or {}
    if isinstance(stores.get("slack"), dict):
        base.update(stores["slack"])
        source.append(f"[environments.{getattr(environment, 'name', '?')}.slack]")
    if not base or base.get("enabled") is False:
        return None
    channel = base.get("channel")
    token_env = base.get("token_env")
    webhook_env = base.get("webhook_url_env")
    if base.get("mode") == "webhook":
        token_env = None
    if not (token_env or webhook_env):
        return None
    if not channel and token_env:
        return None

    def num(key: str, default: float) -> float:
        try:
            return float(base.get(key, default))
        except (TypeError, ValueError):
            return default

    return SlackSettings(
        channel=str(channel or "webhook"),
        token_env=str(token_env) if token_env else None,
        webhook_url_env=str(webhook_env) if webhook_env else None,
        base_url=str(base["base_url"]) if base.get("base_url") else None,
        security_channel=str(base["security_channel"]) if base.get("security_channel") else None,
        retry_cap=num("retry_cap", 30.0),
        permanent_retry=num("permanent_retry", 60.0),
        flush_seconds=num("flush_seconds", 5.0),
        timeout=num("timeout", 10.0),
        source=" over ".join(reversed(source)),
    )


# -- Block Kit builders -----------------------------------------------------------------------------


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    from runbook.core.durations import format_duration

    return format_duration(seconds)


def _clip(text: str, limit: int, note: str = "… (truncated)") -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(note))] + note


def header_block(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER, "…"), "emoji": True}}


def section_block(mrkdwn: str) -> dict[str, Any]:
    """A section; text over Slack's 3,000 characters is split later by :func:`fit_message`."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def fields_block(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    # Slack allows 10 fields of up to 2,000 characters each.
    fields = [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", MAX_FIELD)} for k, v in pairs[:10]]
    return {"type": "section", "fields": fields}


def context_block(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(mrkdwn, MAX_SECTION)}]}


@dataclass
class IncidentInfo:
    """What the parent message shows; kept current by the outbox from journal events."""

    incident: str
    title: str = ""
    playbook: str = ""
    tier: str = ""
    level: int | None = None
    env: str = ""
    mode: str = ""
    operator: str = ""
    rto: float | None = None
    rpo: float | None = None
    opened: str = ""
    status: str = "running"
    done: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    elapsed: float | None = None
    rto_met: bool | None = None

    @property
    def drill(self) -> bool:
        return self.mode == "drill"

    def prefix(self) -> str:
        return "[DRILL] " if self.drill else ""


def parent_message(info: IncidentInfo, *, via: str = "api") -> tuple[str, list[dict[str, Any]]]:
    """The incident's parent message: title, tier/level, environment, mode, operator, RTO, id, status."""
    e = mrkdwn_escape
    tier = info.tier + (f" · level {info.level}" if info.level else "")
    progress = f"{info.done}/{info.total} steps done" if info.total else f"{info.done} steps done"
    if info.failed:
        progress += f", {info.failed} failed"
    if info.skipped:
        progress += f", {info.skipped} skipped"
    status = info.status
    if info.elapsed is not None:
        status += f" after {_fmt_duration(info.elapsed)}"
        if info.rto is not None:
            status += f" (RTO {_fmt_duration(info.rto)} {'met' if info.rto_met else 'missed'})"
    blocks = [
        header_block(f"{info.prefix()}{'Drill' if info.drill else 'Incident'}: {info.title or info.playbook}"),
        fields_block(
            [
                ("Tier", e(tier or "—")),
                ("Environment", e(info.env or "—")),
                ("Mode", e(info.mode or "—")),
                ("Operator", e(info.operator or "—")),
                ("RTO target", _fmt_duration(info.rto)),
                ("RPO target", _fmt_duration(info.rpo)),
                ("Incident", f"`{e(info.incident)}`"),
                ("Playbook", f"`{e(info.playbook)}`"),
            ]
        ),
        section_block(f"*Status:* {e(status)} — {e(progress)}"),
    ]
    note = "Follow-ups are in this message's thread."
    if via == "webhook":
        note = (
            "Posted through an incoming webhook: no thread and no status updates are possible, so "
            f"follow-ups are separate messages tagged `{e(info.incident)}`."
        )
    blocks.append(context_block(f"runbook · {note}"))
    text = f"{info.prefix()}{info.title or info.playbook} — {info.env}, {info.mode} — {status} ({info.incident})"
    return text, blocks


def reply_message(info: IncidentInfo, emoji: str, headline: str, detail: str = "", *, via: str = "api") -> tuple[str, list[dict[str, Any]]]:
    """A thread reply (or, in webhook mode, a separate message tagged with the incident id)."""
    tag = "" if via == "api" else f"[{info.incident}] "
    head = f"{info.prefix()}{tag}{headline}"
    blocks = [section_block(f"{emoji} {mrkdwn_escape(head)}")]
    if detail:
        blocks.append(section_block(mrkdwn_escape(detail)))
    text = head + (f"\n{detail}" if detail else "")
    return text, blocks


def fit_message(text: str, blocks: list[dict[str, Any]] | None) -> list[tuple[str, list[dict[str, Any]] | None]]:
    """Split or truncate a message so each part is within Slack's limits.

    Sections over 3,000 characters are split into several sections; more than 50 blocks are
    cut to 49 plus a note; text over 40,000 characters is split into up to five messages, the
    rest truncated with a note (the full text is in the journal's ``notification_queued``).

    Returns:
        One ``(text, blocks)`` per message to post, in order.
    """
    out_blocks: list[dict[str, Any]] | None = None
    if blocks is not None:
        out_blocks = []
        for b in blocks:
            t = b.get("text") if b.get("type") == "section" else None
            if isinstance(t, dict) and len(t.get("text", "")) > MAX_SECTION:
                body = t["text"]
                for i in range(0, len(body), MAX_SECTION):
                    out_blocks.append({"type": "section", "text": {"type": t.get("type", "mrkdwn"), "text": body[i : i + MAX_SECTION]}})
            else:
                out_blocks.append(b)
        if len(out_blocks) > MAX_BLOCKS:
            dropped = len(out_blocks) - (MAX_BLOCKS - 1)
            out_blocks = out_blocks[: MAX_BLOCKS - 1] + [
                context_block(f"… {dropped} more blocks not shown (Slack allows {MAX_BLOCKS}); the full message is in the incident journal.")
            ]
    if len(text) <= MAX_TEXT:
        return [(text, out_blocks)]
    chunks = [text[i : i + TEXT_CHUNK] for i in range(0, len(text), TEXT_CHUNK)]
    truncated = 0
    if len(chunks) > MAX_PARTS:
        truncated = sum(len(c) for c in chunks[MAX_PARTS:])
        chunks = chunks[:MAX_PARTS]
    n = len(chunks)
    parts: list[tuple[str, list[dict[str, Any]] | None]] = []
    for i, chunk in enumerate(chunks, 1):
        note = f"\n(part {i}/{n})"
        if i == n and truncated:
            note += f" … {truncated} more characters not sent (Slack's limit); the full text is in the incident journal."
        # Blocks (if any) carry a summary on the first part only; later parts are plain text.
        parts.append((chunk + note, (out_blocks if i == 1 else None)))
    if out_blocks is not None:
        # Blocks repeat the text: keep them within limits by showing an excerpt on part 1.
        excerpt = [section_block(mrkdwn_escape(_clip(text, MAX_SECTION, f"… (continued in {n} parts)")))]
        parts[0] = (parts[0][0], excerpt)
    return parts


# -- transport -------------------------------------------------------------------------------------


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
            raise DeliveryError("permanent", f"not_configured: the environment variable {self.settings.token_env} (token_env) is not set")
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
            raise DeliveryError("permanent", f"not_configured: the environment variable {self.settings.webhook_url_env} (webhook_url_env) is not set")
        if self._hook is None or url != self._hook_url:
            from slack_sdk.webhook import WebhookClient

            self._hook, self._hook_url = WebhookClient(url, timeout=int(max(1, self.settings.timeout)), retry_handlers=[]), url
        return self._hook

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None = None) -> Posted:
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
        return DeliveryError("transient", f"{code} (HTTP {status})" if not code.startswith("http_") else f"HTTP {status}")
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
