"""Deterministic seed data for the sandbox, shaped like the two seed documents.

* PostgreSQL: the data-import feature's ``datasets`` / ``dataset_columns`` tables, a few thousand
  rows across several tenants.
* File storage: ``storage/datasets/<tenant>/<dataset>/…`` with files whose content is derived from
  the dataset row, so restores can be checked byte for byte.
* Google Cloud: the e-commerce pipeline's BigQuery dataset ``ecommerce`` with
  ``product_views_summary``, ``sales_summary`` and ``inventory_summary``, the Bigtable table
  ``product_stats``, a Pub/Sub topic + subscription with 1,000 generated events, and a running
  streaming Dataflow job.

Everything is generated from a fixed random seed: the same sandbox every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TENANTS = ["tenant-abc", "tenant-acme", "tenant-globex", "tenant-initech", "tenant-umbrella"]
DATASETS_PER_TENANT = 120
COLUMN_TYPES = ["text", "integer", "numeric", "boolean", "timestamp", "date"]

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id          integer PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    file_path   text NOT NULL,
    status      text NOT NULL DEFAULT 'ready',
    row_count   integer NOT NULL DEFAULT 0,
    size_bytes  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_tenant ON datasets (tenant_id);
CREATE TABLE IF NOT EXISTS dataset_columns (
    id          integer PRIMARY KEY,
    dataset_id  integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    name        text NOT NULL,
    data_type   text NOT NULL,
    nullable    boolean NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS dataset_columns_dataset ON dataset_columns (dataset_id);
"""


def dataset_rows(seed: int = 42) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(datasets, dataset_columns) rows, deterministic."""
    rng = random.Random(seed)
    base = datetime(2025, 11, 1, tzinfo=UTC)
    datasets: list[tuple[Any, ...]] = []
    columns: list[tuple[Any, ...]] = []
    did = 0
    cid = 0
    for tenant in TENANTS:
        for _ in range(DATASETS_PER_TENANT):
            did += 1
            created = base + timedelta(minutes=rng.randint(0, 60 * 24 * 20))
            ncols = rng.randint(3, 9)
            rows = rng.randint(10, 400)
            datasets.append(
                (
                    did,
                    tenant,
                    f"upload_{did:05d}.csv",
                    f"{tenant}/{did}/data.csv",
                    "ready",
                    rows,
                    rows * 40,
                    created,
                    created,
                )
            )
            for pos in range(ncols):
                cid += 1
                columns.append((cid, did, pos, f"col_{pos}", rng.choice(COLUMN_TYPES), rng.random() < 0.7))
    return datasets, columns


def seed_postgres(conninfo: str, *, seed: int = 42) -> dict[str, int]:
    """Create the schema and load the rows into the database at ``conninfo`` (idempotent)."""
    import psycopg

    datasets, columns = dataset_rows(seed)
    with psycopg.connect(conninfo, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(POSTGRES_SCHEMA)
            cur.execute("TRUNCATE dataset_columns, datasets")
            with cur.copy(
                "COPY datasets (id, tenant_id, name, file_path, status, row_count, size_bytes, created_at, updated_at) "
                "FROM STDIN"
            ) as copy:
                for row in datasets:
                    copy.write_row(row)
            with cur.copy(
                "COPY dataset_columns (id, dataset_id, position, name, data_type, nullable) FROM STDIN"
            ) as copy:
                for row in columns:
                    copy.write_row(row)
        conn.commit()
    return {"datasets": len(datasets), "dataset_columns": len(columns)}


def file_content(tenant: str, dataset_id: int, rows: int) -> bytes:
    """The CSV content of one dataset file (derived from its metadata, so it can be re-derived)."""
    rng = random.Random(f"{tenant}/{dataset_id}")
    lines = ["id,name,value,updated"]
    for i in range(min(rows, 200)):
        lines.append(f"{i},{tenant}-{dataset_id}-{i},{rng.randint(0, 10**6)},2025-11-{1 + i % 28:02d}")
    return ("\n".join(lines) + "\n").encode()


def seed_storage(root: Path, *, seed: int = 42) -> dict[str, int]:
    """Write ``root/<tenant>/<dataset>/{data.csv,metadata.json}`` for every seeded dataset."""
    datasets, _ = dataset_rows(seed)
    files = 0
    size = 0
    for did, tenant, name, _path, _status, rows, _sz, created, _upd in datasets:
        d = root / tenant / str(did)
        d.mkdir(parents=True, exist_ok=True)
        data = file_content(tenant, did, rows)
        (d / "data.csv").write_bytes(data)
        meta = json.dumps(
            {"id": did, "tenant": tenant, "name": name, "rows": rows, "created": created.isoformat()},
            sort_keys=True,
        ).encode()
        (d / "metadata.json").write_bytes(meta)
        files += 2
        size += len(data) + len(meta)
    return {"files": files, "bytes": size}


def tree_fingerprint(root: Path) -> dict[str, str]:
    """relative path → sha256 of every regular file under ``root`` (for drill verification)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def seed_git(repo: Path, remote: Path) -> None:
    """The configuration repository playbooks roll back: one commit, pushed to a bare remote."""
    import subprocess

    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.mkdir(parents=True, exist_ok=True)
    git = [
        "git",
        "-C",
        str(repo),
        "-c",
        "user.name=runbook sandbox",
        "-c",
        "user.email=sandbox@runbook.invalid",
    ]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (repo / "pipeline.yaml").write_text("pipeline: ecommerce\nregion: us-central1\nworkers: 3\n")
    (repo / "deploy.env").write_text("DATASET=ecommerce\nBIGTABLE_INSTANCE=ecommerce\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial configuration"], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(remote)], check=False)
    subprocess.run([*git, "push", "-q", "origin", "main"], check=True)
