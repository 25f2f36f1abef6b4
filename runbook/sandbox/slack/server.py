"""The Slack stand-in's server object and command line (``python -m runbook.sandbox.slack``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runbook.sandbox.slack.api import SlackApi
from runbook.sandbox.slack.faults import Fault, Faults, fault_spec
from runbook.sandbox.slack.state import MessageStore, Record
from runbook.sandbox.slack.workspace import Workspace
from runbook.sandbox.webserver import BackgroundServer, Connections, serve_until_signalled

log = logging.getLogger(__name__)

INFO_FILE = "slack-server.json"
_CONTROL_KEYS = ("count", "retry_after", "error", "status", "delay", "methods")


class SlackServer:
    """An in-process Slack Web API and incoming-webhook server for the sandbox and tests.

    Example::

        with SlackServer(tokens=["xoxb-test"]) as server:
            client = WebClient(token="xoxb-test", base_url=server.url)
            client.chat_postMessage(channel="#incidents", text="hi")
            assert server.messages()[0]["text"] == "hi"

    Args:
        port: TCP port; 0 picks a free one (see :attr:`port` after start).
        state_dir: Directory for ``slack-messages.jsonl`` and ``slack-server.json``. Messages
            already in it are loaded, so a restarted server can still update them.
        tokens: Valid tokens, as a list or as ``{label: token}``; records carry the label
            (``token-0``... for a list). Defaults to ``DEFAULT_TOKEN``.
        channels: Known channels, as ``{id: name}`` or a list of names (ids derived from the
            name). Defaults to ``DEFAULT_CHANNELS``. Names may be given with or without ``#``.
        webhooks: ``{name: channel}`` or ``{name: (channel, path)}``; the path defaults to
            ``webhook_path``. Defaults to ``DEFAULT_WEBHOOKS``.
        host: Interface to bind.
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
        self.host = host
        self._requested_port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._workspace = Workspace(tokens, channels, webhooks)
        self._store = MessageStore(self.state_dir)
        self._faults = Faults()
        self._http: BackgroundServer | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SlackServer:
        """Bind and serve in a background thread.

        Returns:
            The server itself, for chaining.
        """
        if self._http is not None:
            return self
        from runbook.sandbox.slack.routes import build_app

        connections = Connections()
        app = build_app(self, SlackApi(self._workspace, self._store, self._faults), connections)
        http = BackgroundServer(
            app, self.host, self._requested_port, name="slack-server", connections=connections
        )
        http.start()
        self._http = http
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            info = {
                "url": self.url,
                "base_url": self.base_url,
                "webhooks": {name: self.webhook_url(name) for name in self._workspace.webhook_paths},
                "channels": dict(self._workspace.channels),
            }
            (self.state_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        log.debug("slack stand-in listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent); later connections are refused."""
        http, self._http = self._http, None
        if http is not None:
            http.stop()

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only after :meth:`start`)."""
        if self._http is None:
            raise RuntimeError("SlackServer is not started")
        return self._http.port

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

        Raises:
            KeyError: If no webhook has that name.
        """
        return self.base_url + self._workspace.webhook_paths[name]

    # ----------------------------------------------------------------- inspection

    def messages(self, channel: str | None = None) -> list[Record]:
        """Return copies of the accepted messages (latest version of each), oldest first.

        Each record has ``channel`` (id), ``channel_name``, ``ts``, ``thread_ts`` (root ts, or
        None), ``text``, ``blocks``, ``attachments``, ``via`` (``api``/``webhook``), ``token``
        (label, or None), ``token_fingerprint``, ``webhook`` (name, or None), ``received_at``
        (epoch seconds), ``edited`` (number of ``chat.update`` calls) and ``edited_ts``.

        Args:
            channel: Only this channel (id or name).
        """
        channel_id = self._workspace.resolve_channel(channel) if channel is not None else None
        if channel is not None and channel_id is None:
            return []
        return self._store.messages(channel_id)

    def stats(self) -> dict[str, Any]:
        """Return request counters (for ``/api/`` and ``/services/`` only).

        Returns:
            ``{"requests": N, "by_method": {...}, "by_status": {...}, "within_retry_after": N,
            "log": [{"t": epoch, "method": ..., "status": int|None, "error": str|None,
            "within_retry_after": bool}, ...]}``; status None means the connection was dropped.
        """
        return self._faults.stats()

    def reset_stats(self) -> None:
        """Zero the request counters and log."""
        self._faults.reset_stats()

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
    ) -> Fault | None:
        """Change how the server answers API and webhook requests.

        Args:
            fault: One of ``FAULTS``.
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
        spec = fault_spec(
            fault,
            count=count,
            retry_after=retry_after,
            error=error,
            status=status,
            delay=delay,
            methods=methods,
        )
        return self._faults.set(spec)

    def clear_faults(self) -> None:
        """Return to normal answers."""
        self.set_fault("clear")

    def fault(self) -> Fault | None:
        """Return the fault in force (with ``remaining``), or None."""
        return self._faults.current()

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
            kwargs = {k: payload[k] for k in _CONTROL_KEYS if k in payload}
            self.set_fault(str(payload["fault"]), **kwargs)
        return {"ok": True, "fault": self.fault()}


def _parse_args(argv: list[str] | None) -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.slack",
        description="A local server that speaks the Slack Web API and incoming-webhook HTTP surface.",
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
    args.channels = None
    if args.channel:
        if all("=" in c for c in args.channel):
            args.channels = dict(c.split("=", 1) for c in args.channel)
        elif any("=" in c for c in args.channel):
            parser.error("give every --channel as NAME, or every one as ID=NAME")
        else:
            args.channels = list(args.channel)
    args.webhooks = None
    if args.webhook:
        if not all("=" in w for w in args.webhook):
            parser.error("--webhook takes NAME=CHANNEL")
        args.webhooks = dict(w.split("=", 1) for w in args.webhook)
    return args


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print ``listening http://127.0.0.1:PORT`` once bound.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    args = _parse_args(argv)
    server = SlackServer(
        port=args.port,
        state_dir=args.state_dir,
        tokens=args.token,
        channels=args.channels,
        webhooks=args.webhooks,
        host=args.host,
    )
    return serve_until_signalled(lambda: server.start().base_url, server.stop)


if __name__ == "__main__":
    sys.exit(main())
