"""Dataflow clients for an environment and a region, built once and reused.

One code path for production and the sandbox: the ``google.cloud.dataflow_v1beta3`` clients over
their REST transport, with

* production: Application Default Credentials and Google's endpoint (``dataflow.googleapis.com``);
* sandbox: the gcp store's ``dataflow_endpoint`` (or ``dataflow_endpoint_<region>``), an
  ``http://host:port`` local server, with anonymous credentials.

REST everywhere (rather than gRPC in production) keeps errors identical in both: the REST
transport maps errors by HTTP status (400 → ``BadRequest`` for invalid arguments and failed
preconditions alike, 403 → ``Forbidden``, 409 → ``Conflict``, 503 → ``ServiceUnavailable``).

Clients are cached per (environment, project, region, endpoint). google.cloud.* is imported
inside functions so ``import runbook.actions`` stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runbook.core.environment import Environment
from runbook.stores import gcp
from runbook.stores.pool import ClientPool

STORE = "Dataflow"
JOB_ID = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}_\d{2}_\d{2}-\d+$")


@dataclass
class DataflowClients:
    """The Dataflow clients for one (environment, region).

    Attributes:
        jobs: ``JobsV1Beta3Client`` (list, get, update = cancel/drain).
        project: Project id.
        region: The region (Dataflow "location") requests go to.
        endpoint: The sandbox endpoint, or None for Google's.
    """

    jobs: Any
    project: str
    region: str
    endpoint: str | None
    _flex: gcp.Lazy[Any]
    _templates: gcp.Lazy[Any]

    flex = gcp.lazy_client("_flex", "``FlexTemplatesServiceClient``.")
    templates = gcp.lazy_client("_templates", "``TemplatesServiceClient`` (classic templates).")


def clients(
    env: Environment, region: str | None = None, *, pool: ClientPool
) -> tuple[DataflowClients, gcp.GcpSettings]:
    """Clients for ``region`` (``None``/"primary", "secondary" or a region name) of ``env``, kept in ``pool``.

    Raises:
        ActionError: The environment has no usable gcp store, or no credentials in production.
    """
    return gcp.regional_client(pool.cache("dataflow"), env, region, "dataflow_endpoint", _build)


def _build(gs: gcp.GcpSettings, region: str, endpoint: str | None) -> DataflowClients:
    from google.api_core.client_options import ClientOptions
    from google.cloud import dataflow_v1beta3 as df

    kwargs: dict[str, Any] = {"transport": "rest", "credentials": gcp.credentials(gs, endpoint)}
    if endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
    return DataflowClients(
        jobs=df.JobsV1Beta3Client(**kwargs),
        project=gs.project,
        region=region,
        endpoint=endpoint,
        _flex=gcp.Lazy(lambda: df.FlexTemplatesServiceClient(**kwargs)),
        _templates=gcp.Lazy(lambda: df.TemplatesServiceClient(**kwargs)),
    )




def read_retry(deadline: float) -> Any:
    """Retry for reads: an unavailable region (503) or a refused connection, for ``deadline`` seconds.

    Mutations (launch, cancel, drain) are not retried: a launch that reached the service before
    the connection broke must not be sent twice.
    """
    from google.api_core import exceptions
    from requests import exceptions as rq

    return gcp.retry_policy((exceptions.ServiceUnavailable, rq.ConnectionError), deadline=deadline)


_REST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")
_HOST_PORT = re.compile(r"host='([^']+)', port=(\d+)")


def unwrap(exc: BaseException) -> BaseException:
    """The error worth showing: a ``RetryError``'s last cause, without the REST request line.

    REST errors read ``POST http://host/v1b3/...?%24alt=json...: <message>``; the operator
    needs the message, and the URL (with its query) only adds noise to the one sentence.
    """
    from google.api_core.exceptions import GoogleAPICallError
    from requests import exceptions as rq

    cause = getattr(exc, "cause", None)
    if type(exc).__name__ == "RetryError" and isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, rq.ConnectionError):
        # urllib3's text repeats the whole URL and a truncated repr; the address is what matters.
        m = _HOST_PORT.search(str(exc))
        where = f"{m.group(1)}:{m.group(2)}" if m else "the Dataflow endpoint"
        clean_conn = rq.ConnectionError(f"cannot connect to {where}")
        clean_conn.__cause__ = exc
        return clean_conn
    if isinstance(exc, GoogleAPICallError):
        text = _REST_PREFIX.sub("", str(exc.message or "")).strip().rstrip(".")
        if text != exc.message:
            clean = type(exc)(text, errors=exc.errors, response=exc.response)
            clean.__cause__ = exc
            return clean
    return exc


def is_store_error(exc: BaseException) -> bool:
    """Errors from the service or the connection to it (never from bugs in the caller)."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from requests import RequestException

    return isinstance(exc, GoogleAPIError | GoogleAuthError | RequestException)
