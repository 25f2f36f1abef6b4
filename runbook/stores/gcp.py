"""Google Cloud settings shared by the BigQuery, Bigtable, Dataflow and Pub/Sub stores.

One code path for production and the sandbox: production uses Application Default Credentials
and Google's endpoints; the sandbox sets endpoints to the local stand-ins and uses anonymous
credentials. Settings live in the environment's ``gcp`` store::

    [environments.prod.gcp]
    project = "shop-prod"
    region = "us-central1"              # primary
    secondary_region = "europe-west1"   # failover target
    bigtable_instance = "ecommerce"
    bigtable_cluster = "ecommerce-c1"
    # sandbox only (set by the sandbox, never needed in production):
    # bigquery_endpoint = "http://127.0.0.1:9050"
    # bigtable_host = "127.0.0.1:8086"            (per region: bigtable_host_<region>)
    # pubsub_host = "127.0.0.1:8085"
    # dataflow_endpoint = "http://127.0.0.1:9060"

Error translation turns google.api_core exceptions into one sentence naming the store and what to
check (credentials, project, permission, quota, an emulator that died).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.stores import pool


@dataclass(frozen=True)
class GcpSettings:
    project: str
    region: str
    secondary_region: str | None
    raw: dict[str, Any]
    sandbox: bool

    def get(self, key: str, region: str | None = None) -> Any:
        """A setting, preferring its per-region form (``key_<region>`` with '-' as '_')."""
        if region:
            regional = f"{key}_{region.replace('-', '_')}"
            if regional in self.raw:
                return self.raw[regional]
        return self.raw.get(key)

    def region_or_default(self, region: str | None) -> str:
        if region in (None, "", "primary"):
            return self.region
        if region == "secondary":
            if not self.secondary_region:
                raise ActionError("No secondary region is configured: set secondary_region in the gcp store.")
            return self.secondary_region
        return region


def settings(env: Environment) -> GcpSettings:
    raw = env.store("gcp")
    project = raw.get("project")
    if not project:
        raise ActionError(
            f"Environment {env.name!r} has no GCP project: set project in [environments.{env.name}.gcp]."
        )
    return GcpSettings(
        project=str(project),
        region=str(raw.get("region", "us-central1")),
        secondary_region=raw.get("secondary_region"),
        raw=dict(raw),
        sandbox=env.sandbox,
    )


def credentials(gs: GcpSettings, endpoint: str | None) -> Any:
    """Anonymous credentials for a local endpoint; Application Default Credentials otherwise."""
    if endpoint or gs.sandbox:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default()
    except DefaultCredentialsError:
        raise ActionError(
            "No Google Cloud credentials found: run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file."
        ) from None
    return creds


def translate(exc: BaseException, store: str, what: str, gs: GcpSettings | None = None) -> ActionError:
    """One sentence for a Google client error: what failed, in which store, what to check."""
    name = type(exc).__name__
    msg = str(getattr(exc, "message", "") or exc).strip().split("\n")[0][:300].rstrip(".")
    project = f" in project {gs.project}" if gs else ""
    unavailable = (
        "ServiceUnavailable",
        "RetryError",
        "DeadlineExceeded",
        "ConnectionError",
        "ConnectionRefusedError",
        "TransportError",
        "_InactiveRpcError",
    )
    if name in unavailable or "failed to connect" in msg.lower() or "connection refused" in msg.lower():
        hint = (
            "is the sandbox up (`runbook sandbox status`)?"
            if gs and gs.sandbox
            else "check the network and the region's status."
        )
        short = msg if len(msg) <= 100 else msg[:97] + "…"
        return StoreUnavailable(f"{store} is not reachable while trying to {what}: {hint} ({short})")
    if name in ("Unauthenticated", "RefreshError", "DefaultCredentialsError"):
        return ActionError(
            f"{store} rejected the credentials while trying to {what}: "
            "refresh them with `gcloud auth application-default login`."
        )
    if name in ("PermissionDenied", "Forbidden"):
        return ActionError(
            f"{store} denied permission to {what}{project}: "
            f"check the IAM roles of the account in use ({msg})."
        )
    if name in ("NotFound",):
        return ActionError(
            f"{store}: not found while trying to {what}{project}: check the names and the project ({msg})."
        )
    if name in ("TooManyRequests", "ResourceExhausted"):
        return ActionError(
            f"{store} quota exceeded while trying to {what}{project}: "
            f"wait and retry, or raise the quota ({msg})."
        )
    if name in ("Conflict", "AlreadyExists"):
        return ActionError(f"{store}: already exists while trying to {what}: {msg}.")
    if name in ("BadRequest", "InvalidArgument", "FailedPrecondition"):
        return ActionError(f"{store} refused to {what}: {msg}.")
    return ActionError(f"{store} failed to {what}: {name}: {msg}.")


@contextmanager
def api_errors(
    store: str, what: str, gs: GcpSettings | None, on_unavailable: Callable[[], None] | None = None
) -> Iterator[None]:
    """Turn any client error inside the block into one sentence (see :func:`translate`).

    ``on_unavailable`` runs when the store could not be reached (e.g. drop a cached client whose
    channel backs off before reconnecting, so a retry starts afresh).
    """
    from runbook.core.errors import RunbookError

    try:
        yield
    except RunbookError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client error becomes one sentence
        err = translate(exc, store, what, gs)
        if isinstance(err, StoreUnavailable) and on_unavailable is not None:
            on_unavailable()
        raise err from None


DEFAULT_RPC_TIMEOUT = 60.0  # seconds a store may stay unreachable before a step gives up


def rpc_timeout(gs: GcpSettings, step_timeout: float | None = None) -> float:
    """Seconds one call may keep retrying an unreachable store (gcp ``rpc_timeout``, capped by the step)."""
    value = float(gs.get("rpc_timeout") or DEFAULT_RPC_TIMEOUT)
    if step_timeout:
        value = min(value, float(step_timeout))
    return max(value, 0.5)


T = TypeVar("T")


def regional_endpoint(gs: GcpSettings, key: str, region: str) -> str | None:
    """The sandbox endpoint ``<key>_<region>``, else ``<key>``; None means Google's endpoint."""
    value = gs.get(key, region)
    return str(value) if value else None


def regional_client(
    cache: pool.ClientCache[T],
    env: Environment,
    region: str | None,
    endpoint_key: str,
    build: Callable[[GcpSettings, str, str | None], T],
) -> tuple[T, GcpSettings]:
    """The cached client of ``env`` for ``region`` (``None``/"primary", "secondary" or a name).

    Cached per (environment, project, resolved region, endpoint); ``build(settings, region,
    endpoint)`` makes it the first time.

    Raises:
        ActionError: The environment has no usable gcp store, or no credentials in production.
    """
    gs = settings(env)
    resolved = gs.region_or_default(region)
    endpoint = regional_endpoint(gs, endpoint_key, resolved)
    return cache.get((env.name, gs.project, resolved, endpoint), lambda: build(gs, resolved, endpoint)), gs


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a refused connection: nothing listens at the endpoint.

    Retrying a refusal for minutes only hides a dead emulator or a wrong endpoint; Google's front
    ends do not refuse connections, so this never cuts a production retry short.
    """
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 6:
        if isinstance(cur, ConnectionRefusedError) or "connection refused" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


@functools.lru_cache(maxsize=64)  # Retry objects are immutable: one per policy, not per call
def retry_policy(
    errors: tuple[type[Exception], ...],
    *,
    deadline: float,
    initial: float = 0.2,
    maximum: float = 5.0,
    multiplier: float = 2.0,
    unless_refused: bool = False,
) -> Any:
    """A ``google.api_core`` Retry of ``errors`` for ``deadline`` seconds (exponential backoff).

    ``unless_refused``: a refused connection is not retried even when its type is listed (see
    :func:`refused`).
    """
    from google.api_core.retry import Retry, if_exception_type

    listed = if_exception_type(*errors)

    def predicate(exc: Exception) -> bool:
        return bool(listed(exc)) and not (unless_refused and refused(exc))

    return Retry(
        predicate=predicate, initial=initial, maximum=maximum, multiplier=multiplier, timeout=deadline
    )


class Lazy(Generic[T]):
    """A client built on first use, once even when threads race (building one costs more than a call)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value

    @property
    def built(self) -> T | None:
        """The client if it was built, else None (closing must not build one)."""
        return self._value


def lazy_client(attr: str, doc: str) -> Any:
    """A read-only property: the client of the :class:`Lazy` in attribute ``attr``, built on first use."""
    return property(lambda self: getattr(self, attr).get(), doc=doc)


def close_transport(client: Any) -> None:
    """Close a GAPIC client's transport (its channel), best effort: the server may be gone."""
    try:
        transport = getattr(client, "transport", None) or getattr(client, "_transport", None)
        if transport is not None:
            transport.close()
    except Exception:  # noqa: BLE001, S110 - closing a dead channel must not mask the real error
        pass


