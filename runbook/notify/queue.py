"""The outbox's queues: one FIFO per (incident, channel); only a queue's head is ever in flight, so
a thread reply never leaves before its parent and replies keep their order."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from runbook.core.events import NotificationQueued
from runbook.notify.settings import SlackSettings


@dataclass
class Pending:
    """One notification waiting for delivery: the journaled message and its delivery state."""

    incident: str
    msg: NotificationQueued  # exactly what was journaled (notification_queued)
    attempts: int = 0
    degraded: bool = False  # refused for its content once: resend as plain, short text
    unthreaded: bool = False  # its parent message is gone: post at top level
    last_error: str | None = None

    @property
    def id(self) -> str:
        return self.msg["id"]

    @property
    def is_update(self) -> bool:
        return self.msg["kind"] == "update"


@dataclass
class Queue:
    key: tuple[str, str]
    items: deque[Pending] = field(default_factory=deque)
    due: float = 0.0  # monotonic time the head may next be tried
    backoff: float = 0.0
    error: str | None = None  # last error of the head, until it is delivered
    error_kind: str | None = None
    failing_since: float | None = None  # wall-clock time of the first failure of this streak


def pending_from(incident: str, p: dict[str, Any], settings: SlackSettings) -> Pending:
    """A queue entry from a journaled ``notification_queued`` payload.

    Messages for the incident (or security) channel go where the configuration says *now*, so
    fixing a wrong channel in runbook.toml and resuming delivers them.
    """
    role = str(p.get("role") or "incident")
    channel = str(p.get("channel") or settings.channel)
    if settings.via == "webhook":
        channel = "webhook"
    elif role == "incident":
        channel = settings.channel
    elif role == "security" and settings.security_channel:
        channel = settings.security_channel
    msg: NotificationQueued = {
        "id": str(p.get("id", "")),
        "channel": channel,
        "kind": str(p.get("kind") or "reply"),
        "via": str(p.get("via") or "api"),
        "text": str(p.get("text") or ""),
        "blocks": p.get("blocks"),
        "thread": p.get("thread"),
        "update_of": p.get("update_of"),
        "role": role,
    }
    return Pending(incident, msg)
