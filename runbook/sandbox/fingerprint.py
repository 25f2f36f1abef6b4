"""Fingerprints of the sandbox's data, taken before a drill breaks it and after the playbook ran.

Each store's fingerprint is per table (or per file): a row count and a digest of the content, so
a difference can be named ("datasets: 480 rows, expected 600").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _digest(items: list[str]) -> str:
    h = hashlib.sha256()
    for item in sorted(items):
        h.update(item.encode("utf-8", errors="replace"))
        h.update(b"\0")
    return h.hexdigest()


def postgres(stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    import psycopg
    from psycopg import sql

    s = stores["postgres"]
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(
        host=s["host"], port=s["port"], user=s["user"], dbname=s["database"], connect_timeout=10
    ) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        for t in tables:
            q = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {} x"
            ).format(sql.Identifier(t))
            count, md5 = conn.execute(q).fetchone()  # type: ignore[misc]
            out[t] = {"rows": count, "digest": md5}
    return out


def storage(stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from pathlib import Path

    from runbook.sandbox.seed import tree_fingerprint

    fp = tree_fingerprint(Path(stores["storage"]["root"]))
    by_tenant: dict[str, list[str]] = {}
    for rel, digest in fp.items():
        by_tenant.setdefault(rel.split("/", 1)[0], []).append(f"{rel}:{digest}")
    return {tenant: {"rows": len(items), "digest": _digest(items)} for tenant, items in by_tenant.items()}


def bigquery(stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery as bq

    g = stores["gcp"]
    client = bq.Client(
        project=g["project"],
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=g["bigquery_endpoint"]),
    )
    out: dict[str, dict[str, Any]] = {}
    for table in client.list_tables(f"{g['project']}.{g['dataset']}"):
        rows = [
            json.dumps(dict(r.items()), sort_keys=True, default=str)
            for r in client.list_rows(table.reference)
        ]
        out[table.table_id] = {"rows": len(rows), "digest": _digest(rows)}
    return out


def bigtable(stores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from runbook.sandbox.seed_gcp import bigtable_client

    g = stores["gcp"]
    client = bigtable_client(g["bigtable_host_us_central1"], g["project"])
    table = client.instance(g["bigtable_instance"]).table(g["bigtable_table"])
    items = []
    rows = 0
    if table.exists():
        for row in table.read_rows():
            rows += 1
            for fam, cols in row.cells.items():
                for q, cells in cols.items():
                    for c in cells:
                        items.append(
                            f"{row.row_key!r}/{fam}/{q!r}/{c.value!r}/{c.timestamp.isoformat() if c.timestamp else ''}"
                        )
    return {g["bigtable_table"]: {"rows": rows, "digest": _digest(items)}}


TAKERS = {"postgres": postgres, "storage": storage, "bigquery": bigquery, "bigtable": bigtable}


def take(stores: dict[str, Any], components: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    return {c: TAKERS[c](stores) for c in components}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Sentences naming every table/tenant whose data differs."""
    out = []
    for comp, tables in before.items():
        now = after.get(comp, {})
        for name, fp in tables.items():
            got = now.get(name)
            if got is None:
                out.append(f"{comp}: {name} is missing (had {fp['rows']} rows)")
            elif got["rows"] != fp["rows"]:
                out.append(f"{comp}: {name} has {got['rows']} rows, expected {fp['rows']}")
            elif got["digest"] != fp["digest"]:
                out.append(f"{comp}: {name} has the right row count ({fp['rows']}) but different content")
        for name in now:
            if name not in tables:
                out.append(f"{comp}: {name} appeared ({now[name]['rows']} rows) that was not there before")
    return out
