"""What the sandbox tells runbook about its stores: the settings of the sandbox environment.

Cheap: it reads the port files the running servers left behind and starts nothing, so building a
sandbox environment costs no server start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT = "runbook-sandbox"
REGIONS = ("us-central1", "europe-west1")
SLACK_TOKEN_ENV = "RUNBOOK_SANDBOX_SLACK_TOKEN"
SLACK_TOKEN = "xoxb-sandbox-0000-runbook"  # a fake token for the local Slack server only
PG_DATABASE = "varlor"
PG_STAGING = "varlor_staging"
LOCAL = "127.0.0.1"


def port_of(path: Path) -> int | None:
    """The port in a server's port file, or None when it has none (it is not running)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _postgres(base: Path, backups: Path) -> dict[str, Any]:
    from runbook.sandbox.pgtools import is_root
    from runbook.sandbox.postgres import PostgresCluster

    pg = PostgresCluster(base / "postgres")
    return {
        "host": pg.host,
        "port": pg.port,
        "user": "postgres",
        "database": PG_DATABASE,
        "staging_database": PG_STAGING,
        "data_dir": str(pg.data_dir),
        "wal_archive": str(pg.archive_dir),
        "pitr_dir": str(backups / "pitr"),
        **({"run_as": "postgres"} if is_root() else {}),
    }


def _gcp(base: Path) -> dict[str, Any]:
    gcp: dict[str, Any] = {
        "project": PROJECT,
        "region": REGIONS[0],
        "secondary_region": REGIONS[1],
        "dataset": "ecommerce",
        "bigtable_instance": "ecommerce",
        "bigtable_cluster": "ecommerce-c1",
        "bigtable_table": "product_stats",
        "pubsub_topic": "ecommerce-events",
        "pubsub_subscription": "ecommerce-events-dataflow",
        "dataflow_job_name": "ecommerce-streaming",
        "template": "gs://runbook-sandbox-templates/ecommerce-streaming.json",
    }
    endpoints = {
        "bigquery_endpoint": (base / "bigquery" / "bigquery.port", "http://{}:{}"),
        "pubsub_host": (base / "pubsub" / "pubsub.port", "{}:{}"),
        **{
            f"bigtable_host_{region.replace('-', '_')}": (
                base / f"bigtable-{region}" / "bigtable-backup.port",
                "{}:{}",
            )
            for region in REGIONS
        },
        "dataflow_endpoint": (base / "dataflow" / "dataflow.port", "http://{}:{}"),
    }
    for key, (path, shape) in endpoints.items():
        port = port_of(path)
        if port:
            gcp[key] = shape.format(LOCAL, port)
    return gcp


def store_settings(
    base: Path, storage_root: Path, backups: Path, config_repo: Path
) -> dict[str, dict[str, Any]]:
    """Store settings for the sandbox under ``base`` (see ``Sandbox.stores``)."""
    stores: dict[str, dict[str, Any]] = {
        "postgres": _postgres(base, backups),
        "storage": {"root": str(storage_root), "backups": str(backups / "storage")},
        "files": {
            "backups": str(backups),
            "db_backups": str(backups / "database"),
            "pipeline": str(backups / "pipeline"),
            "bigtable": str(backups / "bigtable"),
        },
        "git": {"repo": str(config_repo), "remote": "origin"},
        "gcp": _gcp(base),
    }
    port = port_of(base / "slack" / "slack.port")
    if port:
        os.environ.setdefault(SLACK_TOKEN_ENV, SLACK_TOKEN)
        stores["slack"] = {
            "base_url": f"http://{LOCAL}:{port}/api/",
            "channel": "#incidents",
            "security_channel": "#security",
            "token_env": SLACK_TOKEN_ENV,
        }
    return stores
