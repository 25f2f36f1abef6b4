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

from dataclasses import dataclass
from typing import Any

from runbook.errors import ActionError, StoreUnavailable
from runbook.stores.environment import Environment


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
        raise ActionError(f"Environment {env.name!r} has no GCP project: set project in [environments.{env.name}.gcp].")
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
    unavailable = ("ServiceUnavailable", "RetryError", "DeadlineExceeded", "ConnectionError", "ConnectionRefusedError", "TransportError", "_InactiveRpcError")
    if name in unavailable or "failed to connect" in msg.lower() or "connection refused" in msg.lower():
        hint = "is the sandbox up (`runbook sandbox status`)?" if gs and gs.sandbox else "check the network and the region's status."
        short = msg if len(msg) <= 100 else msg[:97] + "…"
        return StoreUnavailable(f"{store} is not reachable while trying to {what}: {hint} ({short})")
    if name in ("Unauthenticated", "RefreshError", "DefaultCredentialsError"):
        return ActionError(f"{store} rejected the credentials while trying to {what}: refresh them with `gcloud auth application-default login`.")
    if name in ("PermissionDenied", "Forbidden"):
        return ActionError(f"{store} denied permission to {what}{project}: check the IAM roles of the account in use ({msg}).")
    if name in ("NotFound",):
        return ActionError(f"{store}: not found while trying to {what}{project}: check the names and the project ({msg}).")
    if name in ("TooManyRequests", "ResourceExhausted"):
        return ActionError(f"{store} quota exceeded while trying to {what}{project}: wait and retry, or raise the quota ({msg}).")
    if name in ("Conflict", "AlreadyExists"):
        return ActionError(f"{store}: already exists while trying to {what}: {msg}.")
    if name in ("BadRequest", "InvalidArgument", "FailedPrecondition"):
        return ActionError(f"{store} refused to {what}: {msg}.")
    return ActionError(f"{store} failed to {what}: {name}: {msg}.")
