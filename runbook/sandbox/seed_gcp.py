"""Seed the Google Cloud half of the sandbox like the seed's e-commerce streaming pipeline.

BigQuery ``ecommerce`` (product_views_summary, sales_summary, inventory_summary); Bigtable
``product_stats`` in the primary region's instance; a Pub/Sub topic and subscription carrying
1,000 generated events; a running streaming Dataflow job launched from a flex template.
Generated deterministically, with the real client libraries against the local stand-ins.
"""

from __future__ import annotations

import json
import os
import random
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

PRODUCTS = 200
EVENTS = 1000
_ENV_LOCK = threading.Lock()


def bigquery_rows(seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    start = datetime(2025, 11, 20, tzinfo=UTC)
    views, sales, inventory = [], [], []
    for p in range(1, PRODUCTS + 1):
        for w in range(3):
            window = (start + timedelta(minutes=15 * w)).isoformat()
            views.append(
                {
                    "product_id": f"P{p:04d}",
                    "window_start": window,
                    "views": rng.randint(0, 5000),
                    "unique_users": rng.randint(0, 900),
                }
            )
            sales.append(
                {
                    "product_id": f"P{p:04d}",
                    "window_start": window,
                    "orders": rng.randint(0, 80),
                    "revenue": round(rng.uniform(0, 9000), 2),
                }
            )
        inventory.append(
            {
                "product_id": f"P{p:04d}",
                "warehouse": rng.choice(["ams", "iad", "sin"]),
                "stock": rng.randint(0, 1000),
                "updated_at": start.isoformat(),
            }
        )
    return {"product_views_summary": views, "sales_summary": sales, "inventory_summary": inventory}


SCHEMAS = {
    "product_views_summary": [
        ("product_id", "STRING"),
        ("window_start", "TIMESTAMP"),
        ("views", "INT64"),
        ("unique_users", "INT64"),
    ],
    "sales_summary": [
        ("product_id", "STRING"),
        ("window_start", "TIMESTAMP"),
        ("orders", "INT64"),
        ("revenue", "FLOAT64"),
    ],
    "inventory_summary": [
        ("product_id", "STRING"),
        ("warehouse", "STRING"),
        ("stock", "INT64"),
        ("updated_at", "TIMESTAMP"),
    ],
}


def seed_bigquery(endpoint: str, project: str, dataset: str = "ecommerce") -> dict[str, int]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    ds = bigquery.Dataset(f"{project}.{dataset}")
    ds.location = "US"
    client.create_dataset(ds, exists_ok=True)
    counts = {}
    for table, rows in bigquery_rows().items():
        ref = f"{project}.{dataset}.{table}"
        client.delete_table(ref, not_found_ok=True)
        schema = [bigquery.SchemaField(n, t) for n, t in SCHEMAS[table]]
        client.create_table(bigquery.Table(ref, schema=schema))
        for i in range(0, len(rows), 500):
            errors = client.insert_rows_json(ref, rows[i : i + 500])
            if errors:
                raise RuntimeError(f"BigQuery seed of {table} failed: {errors[:1]}")
        counts[table] = len(rows)
    return counts


def bigtable_rows(seed: int = 11) -> list[tuple[bytes, dict[str, dict[bytes, bytes]]]]:
    rng = random.Random(seed)
    rows = []
    for p in range(1, PRODUCTS + 1):
        key = f"product#P{p:04d}".encode()
        rows.append(
            (
                key,
                {
                    "stats": {
                        b"views": str(rng.randint(0, 10**5)).encode(),
                        b"orders": str(rng.randint(0, 900)).encode(),
                    },
                    "meta": {b"category": rng.choice([b"books", b"toys", b"garden", b"tools"])},
                },
            )
        )
    return rows


def bigtable_client(host: str, project: str) -> Any:
    """A real admin client pointed at ``host`` (the env var is read at construction only)."""
    from google.cloud import bigtable

    with _ENV_LOCK:
        old = os.environ.get("BIGTABLE_EMULATOR_HOST")
        os.environ["BIGTABLE_EMULATOR_HOST"] = host
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "Connecting to Bigtable emulator…"
                client = bigtable.Client(project=project, admin=True)
                client.table_admin_client  # noqa: B018 - build the channels while the variable is set
                client.table_data_client  # noqa: B018
        finally:
            if old is None:
                os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
            else:
                os.environ["BIGTABLE_EMULATOR_HOST"] = old
    return client


def seed_bigtable(
    host: str, project: str, instance: str = "ecommerce", table_id: str = "product_stats"
) -> int:
    from google.cloud.bigtable import column_family

    client = bigtable_client(host, project)
    table = client.instance(instance).table(table_id)
    if table.exists():
        table.delete()
    table.create(
        column_families={
            "stats": column_family.MaxVersionsGCRule(3),
            "meta": column_family.MaxVersionsGCRule(1),
        }
    )
    mutations = []
    stamp = datetime(2025, 11, 20, tzinfo=UTC)
    for key, families in bigtable_rows():
        row = table.direct_row(key)
        for fam, cells in families.items():
            for q, v in cells.items():
                row.set_cell(fam, q, v, timestamp=stamp)
        mutations.append(row)
    for status in table.mutate_rows(mutations):
        if status.code != 0:
            raise RuntimeError(f"Bigtable seed failed: {status.message}")
    return len(mutations)


def event(i: int, rng: random.Random) -> bytes:
    return json.dumps(
        {
            "event_id": f"E{i:06d}",
            "type": rng.choice(["view", "add_to_cart", "purchase"]),
            "product_id": f"P{rng.randint(1, PRODUCTS):04d}",
            "ts": f"2025-11-20T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        },
        sort_keys=True,
    ).encode()


def seed_pubsub(
    host: str, project: str, topic_id: str = "ecommerce-events", sub_id: str = "ecommerce-events-dataflow"
) -> int:
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core import exceptions

    # The clients read PUBSUB_EMULATOR_HOST at construction (insecure channel, no credentials).
    with _ENV_LOCK:
        old = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        try:
            publisher = pubsub_v1.PublisherClient()
            subscriber = pubsub_v1.SubscriberClient()
        finally:
            if old is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = old
    topic = publisher.topic_path(project, topic_id)
    sub = subscriber.subscription_path(project, sub_id)
    try:
        publisher.create_topic(name=topic, timeout=30)
    except exceptions.AlreadyExists:
        pass
    try:
        subscriber.create_subscription(
            request={"name": sub, "topic": topic, "retain_acked_messages": True, "ack_deadline_seconds": 60},
            timeout=30,
        )
    except exceptions.AlreadyExists:
        pass
    rng = random.Random(5)
    futures = [publisher.publish(topic, event(i, rng)) for i in range(EVENTS)]
    for f in futures:
        f.result(timeout=30)
    subscriber.close()
    return EVENTS


def seed_dataflow(
    endpoint: str, project: str, region: str, name: str, template: str, topic: str, subscription: str
) -> str:
    body = json.dumps(
        {
            "projectId": project,
            "location": region,
            "name": name,
            "type": "JOB_TYPE_STREAMING",
            "containerSpecGcsPath": template,
            "parameters": {
                "inputSubscription": subscription,
                "outputDataset": "ecommerce",
                "bigtableTable": "product_stats",
                "streaming": "true",
                "inputTopic": topic,
            },
        }
    ).encode()
    req = urllib.request.Request(
        f"{endpoint}/_control/seed-job",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - local sandbox server
        return json.loads(resp.read())["id"]


def seed(box: Any, components: list[str], restarted: set[str]) -> None:
    """Seed each GCP component that has no marker yet, or was restarted (in-memory data lost)."""
    stores = box.stores()
    gcp = stores["gcp"]
    project = gcp["project"]
    marker = box.marker_dir
    for comp in ("bigquery", "bigtable", "pubsub", "dataflow"):
        if comp not in components:
            continue
        m = marker / comp
        if m.exists() and comp not in restarted:
            continue
        if comp == "bigquery":
            result: Any = seed_bigquery(gcp["bigquery_endpoint"], project, gcp["dataset"])
        elif comp == "bigtable":
            result = seed_bigtable(
                gcp["bigtable_host_us_central1"], project, gcp["bigtable_instance"], gcp["bigtable_table"]
            )
        elif comp == "pubsub":
            result = seed_pubsub(gcp["pubsub_host"], project, gcp["pubsub_topic"], gcp["pubsub_subscription"])
        else:
            result = seed_dataflow(
                gcp["dataflow_endpoint"],
                project,
                gcp["region"],
                gcp["dataflow_job_name"],
                gcp["template"],
                f"projects/{project}/topics/{gcp['pubsub_topic']}",
                f"projects/{project}/subscriptions/{gcp['pubsub_subscription']}",
            )
        m.write_text(json.dumps(result))
