"""BigQuery clients for an environment: one code path for production and the sandbox.

Production: Application Default Credentials and Google's endpoint. Sandbox: the ``gcp`` store's
``bigquery_endpoint`` (bqemulator, plain HTTP) and anonymous credentials. Nothing else differs.

Clients are cached per (environment name, endpoint, project): building one costs a credentials
lookup and an HTTP session, and a playbook runs many BigQuery steps back to back.

``google.cloud.bigquery`` is imported inside functions only (~0.5 s): loading the action registry
must stay cheap.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from runbook.core.environment import Environment
from runbook.stores import gcp
from runbook.stores.pool import ClientCache, ClientPool

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

STORE = "BigQuery"
# How long one API call is retried on transient errors (5xx, rate limits, resets). The client's
# own default is 600 s; a step's timeout, not the retry loop, should bound an incident step.
RETRY_SECONDS = 120.0


def endpoint(gs: gcp.GcpSettings, region: str | None = None) -> str | None:
    """The API endpoint for ``region`` (``bigquery_endpoint[_<region>]``), None for Google's."""
    return gs.get("bigquery_endpoint", gs.region_or_default(region)) or None


def location(gs: gcp.GcpSettings, region: str | None = None) -> str:
    """The BigQuery location for a region: ``bigquery_location[_<region>]``, else the region name.

    The primary region's datasets are often in a multi-region (``US``/``EU``); set
    ``bigquery_location`` for it. The secondary region defaults to its own name (e.g.
    ``europe-west1``), which is a valid BigQuery location.
    """
    resolved = gs.region_or_default(region)
    return str(gs.get("bigquery_location", resolved) or resolved)


def client(env: Environment, region: str | None = None, *, pool: ClientPool) -> Client:
    """The ``bigquery.Client`` of ``env`` (and ``region`` when it has its own endpoint), kept in ``pool``.

    Raises:
        ActionError: The environment has no usable gcp store or no credentials.
    """
    gs = gcp.settings(env)
    ep = endpoint(gs, region)
    return _cache(pool).get((env.name, ep, gs.project), lambda: _build(gs, ep))


def _build(gs: gcp.GcpSettings, ep: str | None) -> Client:
    from google.cloud import bigquery

    kwargs: dict[str, Any] = {"project": gs.project, "credentials": gcp.credentials(gs, ep)}
    if ep:
        from google.api_core.client_options import ClientOptions

        kwargs["client_options"] = ClientOptions(api_endpoint=ep)
    return bigquery.Client(**kwargs)


def forget(env: Environment, region: str | None = None, *, pool: ClientPool) -> None:
    """Drop the cached client (after the store became unreachable), closing its HTTP session."""
    gs = gcp.settings(env)
    _cache(pool).pop((env.name, endpoint(gs, region), gs.project))


def _cache(pool: ClientPool) -> ClientCache[Client]:
    return pool.cache("bigquery", lambda c: c.close())



@functools.cache  # Retry objects are immutable: built once, on first use
def retry() -> Any:
    """The client's default retry policy, minus refused connections, bounded to RETRY_SECONDS."""
    from google.cloud.bigquery import retry as bq_retry
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    # The library's own transient-error predicate (5xx, rate limits, resets, timeouts).
    should = getattr(DEFAULT_RETRY, "_predicate", None) or bq_retry._should_retry

    def predicate(exc: BaseException) -> bool:
        return bool(should(exc)) and not gcp.refused(exc)

    return DEFAULT_RETRY.with_predicate(predicate).with_timeout(RETRY_SECONDS)


__all__ = ["STORE", "client", "endpoint", "forget", "location", "retry"]
