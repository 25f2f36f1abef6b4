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
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PostgresStore(Strict):
    host: str = "127.0.0.1"
    port: Port = 5432
    user: str = "postgres"
    database: str | None = None
    staging_database: str | None = None
    password_env: EnvVarName | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    maintenance_database: str | None = None
    connect_timeout: Annotated[int, Field(gt=0)] = 10
    bin_dir: str | None = None
    data_dir: str | None = None
    wal_archive: str | None = None
    pitr_dir: str | None = None
    run_as: str | None = None


class StorageStore(Strict):
    root: str
    backups: str | None = None


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

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    project: str
    region: str = "us-central1"
    secondary_region: str | None = None
    dataset: str | None = None
    location: str | None = None
    bigquery_location: str | None = None
    bigtable_instance: str | None = None
    bigtable_cluster: str | None = None
    bigtable_table: str | None = None
    pubsub_topic: str | None = None
    pubsub_subscription: str | None = None
    dataflow_job_name: str | None = None
    template: str | None = None
    rpc_timeout: Seconds | None = None
    bigquery_endpoint: str | None = None
    bigtable_host: str | None = None
    pubsub_host: str | None = None
    dataflow_endpoint: str | None = None

    @model_validator(mode="after")
    def _regional_keys(self) -> GcpStore:
        regions = [r.replace("-", "_") for r in (self.region, self.secondary_region) if r]
        for key, value in (self.model_extra or {}).items():
            base = next((k for k in _GCP_KEYS for r in regions if key == f"{k}_{r}"), None)
            if base is None:
                raise ValueError(f"unknown setting {key!r} (a per-region setting is <setting>_<region>, e.g. dataset_{regions[0]})")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"{key} must be a string or a number")
        return self


class SlackStore(Strict):
    channel: str | None = None
    security_channel: str | None = None
    token_env: EnvVarName | None = None
    webhook_url_env: EnvVarName | None = None
    base_url: str | None = None
    enabled: bool = True
    mode: Literal["api", "webhook"] | None = None
    retry_cap: Seconds | None = None
    permanent_retry: Seconds | None = None
    flush_seconds: Seconds | None = None
    timeout: Seconds | None = None


class GitStore(Strict):
    repo: str
    remote: str | None = None


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
    drill_days: dict[Literal["level1", "level2", "level3", "default"], Annotated[float, Field(gt=0)]] = Field(default_factory=dict)


def looks_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_env")

