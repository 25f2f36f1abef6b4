"""Drill events and counts: ``pubsub.publish_events`` and ``pubsub.drain_count``.

They make a replay provable in a drill: the event ids drained after a seek are exactly the ones
the failed job swallowed. Pulls without ``return_immediately`` return empty after about a second
on the emulator when nothing is left (Pub/Sub may instead hit the deadline); both mean "idle".
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from runbook.actions.pubsub.params import NAME_RE, SubscriptionParams, show
from runbook.actions.pubsub.session import CALL_TIMEOUT, Session, iso, short
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import stamp, utc_now

ACK_CHUNK = 500
PUBLISH_WAIT = 60.0
EVENT_TYPES = ["view", "add_to_cart", "purchase"]


# --- pubsub.publish_events -------------------------------------------------------------------


class PublishEventsParams(ActionParams):
    topic: str | None = Field(None, pattern=NAME_RE, description="Default: the gcp store's pubsub_topic.")
    count: int = Field(1000, ge=1, le=1_000_000)
    id_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_:.-]{0,64}$")
    """Event id prefix (default E<YYYYmmddHHMMSS>-)."""
    start: int = Field(0, ge=0, description="Number of the first event (ids are <prefix><number:06d>).")
    seed: int | None = Field(None, description="Random seed for reproducible events.")


class PublishEventsOutputs(ActionOutputs):
    count: int
    """Messages published."""
    first_message_id: str
    """Message id of the first."""
    last_message_id: str
    """Message id of the last."""
    first_event_id: str
    """Event id of the first."""
    last_event_id: str
    """Event id of the last."""


def _event(event_id: str, rng: random.Random, at: datetime) -> bytes:
    """One generated e-commerce event as JSON."""
    body = {
        "event_id": event_id,
        "type": rng.choice(EVENT_TYPES),
        "product_id": f"P{rng.randint(1, 200):04d}",
        "ts": iso(at),
    }
    return json.dumps(body, sort_keys=True).encode()


def _publish(
    ctx: StepContext, s: Session, topic: str, event_ids: list[str], seed: int | None, now: datetime
) -> list[str]:
    """Publish the events (stopping between batches when the operator asks); their message ids."""
    rng = random.Random(seed)  # noqa: S311 - drill data, not secrets
    futures = []
    with s.api(f"publish to {short(topic)}"):
        for i, eid in enumerate(event_ids):
            if i % 1000 == 0 and ctx.cancelled.is_set():
                break
            data = _event(eid, rng, now + timedelta(milliseconds=i))
            futures.append(
                s.clients.publisher.publish(topic, data, retry=s.retry, timeout=CALL_TIMEOUT, event_id=eid)
            )
        return [f.result(timeout=PUBLISH_WAIT) for f in futures]


@action(
    "pubsub.publish_events",
    Effect.MUTATING,
    "Publish N generated e-commerce events (JSON, event_id also as attribute) for a drill.",
    target=lambda p: show(p.topic, "pubsub_topic"),
    describe=lambda p: f"pubsub.publish({show(p.topic, 'pubsub_topic')}, {p.count} generated events)",
)
def publish_events(ctx: StepContext, params: PublishEventsParams) -> PublishEventsOutputs:
    s = Session.open(ctx)
    topic = s.topic(params.topic)
    now = utc_now()
    prefix = params.id_prefix if params.id_prefix is not None else f"E{stamp(now, sep='')}-"
    event_ids = [f"{prefix}{n:06d}" for n in range(params.start, params.start + params.count)]
    message_ids = _publish(ctx, s, topic, event_ids, params.seed, now)
    if len(message_ids) < len(event_ids):
        raise ActionError(
            f"Publishing was stopped by the operator after {len(message_ids)} of {len(event_ids)} events."
        )
    ctx.log(f"published {len(message_ids):,} events to {topic} ({event_ids[0]} … {event_ids[-1]})")
    return PublishEventsOutputs(
        count=len(message_ids),
        first_message_id=message_ids[0],
        last_message_id=message_ids[-1],
        first_event_id=event_ids[0],
        last_event_id=event_ids[-1],
    )


# --- pubsub.drain_count ----------------------------------------------------------------------


class DrainCountParams(SubscriptionParams):
    idle_seconds: float = Field(2.0, ge=0.5, le=120, description="Stop once nothing arrived for this long.")
    max_messages: int = Field(1_000_000, ge=1, description="Stop after this many messages.")
    batch: int = Field(1000, ge=1, le=1000, description="Messages per pull.")
    id_field: str = Field("event_id", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    """Attribute or JSON field holding the event id."""
    expect_count: int | None = Field(None, ge=0)
    """Fail unless exactly this many distinct events arrived."""


class DrainCountOutputs(ActionOutputs):
    count: int
    """Messages received (duplicates included)."""
    unique: int
    """Distinct event ids."""
    duplicates: int
    """Messages received more than once."""
    event_ids: list[str]
    """Distinct event ids, sorted."""
    first_event_id: str
    """Smallest event id ('' if none)."""
    last_event_id: str
    """Largest event id ('' if none)."""


def _event_id(message: Any, id_field: str) -> str:
    found = message.attributes.get(id_field)
    if found:
        return str(found)
    try:
        data = json.loads(message.data)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and data.get(id_field) is not None:
        return str(data[id_field])
    return f"message:{message.message_id}"


@dataclass
class _Drained:
    received: int = 0
    seen: dict[str, int] = field(default_factory=dict)


def _pull(s: Session, sub: str, want: int, timeout: float) -> list[Any]:
    from google.api_core.exceptions import DeadlineExceeded

    with s.api(f"pull from {short(sub)}"):
        try:
            response = s.clients.subscriber.pull(
                request={"subscription": sub, "max_messages": want}, retry=s.retry, timeout=timeout
            )
            return list(response.received_messages)
        except DeadlineExceeded:
            return []  # nothing arrived within the pull's deadline


def _acknowledge(s: Session, sub: str, ack_ids: list[str]) -> None:
    with s.api(f"acknowledge messages of {short(sub)}"):
        for i in range(0, len(ack_ids), ACK_CHUNK):
            s.clients.subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": ack_ids[i : i + ACK_CHUNK]},
                retry=s.retry,
                timeout=CALL_TIMEOUT,
            )


def _drain(ctx: StepContext, s: Session, sub: str, params: DrainCountParams) -> _Drained:
    """Pull and ack until nothing arrived for ``idle_seconds`` (or ``max_messages`` arrived)."""
    out = _Drained()
    last_message = time.monotonic()
    pull_timeout = max(params.idle_seconds, 1.0)
    while out.received < params.max_messages:
        if ctx.cancelled.is_set():
            raise ActionError(
                f"Draining {short(sub)} was stopped by the operator "
                f"after {out.received} messages (all acked)."
            )
        messages = _pull(s, sub, min(params.batch, params.max_messages - out.received), pull_timeout)
        if not messages:
            if time.monotonic() - last_message >= params.idle_seconds:
                break
            continue
        last_message = time.monotonic()
        _acknowledge(s, sub, [m.ack_id for m in messages])
        for m in messages:
            eid = _event_id(m.message, params.id_field)
            out.seen[eid] = out.seen.get(eid, 0) + 1
        out.received += len(messages)
        ctx.log(f"{short(sub)}: {out.received:,} messages pulled and acked")
    return out


def _describe_drain(p: DrainCountParams) -> str:
    sub = show(p.subscription, "pubsub_subscription")
    return f"pubsub.pull({sub}, max_messages={p.batch}) + acknowledge, until idle for {p.idle_seconds:g}s"


@action("pubsub.drain_count", Effect.MUTATING,  # acking consumes the messages
        "Pull and acknowledge every available message of a subscription; count them and list their event ids.",
        target=lambda p: show(p.subscription, "pubsub_subscription"), describe=_describe_drain)
def drain_count(ctx: StepContext, params: DrainCountParams) -> DrainCountOutputs:
    """Pull and ack everything available; report how many and which events.

    Used after a seek to prove the replay delivered exactly the lost window (compare
    ``event_ids`` with what was published).
    """
    s, sub = Session.for_subscription(ctx, params.subscription)
    drained = _drain(ctx, s, sub, params)
    event_ids = sorted(drained.seen)
    duplicates = drained.received - len(event_ids)
    ctx.log(
        f"{short(sub)}: drained {drained.received:,} messages, {len(event_ids):,} distinct events"
        + (f" ({event_ids[0]} … {event_ids[-1]})" if event_ids else "")
        + (f", {duplicates} duplicates" if duplicates else "")
    )
    if params.expect_count is not None and len(event_ids) != params.expect_count:
        raise ActionError(
            f"{short(sub)} delivered {len(event_ids):,} distinct events, expected {params.expect_count:,}."
        )
    return DrainCountOutputs(
        count=drained.received,
        unique=len(event_ids),
        duplicates=duplicates,
        event_ids=event_ids,
        first_event_id=event_ids[0] if event_ids else "",
        last_event_id=event_ids[-1] if event_ids else "",
    )
