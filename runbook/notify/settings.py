"""Slack settings: the environment's ``slack`` store over ``[notify.slack]`` (variable names only;
the token or webhook URL is read from the environment when sending)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.core.environment import Environment
    from runbook.stores.config import Config


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
