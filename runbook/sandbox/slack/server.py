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
from runbook.sandbox.webserver import BackgroundServer, Connections, StandIn, serve_until_signalled

log = logging.getLogger(__name__)

INFO_FILE = "slack-server.json"
_CONTROL_KEYS = ("count", "retry_after", "error", "status", "delay", "methods")


class SlackServer(StandIn):
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
        self._serve(app, self._requested_port, name="slack-server", connections=connections)
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

    @property
    def port(self) -> int:
        """The bound TCP port (only after :meth:`start`)."""
        return self._serving().port

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

    def set_fault(self, fault: str, **options: Any) -> Fault | None:
        """Change how the server answers API and webhook requests.

        Args:
            fault: One of ``FAULTS``.
            options: ``count``, ``retry_after``, ``error``, ``status``, ``delay``, ``methods``:
                see :func:`~runbook.sandbox.slack.faults.fault_spec`.

        Returns:
            The fault now in force, or None after ``clear``.

        Raises:
            ValueError: For an unknown fault or a bad argument.
        """
        return self._faults.set(fault_spec(fault, **options))

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


def _server_options(argv: list[str] | None) -> dict[str, Any]:
    """:class:`SlackServer`'s keyword arguments from the command line."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.slack",
        description="A local server that speaks the Slack Web API and incoming-webhook HTTP surface.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", help="where slack-messages.jsonl and slack-server.json go")
    parser.add_argument(
        "--token", action="append", dest="tokens", metavar="TOKEN",
        help="a valid token (repeatable); default: DEFAULT_TOKEN",
    )  # fmt: skip
    parser.add_argument(
        "--channel", action="append", dest="channels", metavar="CHANNEL",
        help="NAME or ID=NAME (repeatable); default: #incidents, #security",
    )  # fmt: skip
    parser.add_argument(
        "--webhook", action="append", dest="webhooks", metavar="WEBHOOK",
        help="NAME=CHANNEL (repeatable); default: incidents=incidents",
    )  # fmt: skip
    options = vars(parser.parse_args(argv))
    channels, webhooks = options["channels"], options["webhooks"]
    if channels and all("=" in c for c in channels):
        options["channels"] = dict(c.split("=", 1) for c in channels)
    elif channels and any("=" in c for c in channels):
        parser.error("give every --channel as NAME, or every one as ID=NAME")
    if webhooks:
        if not all("=" in w for w in webhooks):
            parser.error("--webhook takes NAME=CHANNEL")
        options["webhooks"] = dict(w.split("=", 1) for w in webhooks)
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print ``listening http://127.0.0.1:PORT`` once bound.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    server = SlackServer(**_server_options(argv))
    return serve_until_signalled(lambda: server.start().base_url, server.stop)


if __name__ == "__main__":
    sys.exit(main())
