"""Pub/Sub clients for an environment: one code path for production and the sandbox.

Production: Application Default Credentials and Google's endpoint. Sandbox: the ``gcp`` store's
``pubsub_host`` (Google's emulator) over an insecure gRPC channel with anonymous credentials —
what the library does itself for ``PUBSUB_EMULATOR_HOST``, without touching the process
environment (several environments may be used in one process).

Clients are cached per (environment name, endpoint, project). A cached gRPC channel to a server
that went away backs off before reconnecting, so actions call :func:`forget` when the store was
unreachable and the next attempt starts on a fresh channel.

``google.cloud.pubsub_v1`` is imported inside functions only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from runbook.core.environment import Environment
from runbook.stores import gcp
from runbook.stores.bigquery import refused

STORE = "Pub/Sub"
RETRY_SECONDS = 60.0
CALL_TIMEOUT = 30.0

_retry: Any = None


@dataclass
class PubSubClients:
    """The publisher and subscriber for one (environment, endpoint, project), built on first use.

    Attributes:
        project: The project topics and subscriptions live in.
        endpoint: ``host:port`` of an emulator, or None for Google's endpoint.
    """

    project: str
    endpoint: str | None
    settings: gcp.GcpSettings
    _publisher: Any = None
    _subscriber: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def publisher(self) -> Any:
        """``pubsub_v1.PublisherClient``."""
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._make("publisher")
        return self._publisher

    @property
    def subscriber(self) -> Any:
        """``pubsub_v1.SubscriberClient`` (also the snapshot and seek API)."""
        if self._subscriber is None:
            with self._lock:
                if self._subscriber is None:
                    self._subscriber = self._make("subscriber")
        return self._subscriber

    def _make(self, kind: str) -> Any:
        from google.cloud import pubsub_v1

        cls = pubsub_v1.PublisherClient if kind == "publisher" else pubsub_v1.SubscriberClient
        if not self.endpoint:
            return cls(credentials=gcp.credentials(self.settings, None))
        import grpc

        if kind == "publisher":
            from google.pubsub_v1.services.publisher.transports.grpc import (
                PublisherGrpcTransport as Transport,
            )
        else:
            from google.pubsub_v1.services.subscriber.transports.grpc import (
                SubscriberGrpcTransport as Transport,
            )
        # An emulator speaks plaintext gRPC and wants no credentials.
        channel = grpc.insecure_channel(self.endpoint)
        return cls(transport=Transport(channel=channel))

    def topic_path(self, topic: str) -> str:
        """``projects/P/topics/T`` (a full path is returned as is)."""
        return topic if topic.startswith("projects/") else f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, sub: str) -> str:
        """``projects/P/subscriptions/S`` (a full path is returned as is)."""
        return sub if sub.startswith("projects/") else f"projects/{self.project}/subscriptions/{sub}"

    def snapshot_path(self, snap: str) -> str:
        """``projects/P/snapshots/S`` (a full path is returned as is)."""
        return snap if snap.startswith("projects/") else f"projects/{self.project}/snapshots/{snap}"

    def close(self) -> None:
        """Close the channels (best effort: the server may be gone)."""
        for c in (self._publisher, self._subscriber):
            if c is None:
                continue
            try:
                transport = getattr(c, "transport", None) or getattr(c, "_transport", None)
                if transport is not None:
                    transport.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead channel must not mask the real error
                pass


_clients: gcp.ClientCache[PubSubClients] = gcp.ClientCache(lambda c: c.close())


def endpoint(gs: gcp.GcpSettings, region: str | None = None) -> str | None:
    """The emulator's ``host:port`` (``pubsub_host[_<region>]``), None for Google's endpoint."""
    return gs.get("pubsub_host", gs.region_or_default(region)) or None


def client(env: Environment, region: str | None = None) -> PubSubClients:
    """The cached Pub/Sub clients for ``env`` (Pub/Sub is global; ``region`` picks an endpoint).

    Raises:
        ActionError: The environment has no usable gcp store.
    """
    gs = gcp.settings(env)
    ep = endpoint(gs, region)
    return _clients.get((env.name, ep, gs.project), lambda: PubSubClients(project=gs.project, endpoint=ep, settings=gs))


def forget(env: Environment, region: str | None = None) -> None:
    """Drop the cached clients (after the store became unreachable) and close their channels."""
    gs = gcp.settings(env)
    _clients.pop((env.name, endpoint(gs, region), gs.project))


def clear() -> None:
    """Drop every cached client."""
    _clients.clear()


def retry() -> Any:
    """Retry transient gRPC errors (UNAVAILABLE, INTERNAL, ABORTED…) but not a refused connection."""
    global _retry
    if _retry is None:
        from google.api_core import exceptions
        from google.api_core.retry import Retry, if_exception_type

        transient = if_exception_type(
            exceptions.ServiceUnavailable,
            exceptions.InternalServerError,
            exceptions.Aborted,
            exceptions.Unknown,
            exceptions.ResourceExhausted,
        )

        def predicate(exc: BaseException) -> bool:
            return bool(transient(exc)) and not refused(exc)

        _retry = Retry(predicate=predicate, initial=0.1, maximum=5.0, multiplier=1.3, timeout=RETRY_SECONDS)
    return _retry


__all__ = ["CALL_TIMEOUT", "STORE", "PubSubClients", "client", "clear", "endpoint", "forget", "retry"]
