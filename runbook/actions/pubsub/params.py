"""The parameters the Pub/Sub actions share: resource names, the subscription, the snapshot filter."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.spec import ActionParams

# A resource id (3-255 chars, starting with a letter) or its full projects/P/KIND/ID path.
NAME_RE = r"^(projects/[a-z][a-z0-9.:-]+/(topics|subscriptions|snapshots)/)?[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
PREFIX_RE = r"^[A-Za-z][A-Za-z0-9._~+%-]{0,254}$"


def show(value: str | None, key: str) -> str:
    """A name as a description shows it: given, or the gcp store setting it defaults to."""
    return value or f"{{env.gcp.{key}}}"


class SubscriptionParams(ActionParams):
    subscription: str | None = Field(None, pattern=NAME_RE)
    """Default: the gcp store's pubsub_subscription."""


class SnapshotFilter(ActionParams):
    prefix: str | None = Field(None, pattern=PREFIX_RE, description="Only snapshot ids starting with this.")
    topic: str | None = Field(None, pattern=NAME_RE, description="Only snapshots of this topic.")


def target_of(p: SnapshotFilter) -> str:
    return f"{p.prefix}*" if p.prefix else "pubsub snapshots"
