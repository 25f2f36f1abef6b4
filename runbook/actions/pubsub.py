"""Pub/Sub actions: snapshots and seek (replay the window a failed job lost), drill events, drains.

The seed keeps Pub/Sub messages for 7 days; when a Dataflow job fails after consuming (acking)
messages it never wrote out, the recovery is: snapshot the subscription before the risky change
(or seek to the time the job broke), restart the job, and seek the subscription back so exactly
the lost window is delivered again. ``publish_events`` and ``drain_count`` make that provable in
a drill: the event ids drained after a seek are exactly the ones the failed job swallowed.

One code path for production and the sandbox (Google's emulator; see
:mod:`runbook.stores.pubsub`). Emulator differences found, and how they are handled:

* Snapshot labels are accepted but not stored. Snapshot age therefore comes from, in order, the
  ``runbook-created`` label (kept by Pub/Sub), the timestamp in the name runbook gives snapshots
  (``<subscription>-snapshot-YYYYmmdd-HHMMSS``), and ``expire_time - 7 days``. The last one is an
  upper bound of the age on Pub/Sub (a snapshot of a subscription with an old backlog expires
  sooner), exact on the emulator.
* Pulls without ``return_immediately`` return empty after about a second when nothing is left
  (Pub/Sub may instead hit the deadline); both mean "idle" to ``drain_count``.
* The emulator is in memory: after a restart topics and subscriptions must be created again.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.actions.bigquery import parse_timestamp
from runbook.core.durations import format_duration
from runbook.core.errors import ActionError
from runbook.stores import gcp
from runbook.stores import pubsub as psstore

# A resource id (3-255 chars, starting with a letter) or its full projects/P/KIND/ID path.
NAME_RE = r"^(projects/[a-z][a-z0-9.:-]+/(topics|subscriptions|snapshots)/)?[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
STAMP = "%Y%m%d-%H%M%S"
SNAP_STAMP_RE = re.compile(r"-(\d{8}-\d{6})$")
_STAMP_RE = re.compile(r"\d{8}-\d{6}")  # STAMP's shape
LABEL_RUNBOOK = "runbook"
LABEL_CREATED = "runbook-created"
LABEL_SUBSCRIPTION = "runbook-subscription"
SNAPSHOT_LIFETIME = timedelta(days=7)
ACK_CHUNK = 500
PUBLISH_WAIT = 60.0


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _label_value(text: str) -> str:
    """Label values: lowercase letters, digits, _ and -, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _show(value: str | None, key: str) -> str:
    return value or f"{{env.gcp.{key}}}"


class _Params(ActionParams):
    pass


class _SubParams(_Params):
    subscription: str | None = Field(None, pattern=NAME_RE, description="Default: the gcp store's pubsub_subscription.")


@dataclass
class _Session:
    ctx: StepContext
    gs: gcp.GcpSettings
    clients: psstore.PubSubClients

    @classmethod
    def open(cls, ctx: StepContext) -> _Session:
        return cls(ctx, gcp.settings(ctx.environment), psstore.client(ctx.environment))

    @property
    def retry(self) -> Any:
        return psstore.retry()

    def name(self, given: str | None, key: str, what: str) -> str:
        if given:
            return given
        found = self.gs.raw.get(key)
        if not found:
            env = self.ctx.environment.name
            raise ActionError(f"No {what} given: set `{what}:` in the step or {key} in [environments.{env}.gcp].")
        return str(found)

    def subscription(self, given: str | None) -> str:
        return self.clients.subscription_path(self.name(given, "pubsub_subscription", "subscription"))

    def topic(self, given: str | None) -> str:
        return self.clients.topic_path(self.name(given, "pubsub_topic", "topic"))

    def api(self, what: str) -> Any:
        """Turn any client error inside the block into one sentence (gcp.translate)."""
        # A gRPC channel to a dead server backs off before reconnecting: start afresh.
        return gcp.api_errors(psstore.STORE, what, self.gs, lambda: psstore.forget(self.ctx.environment))

    def snapshots(self) -> list[Any]:
        with self.api(f"list the snapshots of project {self.clients.project}"):
            return list(
                self.clients.subscriber.list_snapshots(
                    request={"project": f"projects/{self.clients.project}"}, retry=self.retry, timeout=psstore.CALL_TIMEOUT
                )
            )


def snapshot_created(snap: Any) -> datetime:
    """When a snapshot was taken (label, name timestamp, or expire_time - 7 days; see module doc)."""
    labels = dict(snap.labels or {})
    for text in (labels.get(LABEL_CREATED), (SNAP_STAMP_RE.search(_short(snap.name)) or [None, None])[1]):
        if text and _STAMP_RE.fullmatch(text):
            try:  # YYYYmmdd-HHMMSS by hand: strptime costs more than the rest of a listing
                return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                                int(text[11:13]), int(text[13:15]), tzinfo=UTC)
            except ValueError:
                pass
    expire = snap.expire_time
    if expire is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(expire.timestamp(), UTC) - SNAPSHOT_LIFETIME


# --- snapshots -----------------------------------------------------------------------------


class CreateSnapshotParams(_SubParams):
    snapshot: str | None = Field(None, pattern=NAME_RE, description="Snapshot id (default <subscription>-snapshot-YYYYmmdd-HHMMSS).")


class CreateSnapshot(BaseAction):
    name: ClassVar[str] = "pubsub.create_snapshot"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Snapshot a subscription's acknowledgment state (seek back to it to replay; kept up to 7 days)."
    Params = CreateSnapshotParams
    outputs: ClassVar[dict[str, str]] = {
        "snapshot": "Snapshot id.",
        "name": "Full snapshot path.",
        "expire_time": "When Pub/Sub drops it (UTC).",
        "created": "When it was taken (UTC).",
    }

    def target(self, params: CreateSnapshotParams) -> str:
        return _show(params.subscription, "pubsub_subscription")

    def describe(self, params: CreateSnapshotParams) -> str:
        sub = _show(params.subscription, "pubsub_subscription")
        snap = params.snapshot or f"{_short(sub)}-snapshot-<YYYYmmdd-HHMMSS>"
        return f"pubsub.create_snapshot(name={snap}, subscription={sub})"

    def run(self, ctx: StepContext, params: CreateSnapshotParams) -> dict[str, Any]:
        s = _Session.open(ctx)
        sub = s.subscription(params.subscription)
        now = datetime.now(UTC)
        snap_id = _short(params.snapshot) if params.snapshot else f"{_short(sub)[:230]}-snapshot-{now.strftime(STAMP)}"
        path = s.clients.snapshot_path(params.snapshot or snap_id)
        labels = {LABEL_RUNBOOK: "true", LABEL_CREATED: now.strftime(STAMP), LABEL_SUBSCRIPTION: _label_value(_short(sub))}
        with s.api(f"create snapshot {snap_id} of {_short(sub)}"):
            snap = s.clients.subscriber.create_snapshot(
                request={"name": path, "subscription": sub, "labels": labels}, retry=s.retry, timeout=psstore.CALL_TIMEOUT
            )
        expire = _iso(datetime.fromtimestamp(snap.expire_time.timestamp(), UTC)) if snap.expire_time else ""
        ctx.log(f"snapshot {path} of {sub} created" + (f", expires {expire}" if expire else ""))
        return {"snapshot": snap_id, "name": path, "expire_time": expire, "created": _iso(now.replace(microsecond=0))}


class SeekParams(_SubParams):
    snapshot: str | None = Field(None, pattern=NAME_RE, description="Seek to this snapshot...")
    timestamp: str | None = Field(None, description="...or to this time (ISO 8601; UTC if no offset).")

    @field_validator("timestamp")
    @classmethod
    def _ts(cls, v: str | None) -> str | None:
        if v is not None:
            parse_timestamp(v)
        return v

    @model_validator(mode="after")
    def _one(self) -> SeekParams:
        if (self.snapshot is None) == (self.timestamp is None):
            raise ValueError("give exactly one of snapshot and timestamp")
        return self


class Seek(BaseAction):
    name: ClassVar[str] = "pubsub.seek"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Seek a subscription to a snapshot or a time: messages acked after it are delivered again."
    Params = SeekParams
    outputs: ClassVar[dict[str, str]] = {"subscription": "Full subscription path.", "to": "The snapshot path or the time (UTC)."}

    def target(self, params: SeekParams) -> str:
        return _show(params.subscription, "pubsub_subscription")

    def describe(self, params: SeekParams) -> str:
        sub = _show(params.subscription, "pubsub_subscription")
        to = f"snapshot={params.snapshot}" if params.snapshot else f"time={_iso(parse_timestamp(params.timestamp or ''))}"
        return f"pubsub.seek(subscription={sub}, {to})"

    def run(self, ctx: StepContext, params: SeekParams) -> dict[str, Any]:
        s = _Session.open(ctx)
        sub = s.subscription(params.subscription)
        request: dict[str, Any] = {"subscription": sub}
        if params.snapshot:
            request["snapshot"] = to = s.clients.snapshot_path(params.snapshot)
        else:
            when = parse_timestamp(params.timestamp or "")
            request["time"] = when
            to = _iso(when)
            with s.api(f"read subscription {_short(sub)}"):
                info = s.clients.subscriber.get_subscription(
                    request={"subscription": sub}, retry=s.retry, timeout=psstore.CALL_TIMEOUT
                )
            if not info.retain_acked_messages:
                ctx.log(f"WARNING: {_short(sub)} does not retain acked messages: only unacked ones after {to} come back")
        with s.api(f"seek {_short(sub)} to {to}"):
            s.clients.subscriber.seek(request=request, retry=s.retry, timeout=psstore.CALL_TIMEOUT)
        ctx.log(f"seeked {sub} to {to}: messages acked since then will be delivered again")
        return {"subscription": sub, "to": to}


class ListSnapshotsParams(_Params):
    prefix: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9._~+%-]{0,254}$", description="Only snapshot ids starting with this.")
    topic: str | None = Field(None, pattern=NAME_RE, description="Only snapshots of this topic.")
    required: bool = Field(False, description="Fail when no snapshot matches.")


@dataclass(frozen=True)
class _Snap:
    """The fields of a snapshot we use, read once from the raw protobuf (proto-plus attribute
    access costs microseconds each, which shows on a listing's total)."""

    name: str
    topic: str
    labels: dict[str, str]
    expire_time: datetime | None


def _snap(snap: Any) -> _Snap:
    pb = type(snap).pb(snap) if hasattr(type(snap), "pb") else snap
    expire = None
    if pb.HasField("expire_time"):
        expire = datetime.fromtimestamp(pb.expire_time.seconds + pb.expire_time.nanos / 1e9, UTC)
    return _Snap(name=pb.name, topic=pb.topic, labels=dict(pb.labels), expire_time=expire)


def _matching(s: _Session, prefix: str | None, topic: str | None) -> list[tuple[datetime, Any]]:
    topic_path = s.clients.topic_path(topic) if topic else None
    found = []
    for raw in s.snapshots():
        snap = _snap(raw)
        if (not prefix or _short(snap.name).startswith(prefix)) and (not topic_path or snap.topic == topic_path):
            found.append((snapshot_created(snap), snap))
    return sorted(found, key=lambda item: (item[0], item[1].name))


class ListSnapshots(BaseAction):
    name: ClassVar[str] = "pubsub.list_snapshots"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "List the project's Pub/Sub snapshots (optionally by id prefix or topic), oldest first."
    Params = ListSnapshotsParams
    outputs: ClassVar[dict[str, str]] = {
        "names": "Snapshot ids, oldest first.",
        "latest": "The newest ('' if none).",
        "count": "How many.",
        "expire_times": "Snapshot → expire_time (UTC).",
    }

    def target(self, params: ListSnapshotsParams) -> str:
        return f"{params.prefix}*" if params.prefix else "pubsub snapshots"

    def describe(self, params: ListSnapshotsParams) -> str:
        filters = [f for f in (params.prefix and f"id starts with {params.prefix}", params.topic and f"topic {params.topic}") if f]
        return "pubsub.list_snapshots(project)" + (f" where {' and '.join(filters)}" if filters else "")

    def run(self, ctx: StepContext, params: ListSnapshotsParams) -> dict[str, Any]:
        s = _Session.open(ctx)
        found = _matching(s, params.prefix, params.topic)
        now = datetime.now(UTC)
        for created, snap in found:
            ctx.log(f"{_short(snap.name)}  taken ~{_iso(created)} ({format_duration((now - created).total_seconds())} ago), topic {_short(snap.topic)}")
        if not found and params.required:
            raise ActionError("No Pub/Sub snapshot matches" + (f" {params.prefix}*" if params.prefix else "") + f" in project {s.clients.project}.")
        names = [_short(snap.name) for _c, snap in found]
        return {
            "names": names,
            "latest": names[-1] if names else "",
            "count": len(names),
            "expire_times": {_short(snap.name): _iso(snap.expire_time) if snap.expire_time else "" for _c, snap in found},
        }


class PruneSnapshotsParams(ListSnapshotsParams):
    older_than_days: float = Field(3, gt=0, description="Delete snapshots taken more than this many days ago.")
    keep_latest: int = Field(1, ge=0, description="Always keep this many newest matching snapshots.")
    required: bool = False


class PruneSnapshots(BaseAction):
    name: ClassVar[str] = "pubsub.prune_snapshots"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Delete Pub/Sub snapshots older than N days (by id prefix or topic), keeping the newest."
    Params = PruneSnapshotsParams
    outputs: ClassVar[dict[str, str]] = {"deleted": "Snapshot ids deleted.", "kept": "Snapshot ids kept."}

    def target(self, params: PruneSnapshotsParams) -> str:
        return f"{params.prefix}*" if params.prefix else "pubsub snapshots"

    def describe(self, params: PruneSnapshotsParams) -> str:
        where = f"{params.prefix}*" if params.prefix else "every snapshot"
        topic = f" of topic {params.topic}" if params.topic else ""
        return f"pubsub.delete_snapshot({where}{topic} older than {params.older_than_days:g} days), keeping the newest {params.keep_latest}"

    def run(self, ctx: StepContext, params: PruneSnapshotsParams) -> dict[str, Any]:
        s = _Session.open(ctx)
        found = _matching(s, params.prefix, params.topic)
        cutoff = datetime.now(UTC) - timedelta(days=params.older_than_days)
        protected = {snap.name for _c, snap in found[len(found) - params.keep_latest :]} if params.keep_latest else set()
        deleted: list[str] = []
        for created, snap in found:
            if created >= cutoff or snap.name in protected:
                continue
            if ctx.cancelled.is_set():
                raise ActionError(f"Pruning snapshots was stopped by the operator after {len(deleted)} deletions.")
            with s.api(f"delete snapshot {_short(snap.name)}"):
                s.clients.subscriber.delete_snapshot(request={"snapshot": snap.name}, retry=s.retry, timeout=psstore.CALL_TIMEOUT)
            deleted.append(_short(snap.name))
            ctx.log(f"deleted snapshot {_short(snap.name)} (taken ~{_iso(created)})")
        kept = [_short(snap.name) for _c, snap in found if _short(snap.name) not in deleted]
        ctx.log(f"deleted {len(deleted)}, kept {len(kept)}")
        return {"deleted": deleted, "kept": kept}


# --- drill events --------------------------------------------------------------------------


class PublishEventsParams(_Params):
    topic: str | None = Field(None, pattern=NAME_RE, description="Default: the gcp store's pubsub_topic.")
    count: int = Field(1000, ge=1, le=1_000_000)
    id_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_:.-]{0,64}$", description="Event id prefix (default E<YYYYmmddHHMMSS>-).")
    start: int = Field(0, ge=0, description="Number of the first event (ids are <prefix><number:06d>).")
    seed: int | None = Field(None, description="Random seed for reproducible events.")


class PublishEvents(BaseAction):
    name: ClassVar[str] = "pubsub.publish_events"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Publish N generated e-commerce events (JSON, event_id also as attribute) for a drill."
    Params = PublishEventsParams
    outputs: ClassVar[dict[str, str]] = {
        "count": "Messages published.",
        "first_message_id": "Message id of the first.",
        "last_message_id": "Message id of the last.",
        "first_event_id": "Event id of the first.",
        "last_event_id": "Event id of the last.",
    }

    def target(self, params: PublishEventsParams) -> str:
        return _show(params.topic, "pubsub_topic")

    def describe(self, params: PublishEventsParams) -> str:
        return f"pubsub.publish({_show(params.topic, 'pubsub_topic')}, {params.count} generated events)"

    def run(self, ctx: StepContext, params: PublishEventsParams) -> dict[str, Any]:
        s = _Session.open(ctx)
        topic = s.topic(params.topic)
        now = datetime.now(UTC)
        prefix = params.id_prefix if params.id_prefix is not None else f"E{now.strftime('%Y%m%d%H%M%S')}-"
        rng = random.Random(params.seed)
        event_ids = [f"{prefix}{n:06d}" for n in range(params.start, params.start + params.count)]
        what = f"publish to {_short(topic)}"
        futures = []
        with s.api(what):
            for i, eid in enumerate(event_ids):
                if i % 1000 == 0 and ctx.cancelled.is_set():
                    break
                data = json.dumps(
                    {
                        "event_id": eid,
                        "type": rng.choice(["view", "add_to_cart", "purchase"]),
                        "product_id": f"P{rng.randint(1, 200):04d}",
                        "ts": _iso(now + timedelta(milliseconds=i)),
                    },
                    sort_keys=True,
                ).encode()
                futures.append(s.clients.publisher.publish(topic, data, retry=s.retry, timeout=psstore.CALL_TIMEOUT, event_id=eid))
            message_ids = [f.result(timeout=PUBLISH_WAIT) for f in futures]
        if len(message_ids) < len(event_ids):
            raise ActionError(f"Publishing was stopped by the operator after {len(message_ids)} of {len(event_ids)} events.")
        ctx.log(f"published {len(message_ids):,} events to {topic} ({event_ids[0]} … {event_ids[-1]})")
        return {
            "count": len(message_ids),
            "first_message_id": message_ids[0],
            "last_message_id": message_ids[-1],
            "first_event_id": event_ids[0],
            "last_event_id": event_ids[-1],
        }


class DrainCountParams(_SubParams):
    idle_seconds: float = Field(2.0, ge=0.5, le=120, description="Stop once nothing arrived for this long.")
    max_messages: int = Field(1_000_000, ge=1, description="Stop after this many messages.")
    batch: int = Field(1000, ge=1, le=1000, description="Messages per pull.")
    id_field: str = Field("event_id", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", description="Attribute or JSON field holding the event id.")
    expect_count: int | None = Field(None, ge=0, description="Fail unless exactly this many distinct events arrived.")


class DrainCount(BaseAction):
    """Pull and ack everything available; report how many and which events.

    Mutating: acking consumes the messages. Used after a seek to prove the replay delivered
    exactly the lost window (compare ``event_ids`` with what was published).
    """

    name: ClassVar[str] = "pubsub.drain_count"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Pull and acknowledge every available message of a subscription; count them and list their event ids."
    Params = DrainCountParams
    outputs: ClassVar[dict[str, str]] = {
        "count": "Messages received (duplicates included).",
        "unique": "Distinct event ids.",
        "duplicates": "Messages received more than once.",
        "event_ids": "Distinct event ids, sorted.",
        "first_event_id": "Smallest event id ('' if none).",
        "last_event_id": "Largest event id ('' if none).",
    }

    def target(self, params: DrainCountParams) -> str:
        return _show(params.subscription, "pubsub_subscription")

    def describe(self, params: DrainCountParams) -> str:
        sub = _show(params.subscription, "pubsub_subscription")
        return f"pubsub.pull({sub}, max_messages={params.batch}) + acknowledge, until idle for {params.idle_seconds:g}s"

    def _event_id(self, message: Any, field: str) -> str:
        found = message.attributes.get(field)
        if found:
            return str(found)
        try:
            data = json.loads(message.data)
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict) and data.get(field) is not None:
            return str(data[field])
        return f"message:{message.message_id}"

    def run(self, ctx: StepContext, params: DrainCountParams) -> dict[str, Any]:
        from google.api_core.exceptions import DeadlineExceeded

        s = _Session.open(ctx)
        sub = s.subscription(params.subscription)
        seen: dict[str, int] = {}
        received = 0
        last_message = time.monotonic()
        pull_timeout = max(params.idle_seconds, 1.0)
        while received < params.max_messages:
            if ctx.cancelled.is_set():
                raise ActionError(f"Draining {_short(sub)} was stopped by the operator after {received} messages (all acked).")
            want = min(params.batch, params.max_messages - received)
            with s.api(f"pull from {_short(sub)}"):
                try:
                    response = s.clients.subscriber.pull(
                        request={"subscription": sub, "max_messages": want}, retry=s.retry, timeout=pull_timeout
                    )
                    messages = list(response.received_messages)
                except DeadlineExceeded:
                    messages = []  # nothing arrived within the pull's deadline
            if not messages:
                if time.monotonic() - last_message >= params.idle_seconds:
                    break
                continue
            last_message = time.monotonic()
            ack_ids = [m.ack_id for m in messages]
            with s.api(f"acknowledge messages of {_short(sub)}"):
                for i in range(0, len(ack_ids), ACK_CHUNK):
                    s.clients.subscriber.acknowledge(
                        request={"subscription": sub, "ack_ids": ack_ids[i : i + ACK_CHUNK]}, retry=s.retry, timeout=psstore.CALL_TIMEOUT
                    )
            for m in messages:
                eid = self._event_id(m.message, params.id_field)
                seen[eid] = seen.get(eid, 0) + 1
            received += len(messages)
            ctx.log(f"{_short(sub)}: {received:,} messages pulled and acked")
        event_ids = sorted(seen)
        duplicates = received - len(event_ids)
        ctx.log(
            f"{_short(sub)}: drained {received:,} messages, {len(event_ids):,} distinct events"
            + (f" ({event_ids[0]} … {event_ids[-1]})" if event_ids else "")
            + (f", {duplicates} duplicates" if duplicates else "")
        )
        if params.expect_count is not None and len(event_ids) != params.expect_count:
            raise ActionError(f"{_short(sub)} delivered {len(event_ids):,} distinct events, expected {params.expect_count:,}.")
        return {
            "count": received,
            "unique": len(event_ids),
            "duplicates": duplicates,
            "event_ids": event_ids,
            "first_event_id": event_ids[0] if event_ids else "",
            "last_event_id": event_ids[-1] if event_ids else "",
        }


ACTIONS = [CreateSnapshot, Seek, ListSnapshots, PruneSnapshots, PublishEvents, DrainCount]
