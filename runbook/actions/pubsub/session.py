"""What every Pub/Sub action shares at run time: resource names, the step's clients, one-sentence errors."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runbook.actions.spec import StepContext
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z
from runbook.stores import gcp
from runbook.stores import pubsub as psstore

CALL_TIMEOUT = psstore.CALL_TIMEOUT


def short(path: str) -> str:
    """The id at the end of a ``projects/P/KIND/ID`` path."""
    return path.rsplit("/", 1)[-1]


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with ``Z``; microseconds only when there are any (as Pub/Sub reports times)."""
    return iso_z(ts, micro=bool(ts.microsecond))


@dataclass
class Session:
    """The clients and settings of one step."""

    ctx: StepContext
    gs: gcp.GcpSettings
    clients: psstore.PubSubClients

    @classmethod
    def open(cls, ctx: StepContext) -> Session:
        gs = gcp.settings(ctx.environment)
        return cls(ctx, gs, psstore.client(ctx.environment, settings=gs, pool=ctx.services.clients))

    @classmethod
    def for_subscription(cls, ctx: StepContext, given: str | None) -> tuple[Session, str]:
        """The step's session and the full path of the subscription it names (or the default)."""
        s = cls.open(ctx)
        return s, s.subscription(given)

    @property
    def retry(self) -> Any:
        return psstore.retry()

    def name(self, given: str | None, key: str, what: str) -> str:
        if given:
            return given
        found = self.gs.raw.get(key)
        if not found:
            env = self.ctx.environment.name
            raise ActionError(
                f"No {what} given: set `{what}:` in the step or {key} in [environments.{env}.gcp]."
            )
        return str(found)

    def subscription(self, given: str | None) -> str:
        return self.clients.subscription_path(self.name(given, "pubsub_subscription", "subscription"))

    def topic(self, given: str | None) -> str:
        return self.clients.topic_path(self.name(given, "pubsub_topic", "topic"))

    def api(self, what: str) -> AbstractContextManager[None]:
        """Turn any client error inside the block into one sentence (gcp.translate)."""
        # A gRPC channel to a dead server backs off before reconnecting: start afresh.
        pool = self.ctx.services.clients
        return gcp.api_errors(psstore.STORE, what, self.gs, lambda: psstore.forget(self.ctx.environment, pool=pool))

    def snapshots(self) -> list[Any]:
        """Every snapshot of the project (raw proto-plus messages)."""
        with self.api(f"list the snapshots of project {self.clients.project}"):
            return list(
                self.clients.subscriber.list_snapshots(
                    request={"project": f"projects/{self.clients.project}"},
                    retry=self.retry,
                    timeout=CALL_TIMEOUT,
                )
            )
