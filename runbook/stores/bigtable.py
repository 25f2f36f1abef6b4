"""Bigtable clients for an environment and a region, built once and reused.

One code path for production and the sandbox:

* production: Application Default Credentials and Google's endpoints
  (``bigtableadmin.googleapis.com`` / ``bigtable.googleapis.com``);
* sandbox: the gcp store's ``bigtable_host_<region>`` (or ``bigtable_host``), a plain-text gRPC
  ``host:port`` (cbtemulator behind the backup proxy), with anonymous credentials.

The admin API (tables, backups, restores) goes through the GAPIC ``BigtableTableAdminClient``
with an explicitly built insecure channel when a host is set, so no environment variable is
involved. The data API uses ``google.cloud.bigtable.data.BigtableDataClient``, whose only way to
reach a plain-text host is ``BIGTABLE_EMULATOR_HOST`` read in its constructor: it is built under
a process-wide lock with the variable set for that construction only (the channel factory
captures the host, so later calls no longer look at the variable).

Clients are cached per (environment, project, region, endpoint): repeated steps reuse the
channels. google.cloud.* is imported inside functions so ``import runbook.actions`` stays cheap.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runbook.core.environment import Environment
from runbook.stores import gcp
from runbook.stores.pool import ClientPool

STORE = "Bigtable"
EMULATOR_VAR = "BIGTABLE_EMULATOR_HOST"

_ENV_LOCK = threading.Lock()  # serialises every temporary change of BIGTABLE_EMULATOR_HOST
_GRPC_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    # A restarted sandbox server should be found again within seconds, not grpc's 2-minute cap.
    ("grpc.max_reconnect_backoff_ms", 2000),
)


@dataclass
class BigtableHandle:
    """The clients and names for one Bigtable location.

    Attributes:
        admin: GAPIC ``BigtableTableAdminClient`` (tables, backups, restores, operations).
        data: ``BigtableDataClient`` (reads, samples, mutations).
        project: Project id.
        region: The region these clients serve (selects per-region settings).
        endpoint: The sandbox ``host:port``, or None for Google's endpoints.
    """

    admin: Any
    data: Any
    project: str
    region: str
    endpoint: str | None
    _tables: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def table(self, instance: str, table_id: str) -> Any:
        """The data-API ``Table`` for ``instance``/``table_id`` (cached: creating one warms channels)."""
        key = (instance, table_id)
        got = self._tables.get(key)
        if got is None:
            with self._lock:
                got = self._tables.get(key)
                if got is None:
                    got = self.data.get_table(instance, table_id)
                    self._tables[key] = got
        return got

    def instance_path(self, instance: str) -> str:
        return f"projects/{self.project}/instances/{instance}"

    def table_path(self, instance: str, table_id: str) -> str:
        return f"projects/{self.project}/instances/{instance}/tables/{table_id}"

    def cluster_path(self, instance: str, cluster: str) -> str:
        return f"projects/{self.project}/instances/{instance}/clusters/{cluster}"


def handle(env: Environment, region: str | None = None, *, pool: ClientPool) -> tuple[BigtableHandle, gcp.GcpSettings]:
    """Clients for ``region`` (``None``/"primary", "secondary" or a region name) of ``env``, kept in ``pool``.

    Raises:
        ActionError: The environment has no usable gcp store, or no credentials in production.
    """
    return gcp.regional_client(pool.cache("bigtable", _close), env, region, "bigtable_host", _build)


def _build(gs: gcp.GcpSettings, region: str, endpoint: str | None) -> BigtableHandle:
    from google.cloud.bigtable.data import BigtableDataClient
    from google.cloud.bigtable_admin_v2 import BigtableTableAdminClient
    from google.cloud.bigtable_admin_v2.services.bigtable_table_admin.transports import (
        BigtableTableAdminGrpcTransport,
    )

    # The data client's client-side metrics log "Error in Bigtable Metrics" warnings on failed
    # RPCs (a library quirk); the failure itself reaches the step as one sentence.
    logging.getLogger("google.cloud.bigtable.data._metrics").setLevel(logging.ERROR)
    creds = gcp.credentials(gs, endpoint)
    if endpoint:
        import grpc

        channel = grpc.insecure_channel(endpoint, options=list(_GRPC_OPTIONS))
        admin = BigtableTableAdminClient(
            transport=BigtableTableAdminGrpcTransport(host=endpoint, channel=channel)
        )
        with _ENV_LOCK, warnings.catch_warnings():
            # The data client announces the emulator with a RuntimeWarning: expected here.
            warnings.filterwarnings("ignore", "Connecting to Bigtable emulator", RuntimeWarning)
            old = os.environ.get(EMULATOR_VAR)
            os.environ[EMULATOR_VAR] = endpoint
            try:
                data = BigtableDataClient(project=gs.project, credentials=creds)
            finally:
                if old is None:
                    os.environ.pop(EMULATOR_VAR, None)
                else:
                    os.environ[EMULATOR_VAR] = old
    else:
        admin = BigtableTableAdminClient(credentials=creds)
        with _ENV_LOCK:
            # A stray BIGTABLE_EMULATOR_HOST in the operator's shell must not divert production.
            old = os.environ.pop(EMULATOR_VAR, None)
            try:
                data = BigtableDataClient(project=gs.project, credentials=creds)
            finally:
                if old is not None:
                    os.environ[EMULATOR_VAR] = old
    return BigtableHandle(admin=admin, data=data, project=gs.project, region=region, endpoint=endpoint)


def _close(handle: BigtableHandle) -> None:
    for close in (handle.data.close, handle.admin.transport.close):
        try:
            close()
        except Exception:  # noqa: BLE001, S110 - best effort on shutdown
            pass




# --- retries ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)  # Retry objects are immutable: one per budget, not per call
def admin_retry(deadline: float) -> Any:
    """A GAPIC ``Retry`` for admin calls: retry an unreachable store for ``deadline`` seconds."""
    from google.api_core import exceptions, retry

    return retry.Retry(
        predicate=retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded),
        initial=0.1,
        maximum=2.0,
        multiplier=2.0,
        timeout=deadline,
    )


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the store did not answer" (worth retrying within the budget)."""
    from google.api_core import exceptions

    return isinstance(exc, exceptions.ServiceUnavailable | exceptions.DeadlineExceeded | exceptions.Aborted)


def read_rows(
    table: Any,
    *,
    start_after: bytes | None = None,
    row_keys: list[bytes] | None = None,
    row_filter: Any = None,
    limit: int | None = None,
    budget: float,
    cancelled: threading.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> Iterator[Any]:
    """Stream rows in key order, resuming after the last row when the store drops the stream.

    The data client's own retries bound the *whole* stream by one operation timeout, which
    cannot tell a long export from a dead server. Here each attempt may run as long as it keeps
    delivering, and only time spent unable to reach the store counts against ``budget``.

    Args:
        table: A data-API ``Table``.
        start_after: Read rows strictly after this key (``None``: from the start).
        row_keys: Read only these keys (sorted or not); excludes ``start_after``.
        row_filter: A ``row_filters.RowFilter``.
        limit: At most this many rows.
        budget: Seconds the store may stay unreachable before the last error is raised.
        cancelled: Stops the scan (raises ``InterruptedError``) when set.
        on_retry: Called with the error before each retry (for progress lines).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: The store failed or stayed unreachable.
        InterruptedError: ``cancelled`` was set.
    """
    scan = _Scan(sorted(set(row_keys)) if row_keys is not None else None, start_after, limit, row_filter)
    outage = _Outage(budget, cancelled or threading.Event(), on_retry)
    while (query := scan.next_query()) is not None:
        try:
            # retryable_errors=(): resumption is ours (above); attempt_timeout None: a long
            # scan is not an error as long as rows keep coming.
            for row in table.read_rows_stream(
                query, operation_timeout=86400.0, attempt_timeout=None, retryable_errors=()
            ):
                scan.advance(row.row_key)
                outage.over()
                yield row
                if scan.seen % 256 == 0 and outage.cancelled.is_set():
                    raise InterruptedError("cancelled")
            return
        except InterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified by the outage, re-raised unless retryable
            outage.pause_or_raise(unwrap(exc))


@dataclass
class _Scan:
    """Where a scan stands: what is left to read after the last row delivered."""

    keys: list[bytes] | None
    last: bytes | None
    limit: int | None
    row_filter: Any
    seen: int = 0

    def next_query(self) -> Any:
        """The query for the rest of the scan, or None when nothing is left."""
        from google.cloud.bigtable.data import ReadRowsQuery, RowRange

        if self.limit is not None and self.seen >= self.limit:
            return None
        if self.keys is not None:
            todo: list[str | bytes] = [k for k in self.keys if self.last is None or k > self.last]
            if not todo:
                return None
            query = ReadRowsQuery(row_keys=todo, row_filter=self.row_filter)
        else:
            rng = RowRange(start_key=self.last, start_is_inclusive=False) if self.last is not None else None
            query = ReadRowsQuery(row_ranges=rng, row_filter=self.row_filter)
        if self.limit is not None:
            query.limit = self.limit - self.seen
        return query

    def advance(self, key: bytes) -> None:
        self.last = key
        self.seen += 1


@dataclass
class _Outage:
    """How long the store has been unreachable, and the growing pause before the next attempt."""

    budget: float
    cancelled: threading.Event
    on_retry: Callable[[BaseException], None] | None
    since: float | None = None
    delay: float = 0.1

    def over(self) -> None:
        """Rows arrive again: the next outage gets the whole budget."""
        self.since = None
        self.delay = 0.1

    def pause_or_raise(self, err: BaseException) -> None:
        """Pause before retrying an unreachable store.

        Raises:
            BaseException: ``err`` itself, when it is not "unreachable" or the budget is spent.
            InterruptedError: The step was stopped during the pause.
        """
        if not is_unavailable(err):
            raise err from None
        now = time.monotonic()
        self.since = self.since or now
        left = self.budget - (now - self.since)
        if left <= 0:
            raise err from None
        if self.on_retry is not None:
            self.on_retry(err)
        if self.cancelled.wait(min(self.delay, left)):
            raise InterruptedError("cancelled") from None
        self.delay = min(self.delay * 2, 2.0)


def unwrap(exc: BaseException) -> BaseException:
    """The underlying API error of a data-client exception group (or ``exc`` itself)."""
    seen = 0
    while seen < 8:
        seen += 1
        subs = getattr(exc, "exceptions", None)
        if subs:
            exc = subs[-1]
            continue
        cause = exc.__cause__
        if cause is not None and type(exc).__name__ in (
            "FailedMutationEntryError",
            "RetryExceptionGroup",
            "MutationsExceptionGroup",
        ):
            exc = cause
            continue
        break
    return exc
