"""The Slack stand-in's workspace: valid tokens, known channels and incoming webhooks.

Token values are never logged or written: records carry the token's label and a short SHA-256
fingerprint (:func:`token_fingerprint`). Webhook paths are deterministic (:func:`webhook_path`) so
that a process that only knows a webhook's name (and the port) can build its URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_TOKEN = "xoxb-0000000000-0000000000000-runbooksandbox"
DEFAULT_CHANNELS: dict[str, str] = {"C0INCIDENTS": "incidents", "C0SECURITY": "security"}
DEFAULT_WEBHOOKS: dict[str, str] = {"incidents": "incidents"}
TEAM_ID = "T0SANDBOX"


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

    Args:
        name: The webhook's configured name.

    Returns:
        A path shaped like Slack's, e.g. ``/services/T0SANDBOX/B1A2B3C4D5/0f1e...``.
    """
    digest = hashlib.sha256(f"runbook-sandbox-webhook:{name}".encode()).hexdigest()
    return f"/services/{TEAM_ID}/B{digest[:10].upper()}/{digest[10:34]}"


def _token_labels(tokens: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """token -> label; a plain list is labelled ``token-0``, ``token-1``..."""
    if tokens is None:
        tokens = [DEFAULT_TOKEN]
    pairs = (
        tokens.items() if isinstance(tokens, Mapping) else ((f"token-{i}", t) for i, t in enumerate(tokens))
    )
    return {token: label for label, token in pairs}


def _channel_names(channels: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """channel id -> name; names given alone get an id derived from the name."""
    if channels is None:
        channels = DEFAULT_CHANNELS
    if isinstance(channels, Mapping):
        return {cid: name.lstrip("#") for cid, name in channels.items()}
    out = {}
    for name in channels:
        name = name.lstrip("#")
        out["C" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()] = name
    return out


class Workspace:
    """Who may call and where messages can go.

    Args:
        tokens: Valid tokens, as a list or as ``{label: token}``. Defaults to :data:`DEFAULT_TOKEN`.
        channels: Known channels, as ``{id: name}`` or a list of names. Defaults to
            :data:`DEFAULT_CHANNELS`. Names may be given with or without ``#``.
        webhooks: ``{name: channel}`` or ``{name: (channel, path)}``; the path defaults to
            :func:`webhook_path`. Defaults to :data:`DEFAULT_WEBHOOKS`.

    Raises:
        ValueError: A webhook names an unknown channel.
    """

    def __init__(
        self,
        tokens: Iterable[str] | Mapping[str, str] | None = None,
        channels: Iterable[str] | Mapping[str, str] | None = None,
        webhooks: Mapping[str, str | tuple[str, str]] | None = None,
    ) -> None:
        self.tokens = _token_labels(tokens)  # token -> label
        self.channels = _channel_names(channels)  # id -> name
        self._channel_by_name = {name: cid for cid, name in self.channels.items()}
        self.webhooks: dict[str, tuple[str, str]] = {}  # path -> (name, channel id)
        self.webhook_paths: dict[str, str] = {}  # name -> path
        for name, spec in (DEFAULT_WEBHOOKS if webhooks is None else webhooks).items():
            channel, path = (spec, webhook_path(name)) if isinstance(spec, str) else spec
            channel_id = self.resolve_channel(channel)
            if channel_id is None:
                raise ValueError(f"webhook {name!r} names an unknown channel {channel!r}")
            self.webhooks[path] = (name, channel_id)
            self.webhook_paths[name] = path

    def resolve_channel(self, channel: Any) -> str | None:
        """The id of a channel given by id, name or ``#name``; None if unknown."""
        if not isinstance(channel, str) or not channel:
            return None
        if channel in self.channels:
            return channel
        return self._channel_by_name.get(channel.lstrip("#"))
