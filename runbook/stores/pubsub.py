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

import functools
from dataclasses import dataclass, field
from typing import Any

from runbook.core.environment import Environment
from runbook.stores import gcp
from runbook.stores.pool import ClientCache, ClientPool

STORE = "Pub/Sub"
RETRY_SECONDS = 60.0
CALL_TIMEOUT = 30.0


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
    _publisher: gcp.Lazy[Any] = field(init=False, repr=False)
    _subscriber: gcp.Lazy[Any] = field(init=False, repr=False)

    publisher = gcp.lazy_client("_publisher", "``pubsub_v1.PublisherClient``.")
    subscriber = gcp.lazy_client("_subscriber", "``pubsub_v1.SubscriberClient`` (also snapshots and seek).")

    def __post_init__(self) -> None:
        self._publisher = gcp.Lazy(lambda: self._make("publisher"))
        self._subscriber = gcp.Lazy(lambda: self._make("subscriber"))

    def _make(self, kind: str) -> Any:
        from google.cloud import pubsub_v1

        cls = pubsub_v1.PublisherClient if kind == "publisher" else pubsub_v1.SubscriberClient
        if not self.endpoint:
            return cls(credentials=gcp.credentials(self.settings, None))
        import grpc
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

        transport: Any = PublisherGrpcTransport if kind == "publisher" else SubscriberGrpcTransport
        # An emulator speaks plaintext gRPC and wants no credentials.
        return cls(transport=transport(channel=grpc.insecure_channel(self.endpoint)))

    def topic_path(self, topic: str) -> str:
        """``projects/P/topics/T`` (a full path is returned as is)."""
        return self._path("topics", topic)

    def subscription_path(self, sub: str) -> str:
        """``projects/P/subscriptions/S`` (a full path is returned as is)."""
        return self._path("subscriptions", sub)

    def snapshot_path(self, snap: str) -> str:
        """``projects/P/snapshots/S`` (a full path is returned as is)."""
        return self._path("snapshots", snap)

    def _path(self, kind: str, name: str) -> str:
        return name if name.startswith("projects/") else f"projects/{self.project}/{kind}/{name}"

    def close(self) -> None:
        """Close the channels (best effort: the server may be gone)."""
        for lazy in (self._publisher, self._subscriber):
            if lazy.built is not None:
                gcp.close_transport(lazy.built)


def endpoint(gs: gcp.GcpSettings, region: str | None = None) -> str | None:
    """The emulator's ``host:port`` (``pubsub_host[_<region>]``), None for Google's endpoint."""
    return gs.get("pubsub_host", gs.region_or_default(region)) or None


def client(
    env: Environment, region: str | None = None, settings: gcp.GcpSettings | None = None, *, pool: ClientPool
) -> PubSubClients:
    """The Pub/Sub clients of ``env``, kept in ``pool`` (Pub/Sub is global; ``region`` picks an endpoint).

    ``settings``: ``gcp.settings(env)`` when the caller has it already (a listing is fast enough
    for reading the settings twice to show).

    Raises:
        ActionError: The environment has no usable gcp store.
    """
    gs = settings or gcp.settings(env)
    ep = endpoint(gs, region)
    build = lambda: PubSubClients(project=gs.project, endpoint=ep, settings=gs)  # noqa: E731
    return _cache(pool).get((env.name, ep, gs.project), build)


def forget(env: Environment, region: str | None = None, *, pool: ClientPool) -> None:
    """Drop the kept clients (after the store became unreachable) and close their channels."""
    gs = gcp.settings(env)
    _cache(pool).pop((env.name, endpoint(gs, region), gs.project))


def _cache(pool: ClientPool) -> ClientCache[PubSubClients]:
    return pool.cache("pubsub", lambda c: c.close())


@functools.cache
def retry() -> Any:
    """Retry transient gRPC errors (UNAVAILABLE, INTERNAL, ABORTED…) but not a refused connection."""
    from google.api_core import exceptions

    transient = (
        exceptions.ServiceUnavailable,
        exceptions.InternalServerError,
        exceptions.Aborted,
        exceptions.Unknown,
        exceptions.ResourceExhausted,
    )
    return gcp.retry_policy(
        transient, deadline=RETRY_SECONDS, initial=0.1, multiplier=1.3, unless_refused=True
    )


__all__ = ["CALL_TIMEOUT", "STORE", "PubSubClients", "client", "endpoint", "forget", "retry"]
