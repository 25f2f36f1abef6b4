"""A local server that speaks the Slack Web API and incoming-webhook HTTP surface.

No Slack emulator exists, so the sandbox and the tests point the real ``slack_sdk`` clients at
this server (``WebClient(token=..., base_url=server.url)``, ``WebhookClient(server.webhook_url(n))``)
and exercise them end to end. Only what runbook uses is implemented, shaped like Slack's answers:

* ``auth.test``, ``chat.postMessage``, ``chat.update``, ``conversations.list`` under ``/api/``,
  with JSON or form bodies (and query strings), token from ``Authorization: Bearer`` or ``token``.
* Incoming webhooks at ``/services/T.../B.../X...``: ``ok`` / ``invalid_payload`` / ``no_service``.
* Limits that matter: text over 40,000 characters (``msg_too_long``), more than 50 blocks
  (``invalid_blocks``). A ``thread_ts`` that names no message in the channel is refused with
  ``thread_not_found`` -- stricter than Slack, on purpose, so a lost parent is caught in tests.

Every accepted message is kept in memory and, with a state directory, appended to
``slack-messages.jsonl`` (one ``post`` or ``update`` event per line) so another process can see
what was delivered (:func:`read_messages`). Token values are never logged or written: records carry
the token's label and a short SHA-256 fingerprint (:func:`token_fingerprint`).

Faults, set from Python (:meth:`SlackServer.set_fault`) or over HTTP (``POST /_control``), apply to
``/api/`` and ``/services/`` requests only, so the control endpoints keep working:

* ``down``: the connection is accepted, the request read, and the socket closed without a byte of
  response. urllib raises ``http.client.RemoteDisconnected`` (a ``ConnectionResetError``, hence a
  ``ConnectionError``); slack_sdk's default ``ConnectionErrorRetryHandler`` retries once, then
  re-raises it. (A refused connection is what :meth:`SlackServer.stop` gives.)
* ``status_500``: HTTP 500 (or ``status``) with ``{"ok": false, "error": "fatal_error"}``.
* ``rate_limited``: HTTP 429, ``Retry-After: N``, ``{"ok": false, "error": "ratelimited"}``.
* ``error``: every call answered ``{"ok": false, "error": E}`` (HTTP 200, as Slack does).
* ``slow``: answer normally after ``delay`` seconds (for client timeouts).
* ``clear``: back to normal. Each fault may be limited to the next ``count`` matching requests
  and to some ``methods`` (API method names, ``"webhook"`` for webhooks).

``GET /_messages`` and ``GET /_stats`` report what was recorded and how many requests arrived,
including ``within_retry_after``: requests that came while a served ``Retry-After`` window was open.

Run as a process: ``python -m runbook.sandbox.slack_server --port 0 --state-dir DIR [--token T]``;
it prints ``listening http://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:  # http.server costs ~25 ms to import; it is loaded when a server starts.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOKS",
    "FAULTS",
    "MAX_BLOCKS",
    "MAX_TEXT",
    "SlackServer",
    "main",
    "read_messages",
    "token_fingerprint",
    "webhook_path",
]

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "xoxb-0000000000-0000000000000-runbooksandbox"
DEFAULT_CHANNELS: dict[str, str] = {"C0INCIDENTS": "incidents", "C0SECURITY": "security"}
DEFAULT_WEBHOOKS: dict[str, str] = {"incidents": "incidents"}
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_ATTACHMENTS = 100
FAULTS = ("down", "status_500", "rate_limited", "error", "slow", "clear")
MESSAGES_FILE = "slack-messages.jsonl"
INFO_FILE = "slack-server.json"

TEAM_ID = "T0SANDBOX"
BOT_USER_ID = "U0RUNBOOK"
BOT_ID = "B0RUNBOOK"
APP_ID = "A0RUNBOOK"
_API_METHODS = ("auth.test", "chat.postMessage", "chat.update", "conversations.list")
_LOG_LIMIT = 10_000  # request log entries kept; enough for any test, bounded for long sandboxes
# Incoming webhooks answer errors as text with these statuses; anything else is a 400.
_WEBHOOK_ERROR_STATUS = {
    "no_service": 404,
    "channel_not_found": 404,
    "team_disabled": 404,
    "channel_is_archived": 410,
    "action_prohibited": 403,
    "invalid_token": 403,
    "posting_to_general_channel_denied": 403,
}

Record = dict[str, Any]


class _ApiError(Exception):
    """A Slack error code to answer with (``{"ok": false, "error": code}``)."""

    def __init__(self, code: str, status: int = 200) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


class _Reply:
    """One HTTP answer; ``drop`` means close the connection without answering."""

    __slots__ = ("status", "body", "content_type", "headers", "drop")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        content_type: str = "application/json; charset=utf-8",
        headers: Mapping[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.drop = drop

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> _Reply:
        return cls(status, json.dumps(data).encode(), headers=headers)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> _Reply:
        return cls(status, text.encode(), "text/plain; charset=utf-8", headers)


def token_fingerprint(token: str) -> str:
    """Return the short, non-reversible identifier recorded instead of a token.

    Args:
        token: The token value.

    Returns:
        The first 12 hex digits of the token's SHA-256.
    """
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def webhook_path(name: str) -> str:
    """Return the deterministic incoming-webhook path for a webhook name.

    Deterministic so that a process that only knows the name (and the port) can build the URL.

    Args:
        name: The webhook's configured name.

    Returns:
        A path shaped like Slack's, e.g. ``/services/T0SANDBOX/B1A2B3C4D5/0f1e...``.
    """
    digest = hashlib.sha256(f"runbook-sandbox-webhook:{name}".encode()).hexdigest()
    return f"/services/{TEAM_ID}/B{digest[:10].upper()}/{digest[10:34]}"


def read_messages(state: str | Path) -> list[Record]:
    """Fold a server's ``slack-messages.jsonl`` into the current messages, in posting order.

    Meant for a process other than the server's; a half-written last line is ignored.

    Args:
        state: The server's state directory, or the JSON-lines file itself.

    Returns:
        One record per message (its latest version), oldest first.
    """
    path = Path(state)
    if path.is_dir():
        path = path / MESSAGES_FILE
    if not path.exists():
        return []
    messages: dict[tuple[str, str], Record] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # torn write from a concurrent append
        record = {k: v for k, v in event.items() if k != "event"}
        messages[(record["channel"], record["ts"])] = record
    return list(messages.values())


class SlackServer:
    """An in-process Slack Web API and incoming-webhook server for the sandbox and tests.

    Example::

        with SlackServer(tokens=["xoxb-test"]) as server:
            WebClient(token="xoxb-test", base_url=server.url).chat_postMessage(channel="#incidents", text="hi")
            assert server.messages()[0]["text"] == "hi"
    """

    def __init__(
        self,
        port: int = 0,
        state_dir: str | Path | None = None,
        tokens: Iterable[str] | Mapping[str, str] | None = None,
        channels: Iterable[str] | Mapping[str, str] | None = None,
        webhooks: Mapping[str, str | tuple[str, str]] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Configure the server; nothing is bound until :meth:`start`.

        Args:
            port: TCP port; 0 picks a free one (see :attr:`port` after start).
            state_dir: Directory for ``slack-messages.jsonl`` and ``slack-server.json``. Messages
                already in it are loaded, so a restarted server can still update them.
            tokens: Valid tokens, as a list or as ``{label: token}``; records carry the label
                (``token-0``... for a list). Defaults to :data:`DEFAULT_TOKEN`.
            channels: Known channels, as ``{id: name}`` or a list of names (ids derived from the
                name). Defaults to :data:`DEFAULT_CHANNELS`. Names may be given with or without ``#``.
            webhooks: ``{name: channel}`` or ``{name: (channel, path)}``; the path defaults to
                :func:`webhook_path`. Defaults to :data:`DEFAULT_WEBHOOKS`.
            host: Interface to bind.
        """
        self.host = host
        self._requested_port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None

        if tokens is None:
            tokens = [DEFAULT_TOKEN]
        pairs = (
            tokens.items()
            if isinstance(tokens, Mapping)
            else ((f"token-{i}", t) for i, t in enumerate(tokens))
        )
        self._tokens: dict[str, str] = {token: label for label, token in pairs}  # token -> label

        if channels is None:
            channels = DEFAULT_CHANNELS
        if isinstance(channels, Mapping):
            self._channels = {cid: name.lstrip("#") for cid, name in channels.items()}
        else:
            self._channels = {}
            for name in channels:
                name = name.lstrip("#")
                self._channels["C" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()] = name
        self._channel_by_name = {name: cid for cid, name in self._channels.items()}

        self._webhooks: dict[str, tuple[str, str]] = {}  # path -> (name, channel id)
        self._webhook_paths: dict[str, str] = {}  # name -> path
        for name, spec in (DEFAULT_WEBHOOKS if webhooks is None else webhooks).items():
            channel, path = (spec, webhook_path(name)) if isinstance(spec, str) else spec
            channel_id = self._resolve_channel(channel)
            if channel_id is None:
                raise ValueError(f"webhook {name!r} names an unknown channel {channel!r}")
            self._webhooks[path] = (name, channel_id)
            self._webhook_paths[name] = path

        self._lock = threading.Lock()
        self._messages: dict[tuple[str, str], Record] = {}
        self._last_ts_us = 0
        self._fault: dict[str, Any] | None = None
        self._retry_until = 0.0  # monotonic end of the last Retry-After window served
        self._reset_stats_locked()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if self.state_dir is not None:
            self._load_state()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SlackServer:
        """Bind and serve in a background thread.

        Returns:
            The server itself, for chaining.
        """
        if self._httpd is not None:
            return self
        from http.server import ThreadingHTTPServer

        httpd = ThreadingHTTPServer((self.host, self._requested_port), _handler_class())
        httpd.daemon_threads = True  # a client stuck mid-request must not block stop()
        httpd.slack = self  # type: ignore[attr-defined]  # how handlers find their server
        self._httpd = httpd
        self._thread = threading.Thread(
            # A short poll keeps stop() (which waits for the loop to notice) quick in tests.
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="slack-server",
            daemon=True,
        )
        self._thread.start()
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            info = {
                "url": self.url,
                "base_url": self.base_url,
                "webhooks": {name: self.webhook_url(name) for name in self._webhook_paths},
                "channels": dict(self._channels),
            }
            (self.state_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        log.debug("slack stand-in listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent); later connections are refused."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("SlackServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` -- the root, for webhooks and the control endpoints."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL to give ``WebClient(base_url=...)``, ending in ``/api/``."""
        return f"{self.base_url}/api/"

    def webhook_url(self, name: str) -> str:
        """Return the full incoming-webhook URL of a configured webhook.

        Args:
            name: The webhook's configured name.

        Returns:
            ``http://HOST:PORT/services/T.../B.../X...``.

        Raises:
            KeyError: If no webhook has that name.
        """
        return self.base_url + self._webhook_paths[name]

    # ----------------------------------------------------------------- inspection

    def messages(self, channel: str | None = None) -> list[Record]:
        """Return copies of the accepted messages (latest version of each), oldest first.

        Each record has ``channel`` (id), ``channel_name``, ``ts``, ``thread_ts`` (root ts, or
        None), ``text``, ``blocks``, ``attachments``, ``via`` (``api``/``webhook``), ``token``
        (label, or None), ``token_fingerprint``, ``webhook`` (name, or None), ``received_at``
        (epoch seconds), ``edited`` (number of ``chat.update`` calls) and ``edited_ts``.

        Args:
            channel: Only this channel (id or name).

        Returns:
            The records.
        """
        channel_id = self._resolve_channel(channel) if channel is not None else None
        if channel is not None and channel_id is None:
            return []
        with self._lock:
            return [
                json.loads(json.dumps(m))  # deep copy, and proof that it is JSON-clean
                for m in self._messages.values()
                if channel_id is None or m["channel"] == channel_id
            ]

    def stats(self) -> dict[str, Any]:
        """Return request counters (for ``/api/`` and ``/services/`` only).

        Returns:
            ``{"requests": N, "by_method": {...}, "by_status": {...}, "within_retry_after": N,
            "log": [{"t": epoch, "method": ..., "status": int|None, "error": str|None,
            "within_retry_after": bool}, ...]}``; status None means the connection was dropped.
        """
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def reset_stats(self) -> None:
        """Zero the request counters and log."""
        with self._lock:
            self._reset_stats_locked()

    # ----------------------------------------------------------------- faults

    def set_fault(
        self,
        fault: str,
        *,
        count: int | None = None,
        retry_after: float = 1,
        error: str = "fatal_error",
        status: int = 500,
        delay: float = 1.0,
        methods: Iterable[str] | None = None,
    ) -> dict[str, Any] | None:
        """Change how the server answers API and webhook requests.

        Args:
            fault: One of :data:`FAULTS`.
            count: Apply to the next ``count`` matching requests only; None until cleared.
            retry_after: ``rate_limited``: seconds in ``Retry-After`` (rounded up to an integer,
                since slack_sdk parses it with ``int``).
            error: ``error``: the Slack error code to answer with.
            status: ``status_500``: the HTTP status (500, 502, 503...).
            delay: ``slow``: seconds to wait before answering.
            methods: Only these API methods (``"webhook"`` for webhooks); None for all.

        Returns:
            The fault now in force, or None after ``clear``.

        Raises:
            ValueError: For an unknown fault or a bad argument.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1")
        spec: dict[str, Any] | None = None
        if fault != "clear":
            spec = {
                "fault": fault,
                "remaining": None if count is None else int(count),
                "methods": None if methods is None else sorted(set(methods)),
            }
            if fault == "rate_limited":
                spec["retry_after"] = max(1, math.ceil(float(retry_after)))
            elif fault == "error":
                spec["error"] = str(error)
            elif fault == "status_500":
                if not 500 <= int(status) <= 599:
                    raise ValueError("status must be a 5xx code")
                spec["status"] = int(status)
            elif fault == "slow":
                spec["delay"] = float(delay)
        with self._lock:
            self._fault = spec
            if spec is None:
                self._retry_until = 0.0
            return dict(spec) if spec else None

    def clear_faults(self) -> None:
        """Return to normal answers."""
        self.set_fault("clear")

    def fault(self) -> dict[str, Any] | None:
        """Return the fault in force (with ``remaining``), or None."""
        with self._lock:
            return dict(self._fault) if self._fault else None

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a ``POST /_control`` payload (same shape as over HTTP).

        Args:
            payload: ``{"fault": name, "count"?, "retry_after"?, "error"?, "status"?, "delay"?,
                "methods"?}`` and/or ``{"reset_stats": true}``.

        Returns:
            ``{"ok": true, "fault": <fault in force or null>}``.

        Raises:
            ValueError: For an unknown fault or a bad argument.
        """
        if payload.get("reset_stats"):
            self.reset_stats()
        if "fault" in payload:
            kwargs = {
                k: payload[k]
                for k in ("count", "retry_after", "error", "status", "delay", "methods")
                if k in payload
            }
            self.set_fault(str(payload["fault"]), **kwargs)
        return {"ok": True, "fault": self.fault()}

    # ----------------------------------------------------------------- request handling (internal)

    def _reset_stats_locked(self) -> None:
        self._stats: dict[str, Any] = {
            "requests": 0,
            "by_method": {},
            "by_status": {},
            "within_retry_after": 0,
            "log": [],
        }

    def _begin(self, method: str, *, take_fault: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Count a request and take the fault (if any) that applies to it."""
        now = time.monotonic()
        with self._lock:
            early = now < self._retry_until
            entry = {
                "t": time.time(),
                "method": method,
                "status": None,
                "error": None,
                "within_retry_after": early,
            }
            stats = self._stats
            stats["requests"] += 1
            stats["by_method"][method] = stats["by_method"].get(method, 0) + 1
            stats["within_retry_after"] += int(early)
            stats["log"].append(entry)
            del stats["log"][:-_LOG_LIMIT]
            fault = self._fault
            if (
                not take_fault
                or fault is None
                or (fault["methods"] is not None and method not in fault["methods"])
            ):
                return entry, None
            taken = dict(fault)
            if fault["remaining"] is not None:
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    self._fault = None
            if taken["fault"] == "rate_limited":
                self._retry_until = now + taken["retry_after"]
            return entry, taken

    def _finish(self, entry: dict[str, Any], reply: _Reply, error: str | None = None) -> _Reply:
        with self._lock:
            status = None if reply.drop else reply.status
            entry["status"] = status
            entry["error"] = error
            key = "dropped" if status is None else str(status)
            self._stats["by_status"][key] = self._stats["by_status"].get(key, 0) + 1
        return reply

    def _handle_api(self, method: str, params: dict[str, Any], auth_header: str | None) -> _Reply:
        entry, fault = self._begin(method)
        if fault is not None:
            kind = fault["fault"]
            if kind == "down":
                return self._finish(entry, _Reply(drop=True), "down")
            if kind == "status_500":
                return self._finish(
                    entry, _Reply.json({"ok": False, "error": "fatal_error"}, fault["status"]), "fatal_error"
                )
            if kind == "rate_limited":
                headers = {"Retry-After": str(fault["retry_after"])}
                return self._finish(
                    entry, _Reply.json({"ok": False, "error": "ratelimited"}, 429, headers), "ratelimited"
                )
            if kind == "error":
                return self._finish(
                    entry, _Reply.json({"ok": False, "error": fault["error"]}), fault["error"]
                )
            if kind == "slow":
                time.sleep(fault["delay"])
        try:
            if isinstance(params.get("_body_error"), str):
                raise _ApiError(params["_body_error"])
            if method not in _API_METHODS:
                raise _ApiError("unknown_method", 404)
            token = self._authenticate(params, auth_header)
            data = getattr(self, "_api_" + method.replace(".", "_"))(params, token)
        except _ApiError as err:
            return self._finish(entry, _Reply.json({"ok": False, "error": err.code}, err.status), err.code)
        return self._finish(entry, _Reply.json({"ok": True, **data}))

    def _handle_webhook(self, path: str, body: bytes, content_type: str) -> _Reply:
        entry, fault = self._begin("webhook", take_fault=path in self._webhooks)
        if path not in self._webhooks:
            return self._finish(entry, _Reply.text("no_service", 404), "no_service")
        if fault is not None:
            kind = fault["fault"]
            if kind == "down":
                return self._finish(entry, _Reply(drop=True), "down")
            if kind == "status_500":
                return self._finish(entry, _Reply.text("internal_error", fault["status"]), "internal_error")
            if kind == "rate_limited":
                headers = {"Retry-After": str(fault["retry_after"])}
                return self._finish(entry, _Reply.text("rate_limited", 429, headers), "rate_limited")
            if kind == "error":
                code = fault["error"]
                return self._finish(entry, _Reply.text(code, _WEBHOOK_ERROR_STATUS.get(code, 400)), code)
            if kind == "slow":
                time.sleep(fault["delay"])
        name, channel_id = self._webhooks[path]
        try:
            payload = _parse_webhook_body(body, content_type)
            text, blocks, attachments = self._content(payload, require=True)
            thread_ts = self._thread_root(channel_id, payload.get("thread_ts"))
        except _ApiError as err:
            status = 404 if err.code == "thread_not_found" else 400
            return self._finish(
                entry, _Reply.text(err.code, _WEBHOOK_ERROR_STATUS.get(err.code, status)), err.code
            )
        self._record_post(channel_id, thread_ts, text, blocks, attachments, via="webhook", webhook=name)
        return self._finish(entry, _Reply.text("ok"))

    def _authenticate(self, params: Mapping[str, Any], auth_header: str | None) -> str:
        token: str | None = None
        if auth_header and auth_header.lower().startswith("bearer "):
            token = auth_header[7:].strip()
        elif params.get("token"):
            token = str(params["token"])
        if not token:
            raise _ApiError("not_authed")
        if token not in self._tokens:
            raise _ApiError("invalid_auth")
        return token

    def _resolve_channel(self, channel: Any) -> str | None:
        if not isinstance(channel, str) or not channel:
            return None
        if channel in self._channels:
            return channel
        return self._channel_by_name.get(channel.lstrip("#"))

    def _content(
        self, params: Mapping[str, Any], *, require: bool
    ) -> tuple[str | None, list[Any] | None, list[Any] | None]:
        """Validate text/blocks/attachments the way Slack does for the limits that matter."""
        text = params.get("text")
        text = None if text is None else str(text)
        blocks = _json_array(params.get("blocks"), "invalid_blocks_format")
        attachments = _json_array(params.get("attachments"), "invalid_attachments")
        if require and not text and not blocks and not attachments:
            raise _ApiError("no_text")
        if text is not None and len(text) > MAX_TEXT:
            raise _ApiError("msg_too_long")
        if blocks is not None and (
            len(blocks) > MAX_BLOCKS or not all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            raise _ApiError("invalid_blocks")
        if attachments is not None and len(attachments) > MAX_ATTACHMENTS:
            raise _ApiError("too_many_attachments")
        return text, blocks, attachments

    def _thread_root(self, channel_id: str, thread_ts: Any) -> str | None:
        if thread_ts in (None, ""):
            return None
        with self._lock:
            parent = self._messages.get((channel_id, str(thread_ts)))
        if parent is None:
            raise _ApiError("thread_not_found")
        # A reply to a reply lands in the root's thread, as in Slack.
        return parent["thread_ts"] or parent["ts"]

    def _next_ts_locked(self) -> str:
        # Microseconds since the epoch, forced strictly increasing: unique and ordered like Slack's.
        us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        self._last_ts_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _record_post(
        self,
        channel_id: str,
        thread_ts: str | None,
        text: str | None,
        blocks: list[Any] | None,
        attachments: list[Any] | None,
        *,
        via: str,
        token: str | None = None,
        webhook: str | None = None,
    ) -> Record:
        with self._lock:
            record: Record = {
                "channel": channel_id,
                "channel_name": self._channels[channel_id],
                "ts": self._next_ts_locked(),
                "thread_ts": thread_ts,
                "text": text or "",
                "blocks": blocks,
                "attachments": attachments,
                "via": via,
                "token": None if token is None else self._tokens[token],
                "token_fingerprint": None if token is None else token_fingerprint(token),
                "webhook": webhook,
                "received_at": time.time(),
                "edited": 0,
                "edited_ts": None,
            }
            self._messages[(channel_id, record["ts"])] = record
            self._append_locked("post", record)
            return dict(record)

    def _append_locked(self, event: str, record: Record) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / MESSAGES_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, **record}) + "\n")

    def _load_state(self) -> None:
        assert self.state_dir is not None
        for record in read_messages(self.state_dir):
            self._messages[(record["channel"], record["ts"])] = record
            sec, _, frac = record["ts"].partition(".")
            self._last_ts_us = max(self._last_ts_us, int(sec) * 1_000_000 + int(frac or 0))

    @staticmethod
    def _message_view(record: Record) -> Record:
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

    # Web API methods: each returns the answer's fields besides "ok", or raises _ApiError.

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
            for cid, name in self._channels.items()
        ]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def _api_chat_postMessage(self, params: Mapping[str, Any], token: str) -> Record:
        channel_id = self._resolve_channel(params.get("channel"))
        if channel_id is None:
            raise _ApiError("channel_not_found")
        text, blocks, attachments = self._content(params, require=True)
        thread_ts = self._thread_root(channel_id, params.get("thread_ts"))
        record = self._record_post(channel_id, thread_ts, text, blocks, attachments, via="api", token=token)
        return {"channel": channel_id, "ts": record["ts"], "message": self._message_view(record)}

    def _api_chat_update(self, params: Mapping[str, Any], token: str) -> Record:
        channel_id = self._resolve_channel(params.get("channel"))
        if channel_id is None:
            raise _ApiError("channel_not_found")
        text, blocks, attachments = self._content(params, require=True)
        with self._lock:
            record = self._messages.get((channel_id, str(params.get("ts") or "")))
            if record is None:
                raise _ApiError("message_not_found")
            # Fields left out keep their previous value, as chat.update documents for blocks.
            if text is not None:
                record["text"] = text
            if blocks is not None:
                record["blocks"] = blocks
            if attachments is not None:
                record["attachments"] = attachments
            record["edited"] += 1
            record["edited_ts"] = self._next_ts_locked()
            self._append_locked("update", record)
            view = self._message_view(record)
        return {"channel": channel_id, "ts": record["ts"], "text": record["text"], "message": view}


def _json_array(value: Any, format_error: str) -> list[Any] | None:
    """Accept a list, or a JSON string of one (form bodies carry blocks as JSON text)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _ApiError(format_error) from None
    if not isinstance(value, list):
        raise _ApiError(format_error)
    return value


def _parse_api_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
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


def _parse_webhook_body(body: bytes, content_type: str) -> dict[str, Any]:
    """Decode a webhook payload: a JSON body, or a form with a ``payload`` field (legacy)."""
    try:
        raw: str | bytes = body
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            raw = dict(parse_qsl(body.decode("utf-8"))).get("payload", "")
        data = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        raise _ApiError("invalid_payload") from None
    if not isinstance(data, dict):
        raise _ApiError("invalid_payload")
    return data


_HANDLER: type[BaseHTTPRequestHandler] | None = None


def _handler_class() -> type[BaseHTTPRequestHandler]:
    """Build the request handler on first use, keeping http.server out of import time."""
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER
    from http.server import BaseHTTPRequestHandler

    class _Handler(BaseHTTPRequestHandler):
        server_version = "runbook-slack-standin"

        def version_string(self) -> str:
            return self.server_version

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def log_message(self, format: str, *args: Any) -> None:
            # The default writes request lines to stderr; query strings may carry a token.
            pass

        def _dispatch(self) -> None:
            slack: SlackServer = self.server.slack  # type: ignore[attr-defined]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""  # read it all, even to drop it
            split = urlsplit(self.path)
            path = split.path
            content_type = self.headers.get("Content-Type", "")
            if path.startswith("/api/"):
                params = _parse_api_params(split.query, body, content_type)
                reply = slack._handle_api(path[len("/api/") :], params, self.headers.get("Authorization"))
            elif path.startswith("/services/"):
                if self.command != "POST":
                    reply = _Reply.text("invalid_payload", 400)
                else:
                    reply = slack._handle_webhook(path, body, content_type)
            elif path.startswith("/_"):
                reply = self._control(slack, path, split.query, body)
            else:
                reply = _Reply.text("not found", 404)
            # A webhook path is a credential: log only that it was a webhook.
            log.debug(
                "slack stand-in %s %s -> %s",
                self.command,
                "webhook" if path.startswith("/services/") else path,
                reply.status,
            )
            if reply.drop:
                self.close_connection = True  # nothing written: the client sees the peer hang up
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timed out) first; nothing to answer

        def _control(self, slack: SlackServer, path: str, query: str, body: bytes) -> _Reply:
            if path == "/_messages" and self.command == "GET":
                channel = dict(parse_qsl(query)).get("channel")
                return _Reply.json({"ok": True, "messages": slack.messages(channel), "stats": slack.stats()})
            if path == "/_stats" and self.command == "GET":
                return _Reply.json({"ok": True, **slack.stats()})
            if path == "/_control" and self.command == "GET":
                return _Reply.json({"ok": True, "fault": slack.fault()})
            if path == "/_control" and self.command == "POST":
                try:
                    payload = json.loads(body or b"{}")
                    if not isinstance(payload, dict):
                        raise ValueError("the control payload must be a JSON object")
                    return _Reply.json(slack.control(payload))
                except (ValueError, TypeError) as err:
                    return _Reply.json({"ok": False, "error": str(err)}, 400)
            return _Reply.json({"ok": False, "error": "not_found"}, 404)

    _HANDLER = _Handler
    return _HANDLER


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print ``listening http://127.0.0.1:PORT`` once bound.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.slack_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", help="where slack-messages.jsonl and slack-server.json go")
    parser.add_argument("--token", action="append", help="a valid token (repeatable); default: DEFAULT_TOKEN")
    parser.add_argument(
        "--channel", action="append", help="NAME or ID=NAME (repeatable); default: #incidents, #security"
    )
    parser.add_argument(
        "--webhook", action="append", help="NAME=CHANNEL (repeatable); default: incidents=incidents"
    )
    args = parser.parse_args(argv)

    channels: dict[str, str] | list[str] | None = None
    if args.channel:
        if all("=" in c for c in args.channel):
            channels = dict(c.split("=", 1) for c in args.channel)
        elif any("=" in c for c in args.channel):
            parser.error("give every --channel as NAME, or every one as ID=NAME")
        else:
            channels = list(args.channel)
    webhooks = None
    if args.webhook:
        if not all("=" in w for w in args.webhook):
            parser.error("--webhook takes NAME=CHANNEL")
        webhooks = dict(w.split("=", 1) for w in args.webhook)

    server = SlackServer(
        port=args.port,
        state_dir=args.state_dir,
        tokens=args.token,
        channels=channels,
        webhooks=webhooks,
        host=args.host,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"listening {server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
