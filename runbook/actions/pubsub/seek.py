"""``pubsub.seek``: replay the window a failed job lost.

When a Dataflow job fails after consuming (acking) messages it never wrote out, the recovery is:
snapshot the subscription before the risky change (or seek to the time the job broke), restart the
job, and seek the subscription back so exactly the lost window is delivered again.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from runbook.actions.pubsub.params import NAME_RE, SubscriptionParams, show
from runbook.actions.pubsub.session import CALL_TIMEOUT, Session, iso, short
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.timestamps import parse_utc


class SeekParams(SubscriptionParams):
    snapshot: str | None = Field(None, pattern=NAME_RE, description="Seek to this snapshot...")
    timestamp: str | None = Field(None, description="...or to this time (ISO 8601; UTC if no offset).")

    @field_validator("timestamp")
    @classmethod
    def _ts(cls, v: str | None) -> str | None:
        if v is not None:
            parse_utc(v)
        return v

    @model_validator(mode="after")
    def _one(self) -> SeekParams:
        if (self.snapshot is None) == (self.timestamp is None):
            raise ValueError("give exactly one of snapshot and timestamp")
        return self


class SeekOutputs(ActionOutputs):
    subscription: str
    """Full subscription path."""
    to: str
    """The snapshot path or the time (UTC)."""


def _describe(p: SeekParams) -> str:
    sub = show(p.subscription, "pubsub_subscription")
    to = f"snapshot={p.snapshot}" if p.snapshot else f"time={iso(parse_utc(p.timestamp or ''))}"
    return f"pubsub.seek(subscription={sub}, {to})"


def _warn_unless_retained(ctx: StepContext, s: Session, sub: str, to: str) -> None:
    """Seeking to a time brings back acked messages only when the subscription retains them."""
    with s.api(f"read subscription {short(sub)}"):
        info = s.clients.subscriber.get_subscription(
            request={"subscription": sub}, retry=s.retry, timeout=CALL_TIMEOUT
        )
    if not info.retain_acked_messages:
        ctx.log(
            f"WARNING: {short(sub)} does not retain acked messages: only unacked ones after {to} come back"
        )


@action("pubsub.seek", Effect.MUTATING,
        "Seek a subscription to a snapshot or a time: messages acked after it are delivered again.",
        target=lambda p: show(p.subscription, "pubsub_subscription"), describe=_describe)
def seek(ctx: StepContext, params: SeekParams) -> SeekOutputs:
    s, sub = Session.for_subscription(ctx, params.subscription)
    request: dict[str, Any] = {"subscription": sub}
    if params.snapshot:
        request["snapshot"] = to = s.clients.snapshot_path(params.snapshot)
    else:
        when = parse_utc(params.timestamp or "")
        request["time"] = when
        to = iso(when)
        _warn_unless_retained(ctx, s, sub, to)
    with s.api(f"seek {short(sub)} to {to}"):
        s.clients.subscriber.seek(request=request, retry=s.retry, timeout=CALL_TIMEOUT)
    ctx.log(f"seeked {sub} to {to}: messages acked since then will be delivered again")
    return SeekOutputs(subscription=sub, to=to)
