"""The shape of ``runbook.toml``: typed models that forbid unknown keys and coerce nothing.

A port written as ``"5432"`` is an error, not a silent conversion; a key nobody reads is an error,
not a setting that silently does nothing; a secret is never a value, only the *name* of the
environment variable that holds it (``password_env = "VARLOR_DB_PASSWORD"``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# Words that mark a setting as a secret: such a key must end in _env and name a variable.
SECRET_WORDS = ("password", "token", "secret", "dsn", "webhook_url", "private_key")

EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Port = Annotated[int, Field(gt=0, lt=65536)]
Seconds = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True)


class PostgresStore(Strict):
    host: str = "127.0.0.1"
    """Server host name or address."""
    port: Port = 5432
    """Server port."""
    user: str = "postgres"
    """Role runbook connects as."""
    database: str | None = None
    """The application database."""
    staging_database: str | None = None
    """Where test restores go."""
    password_env: EnvVarName | None = None
    """Name of the environment variable holding the password (never the password)."""
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    """libpq's sslmode."""
    maintenance_database: str | None = None
    """Where DROP/CREATE DATABASE run from (default postgres)."""
    connect_timeout: Annotated[int, Field(gt=0)] = 10
    """Seconds to wait for a connection."""
    bin_dir: str | None = None
    """Where pg_dump, pg_restore, psql and pg_ctl live (default: found on the machine)."""
    data_dir: str | None = None
    """The cluster's data directory (point-in-time recovery)."""
    wal_archive: str | None = None
    """Where archived WAL segments are."""
    pitr_dir: str | None = None
    """Base backups and recovered clusters."""
    run_as: str | None = None
    """System user for server programs (default postgres when running as root)."""


class StorageStore(Strict):
    root: str
    """The tree being protected (tenants/datasets)."""
    backups: str | None = None
    """Where snapshots go."""


# Every gcp key may also be written per region: ``bigtable_instance_europe_west1``.
_GCP_KEYS = (
    "project", "region", "secondary_region", "dataset", "location", "bigquery_location",
    "bigtable_instance", "bigtable_cluster", "bigtable_table", "pubsub_topic", "pubsub_subscription",
    "dataflow_job_name", "template", "rpc_timeout", "bigquery_endpoint", "bigtable_host", "pubsub_host",
    "dataflow_endpoint",
)  # fmt: skip


class GcpStore(Strict):
    """Google Cloud: project and regions; the rest names the pipeline's resources.

    The ``*_endpoint``/``*_host`` keys point the real clients somewhere else (the sandbox's
    stand-ins); production leaves them out and uses Application Default Credentials.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, use_attribute_docstrings=True)

    project: str
    """Google Cloud project id."""
    region: str = "us-central1"
    """Primary region."""
    secondary_region: str | None = None
    """Failover region."""
    dataset: str | None = None
    """BigQuery dataset of the pipeline."""
    location: str | None = None
    """Default location for regional resources."""
    bigquery_location: str | None = None
    """BigQuery location (default: the region)."""
    bigtable_instance: str | None = None
    """Bigtable instance."""
    bigtable_cluster: str | None = None
    """Bigtable cluster (backups are made in a cluster)."""
    bigtable_table: str | None = None
    """Bigtable table of the pipeline."""
    pubsub_topic: str | None = None
    """Pub/Sub topic the pipeline reads."""
    pubsub_subscription: str | None = None
    """The pipeline's subscription."""
    dataflow_job_name: str | None = None
    """Name of the streaming job."""
    template: str | None = None
    """Flex template of the streaming job."""
    rpc_timeout: Seconds | None = None
    """Seconds one API call may take."""
    bigquery_endpoint: str | None = None
    """BigQuery REST endpoint (the sandbox only)."""
    bigtable_host: str | None = None
    """Bigtable host:port (the sandbox only)."""
    pubsub_host: str | None = None
    """Pub/Sub host:port (the sandbox only)."""
    dataflow_endpoint: str | None = None
    """Dataflow REST endpoint (the sandbox only)."""

    @model_validator(mode="after")
    def _regional_keys(self) -> GcpStore:
        regions = [r.replace("-", "_") for r in (self.region, self.secondary_region) if r]
        for key, value in (self.model_extra or {}).items():
            base = next((k for k in _GCP_KEYS for r in regions if key == f"{k}_{r}"), None)
            if base is None:
                raise ValueError(
                    f"unknown setting {key!r} (a per-region setting is <setting>_<region>, e.g. dataset_{regions[0]})"
                )
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"{key} must be a string or a number")
        return self


class SlackStore(Strict):
    channel: str | None = None
    """The incident channel (#name or id)."""
    security_channel: str | None = None
    """Where security incidents also post."""
    token_env: EnvVarName | None = None
    """Name of the variable holding the bot token."""
    webhook_url_env: EnvVarName | None = None
    """Name of the variable holding an incoming-webhook URL."""
    base_url: str | None = None
    """Slack Web API base URL (the sandbox only)."""
    enabled: bool = True
    """false turns notifications off."""
    mode: Literal["api", "webhook"] | None = None
    """api (threads, updates) or webhook (plain posts)."""
    retry_cap: Seconds | None = None
    """Longest back-off between retries, in seconds."""
    permanent_retry: Seconds | None = None
    """Seconds between retries of a permanent error (bad token, channel)."""
    flush_seconds: Seconds | None = None
    """How long a run waits at exit for delivery."""
    timeout: Seconds | None = None
    """Seconds one Slack call may take."""


class GitStore(Strict):
    repo: str
    """The configuration repository."""
    remote: str | None = None
    """Remote to push backups to."""


class EnvironmentSettings(Strict):
    """One ``[environments.NAME]`` table."""

    description: str = ""
    production: bool | None = None  # default: true for an environment named prod or production
    postgres: PostgresStore | None = None
    storage: StorageStore | None = None
    gcp: GcpStore | None = None
    slack: SlackStore | None = None
    git: GitStore | None = None
    files: dict[str, str] | None = Field(None, description="Named paths for playbooks: {{ env.files.NAME }}.")

    def stores(self) -> dict[str, dict[str, Any]]:
        """Store kind → its settings, as the store code reads them (plain data, unset keys left out)."""
        out: dict[str, dict[str, Any]] = {}
        for kind in ("postgres", "storage", "gcp", "slack", "git", "files"):
            value = getattr(self, kind)
            if value is not None:
                out[kind] = dict(value) if isinstance(value, dict) else value.model_dump(exclude_unset=True)
        return out


class NotifySettings(Strict):
    slack: SlackStore | None = None


class ConfigFile(Strict):
    """The whole ``runbook.toml``."""

    default_env: str = "sandbox"
    playbook_dirs: list[str] = Field(default_factory=list)
    environments: dict[str, EnvironmentSettings] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    drill_days: dict[Literal["level1", "level2", "level3", "default"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )


def looks_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_env")
