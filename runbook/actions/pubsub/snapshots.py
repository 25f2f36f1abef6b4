"""Pub/Sub snapshots: ``pubsub.create_snapshot`` and ``pubsub.list_snapshots``, and a snapshot's age.

The emulator accepts snapshot labels but does not store them. A snapshot's age therefore comes
from, in order, the ``runbook-created`` label (kept by Pub/Sub), the timestamp in the name runbook
gives snapshots (``<subscription>-snapshot-YYYYmmdd-HHMMSS``, UTC), and ``expire_time - 7 days``.
The last one is an upper bound of the age on Pub/Sub (a snapshot of a subscription with an old
backlog expires sooner), exact on the emulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from runbook.actions.pubsub.params import NAME_RE, SnapshotFilter, SubscriptionParams, show, target_of
from runbook.actions.pubsub.session import CALL_TIMEOUT, Session, iso, short
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import find_stamp, iso_z, stamp, utc_now

LABEL_RUNBOOK = "runbook"
LABEL_CREATED = "runbook-created"
LABEL_SUBSCRIPTION = "runbook-subscription"
SNAPSHOT_LIFETIME = timedelta(days=7)


def _label_value(text: str) -> str:
    """Label values: lowercase letters, digits, _ and -, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


@dataclass(frozen=True)
class Snap:
    """The fields of a snapshot we use, read once from the raw protobuf (proto-plus attribute
    access costs microseconds each, which shows on a listing's total)."""

    name: str
    topic: str
    labels: dict[str, str]
    expire_time: datetime | None


def _snap(snap: Any) -> Snap:
    pb = type(snap).pb(snap) if hasattr(type(snap), "pb") else snap
    expire = None
    if pb.HasField("expire_time"):
        expire = datetime.fromtimestamp(pb.expire_time.seconds + pb.expire_time.nanos / 1e9, UTC)
    return Snap(name=pb.name, topic=pb.topic, labels=dict(pb.labels), expire_time=expire)


def snapshot_created(snap: Any) -> datetime:
    """When a snapshot was taken (label, name timestamp, or expire_time - 7 days; see module doc)."""
    for text in ((snap.labels or {}).get(LABEL_CREATED), short(snap.name)):
        found = find_stamp(text) if text else None  # by hand: strptime costs more than a listing
        if found is not None:
            return found
    expire = snap.expire_time
    if expire is None:
        return utc_now()
    return datetime.fromtimestamp(expire.timestamp(), UTC) - SNAPSHOT_LIFETIME


def matching(s: Session, prefix: str | None, topic: str | None) -> list[tuple[datetime, Snap]]:
    """The project's snapshots with an id starting with ``prefix`` and of ``topic``, oldest first."""
    topic_path = s.clients.topic_path(topic) if topic else None
    found = []
    for raw in s.snapshots():
        snap = _snap(raw)
        if (not prefix or short(snap.name).startswith(prefix)) and (
            not topic_path or snap.topic == topic_path
        ):
            found.append((snapshot_created(snap), snap))
    return sorted(found, key=lambda item: (item[0], item[1].name))


# --- pubsub.create_snapshot ------------------------------------------------------------------


class CreateSnapshotParams(SubscriptionParams):
    snapshot: str | None = Field(None, pattern=NAME_RE)
    """Snapshot id (default <subscription>-snapshot-YYYYmmdd-HHMMSS)."""


class CreateSnapshotOutputs(ActionOutputs):
    snapshot: str
    """Snapshot id."""
    name: str
    """Full snapshot path."""
    expire_time: str
    """When Pub/Sub drops it (UTC)."""
    created: str
    """When it was taken (UTC)."""


def _describe_create(p: CreateSnapshotParams) -> str:
    sub = show(p.subscription, "pubsub_subscription")
    snap = p.snapshot or f"{short(sub)}-snapshot-<YYYYmmdd-HHMMSS>"
    return f"pubsub.create_snapshot(name={snap}, subscription={sub})"


@action("pubsub.create_snapshot", Effect.MUTATING,
        "Snapshot a subscription's acknowledgment state (seek back to it to replay; kept up to 7 days).",
        target=lambda p: show(p.subscription, "pubsub_subscription"), describe=_describe_create)
def create_snapshot(ctx: StepContext, params: CreateSnapshotParams) -> CreateSnapshotOutputs:
    s, sub = Session.for_subscription(ctx, params.subscription)
    now = utc_now()
    taken = stamp(now, sep="-")
    snap_id = short(params.snapshot) if params.snapshot else f"{short(sub)[:230]}-snapshot-{taken}"
    path = s.clients.snapshot_path(params.snapshot or snap_id)
    labels = {LABEL_RUNBOOK: "true", LABEL_CREATED: taken, LABEL_SUBSCRIPTION: _label_value(short(sub))}
    with s.api(f"create snapshot {snap_id} of {short(sub)}"):
        snap = s.clients.subscriber.create_snapshot(
            request={"name": path, "subscription": sub, "labels": labels}, retry=s.retry, timeout=CALL_TIMEOUT
        )
    expire = iso(datetime.fromtimestamp(snap.expire_time.timestamp(), UTC)) if snap.expire_time else ""
    ctx.log(f"snapshot {path} of {sub} created" + (f", expires {expire}" if expire else ""))
    return CreateSnapshotOutputs(snapshot=snap_id, name=path, expire_time=expire, created=iso_z(now))


# --- pubsub.list_snapshots -------------------------------------------------------------------


class ListSnapshotsParams(SnapshotFilter):
    required: bool = Field(False, description="Fail when no snapshot matches.")


class ListSnapshotsOutputs(ActionOutputs):
    names: list[str]
    """Snapshot ids, oldest first."""
    latest: str
    """The newest ('' if none)."""
    count: int
    """How many."""
    expire_times: dict[str, str]
    """Snapshot → expire_time (UTC)."""


def _describe_list(p: ListSnapshotsParams) -> str:
    filters = [f for f in (p.prefix and f"id starts with {p.prefix}", p.topic and f"topic {p.topic}") if f]
    return "pubsub.list_snapshots(project)" + (f" where {' and '.join(filters)}" if filters else "")


@action("pubsub.list_snapshots", Effect.READ_ONLY,
        "List the project's Pub/Sub snapshots (optionally by id prefix or topic), oldest first.",
        target=target_of, describe=_describe_list)
def list_snapshots(ctx: StepContext, params: ListSnapshotsParams) -> ListSnapshotsOutputs:
    s = Session.open(ctx)
    found = matching(s, params.prefix, params.topic)
    now = utc_now()
    for created, snap in found:
        ago = format_duration((now - created).total_seconds())
        ctx.log(f"{short(snap.name)}  taken ~{iso(created)} ({ago} ago), topic {short(snap.topic)}")
    if not found and params.required:
        where = f" {params.prefix}*" if params.prefix else ""
        raise ActionError(f"No Pub/Sub snapshot matches{where} in project {s.clients.project}.")
    names = [short(snap.name) for _c, snap in found]
    return ListSnapshotsOutputs(
        names=names,
        latest=names[-1] if names else "",
        count=len(names),
        expire_times={
            short(snap.name): iso(snap.expire_time) if snap.expire_time else "" for _c, snap in found
        },
    )
