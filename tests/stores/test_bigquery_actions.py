"""bigquery.* actions against a real bqemulator with the real google-cloud-bigquery client (no mocks).

The emulator starts once for the module; each test works in its own datasets. The test that
stops and restarts the emulator runs last.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions import bigquery as actions_module
from runbook.actions.registry import registry as full_registry
from runbook.actions.spec import Effect, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.sandbox.emulators import BigQueryEmulator
from runbook.stores import bigquery as bqstore
from runbook.stores.pool import ClientPool
from tests.stores.emulated import PROJECT, running, sandbox_env

POOL = ClientPool()  # clients these tests make directly (actions get their own through StepContext)


def registry() -> dict[str, Any]:
    """The BigQuery actions only (independent of the other packages the registry loads)."""
    return {spec.name: spec for spec in actions_module.SPECS}


@pytest.fixture(scope="module")
def bq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    yield from running(BigQueryEmulator(tmp_path_factory.mktemp("bigquery"), project=PROJECT), POOL.close)


@pytest.fixture(scope="module")
def env(bq: BigQueryEmulator) -> Environment:
    return sandbox_env(
        bigquery_endpoint=bq.endpoint,
        bigquery_location_us_central1="US",
    )


@pytest.fixture(scope="module")
def client(bq: BigQueryEmulator) -> Any:
    from google.cloud import bigquery

    return bigquery.Client(**bq.client_kwargs())


class Ctx:
    def __init__(self, env: Environment, tmp_path: Path) -> None:
        self.lines: list[str] = []
        self.ctx = StepContext(
            incident_id="t", step_id="s", mode="live", environment=env, workdir=tmp_path, log=self.lines.append
        )


def act(env: Environment, tmp_path: Path, name: str, **params: Any) -> dict[str, Any]:
    action = registry()[name]
    return action.run(Ctx(env, tmp_path).ctx, action.Params(**params))


def make_dataset(client: Any, name: str, tables: dict[str, int], location: str = "US") -> None:
    """A dataset whose tables hold ``n`` rows each: id, name, amount, ts."""
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{PROJECT}.{name}")
    ds.location = location
    client.delete_dataset(ds.reference, delete_contents=True, not_found_ok=True)
    client.create_dataset(ds)
    schema = [
        bigquery.SchemaField("id", "INT64"),
        bigquery.SchemaField("name", "STRING"),
        bigquery.SchemaField("amount", "FLOAT64"),
        bigquery.SchemaField("ts", "TIMESTAMP"),
    ]
    for table, n in tables.items():
        ref = f"{PROJECT}.{name}.{table}"
        client.create_table(bigquery.Table(ref, schema=schema))
        insert(client, ref, range(n))


def insert(client: Any, ref: str, ids: Any) -> None:
    rows = [{"id": i, "name": f"row-{i}", "amount": i * 1.25, "ts": "2025-11-20T00:00:00Z"} for i in ids]
    for start in range(0, len(rows), 500):
        assert client.insert_rows_json(ref, rows[start : start + 500]) == []


def count(client: Any, ref: str) -> int:
    return list(client.query(f"SELECT COUNT(*) AS n FROM `{ref}`").result())[0]["n"]


def ids(client: Any, ref: str) -> set[int]:
    return {r["id"] for r in client.query(f"SELECT id FROM `{ref}`").result()}


# --- contract --------------------------------------------------------------------------------


def test_effects_targets_and_descriptions() -> None:
    reg = registry()
    expected = {
        "bigquery.backup_dataset": Effect.MUTATING,
        "bigquery.snapshot_table": Effect.MUTATING,
        "bigquery.restore_table": Effect.DESTRUCTIVE,
        "bigquery.restore_dataset": Effect.DESTRUCTIVE,
        "bigquery.time_travel_restore": Effect.DESTRUCTIVE,
        "bigquery.row_counts": Effect.READ_ONLY,
        "bigquery.compare_counts": Effect.READ_ONLY,
        "bigquery.list_backups": Effect.READ_ONLY,
        "bigquery.prune_backups": Effect.DESTRUCTIVE,
        "bigquery.copy_dataset_region": Effect.MUTATING,
        "bigquery.verify_rows": Effect.READ_ONLY,
        "bigquery.generate_events": Effect.MUTATING,
    }
    for name, effect in expected.items():
        assert reg[name].effect == effect, name
        assert name in full_registry(), name  # auto-loaded by the action registry
        assert reg[name].outputs and reg[name].summary
    restore = reg["bigquery.restore_table"]
    p = restore.Params(dataset="ecommerce", table="sales_summary", from_dataset="ecommerce_backup_20250101_020000")
    assert restore.target(p) == "ecommerce.sales_summary"
    assert restore.describe(p).startswith(
        "bigquery.copy_table(ecommerce_backup_20250101_020000.sales_summary → ecommerce.sales_summary, "
        "write_disposition=WRITE_TRUNCATE"
    )
    backup = reg["bigquery.backup_dataset"]
    d = backup.describe(backup.Params(dataset="ecommerce"))
    assert "ecommerce_backup_<YYYYmmdd_HHMMSS>" in d and "bigquery.copy_table(ecommerce.<table>" in d
    assert (
        reg["bigquery.prune_backups"].target(reg["bigquery.prune_backups"].Params(dataset="ecommerce"))
        == "ecommerce_backup_*"
    )
    assert (
        reg["bigquery.restore_dataset"].target(
            reg["bigquery.restore_dataset"].Params(from_dataset="ecommerce_backup_20250101_020000", dataset="ecommerce")
        )
        == "ecommerce"
    )


def test_params_are_checked_before_anything_runs() -> None:
    reg = registry()
    with pytest.raises(ValidationError):
        reg["bigquery.restore_table"].Params(dataset="d", table="t", from_dataset="d")  # itself
    with pytest.raises(ValidationError):
        reg["bigquery.row_counts"].Params(dataset="d; DROP", tables=["t"])
    with pytest.raises(ValidationError):
        reg["bigquery.row_counts"].Params(tables=["a`b"])
    with pytest.raises(ValidationError):
        reg["bigquery.compare_counts"].Params(a="d1", b="d2.t")
    with pytest.raises(ValidationError):
        reg["bigquery.time_travel_restore"].Params(dataset="d", table="t", timestamp="yesterday")
    with pytest.raises(ValidationError):
        reg["bigquery.prune_backups"].Params(dataset="d", keep_latest=0)
    with pytest.raises(ValidationError):
        reg["bigquery.prune_backups"].Params(dataset="d", older_than="soon")
    assert reg["bigquery.prune_backups"].Params(dataset="d").older_than == "90d"
    with pytest.raises(ValidationError):
        reg["bigquery.backup_dataset"].Params(dataset="d", unknown=1)


def test_light_import_and_cached_clients(env: Environment) -> None:
    code = (
        "import sys, runbook.actions.bigquery, runbook.stores.bigquery; print('google.cloud.bigquery' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    c1 = bqstore.client(env, pool=POOL)
    assert bqstore.client(env, pool=POOL) is c1
    other = Environment(name="other", sandbox=True, stores=env.stores)
    assert bqstore.client(other, pool=POOL) is not c1


# --- backups and restores ----------------------------------------------------------------------


def test_backup_dataset_then_restore_deleted_table(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "shop", {"sales": 300, "views": 120, "inventory": 40})
    out = act(env, tmp_path, "bigquery.backup_dataset", dataset="shop")
    backup = out["backup_dataset"]
    assert backup.startswith("shop_backup_") and len(backup) == len("shop_backup_20250101_020000")
    assert out["tables"] == ["inventory", "sales", "views"]
    assert out["rows"] == {"inventory": 40, "sales": 300, "views": 120} and out["total"] == 460
    labels = client.get_dataset(f"{PROJECT}.{backup}").labels
    assert labels["runbook-backup"] == "true" and labels["runbook-source"] == "shop"

    before = ids(client, f"{PROJECT}.shop.sales")
    client.delete_table(f"{PROJECT}.shop.sales")
    restored = act(env, tmp_path, "bigquery.restore_table", dataset="shop", table="sales", from_dataset=backup)
    assert restored["rows"] == 300 and restored["kind"] == "table"
    assert ids(client, f"{PROJECT}.shop.sales") == before

    assert act(env, tmp_path, "bigquery.compare_counts", a="shop", b=backup)["equal"] is True
    for method in ("random", "first"):
        v = act(
            env,
            tmp_path,
            "bigquery.verify_rows",
            dataset="shop",
            table="sales",
            reference_dataset=backup,
            key="id",
            sample=50,
            method=method,
        )
        assert v == {"sampled": 50, "mismatches": 0, "mismatched_keys": []}

    # The seed's `bq cp BACKUP.* DATASET`: two tables lost, every table back.
    client.delete_table(f"{PROJECT}.shop.views")
    client.query(f"DELETE FROM `{PROJECT}.shop.inventory` WHERE id < 30").result()
    out = act(env, tmp_path, "bigquery.restore_dataset", from_dataset=backup, dataset="shop")
    assert out["rows"] == {"inventory": 40, "sales": 300, "views": 120}
    assert act(env, tmp_path, "bigquery.row_counts", dataset="shop")["counts"] == {
        "inventory": 40,
        "sales": 300,
        "views": 120,
    }
    # Into a dataset that is gone: created in the backup's location first.
    out = act(env, tmp_path, "bigquery.restore_dataset", from_dataset=backup, dataset="shop_rebuilt", tables=["sales"])
    assert out == {"tables": ["sales"], "rows": {"sales": 300}, "total": 300}
    assert client.get_dataset(f"{PROJECT}.shop_rebuilt").location == "US"
    with pytest.raises(ActionError, match="Dataset shop_gone does not exist"):
        act(env, tmp_path, "bigquery.restore_dataset", from_dataset=backup, dataset="shop_gone", create=False)
    listed = act(env, tmp_path, "bigquery.list_backups", dataset="shop", max_age="1h")
    assert listed["latest"] == backup and listed["count"] == 1


def test_snapshot_then_restore(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "snapds", {"orders": 200})
    out = act(env, tmp_path, "bigquery.snapshot_table", dataset="snapds", table="orders", retention_days=7)
    snap = out["snapshot"]
    assert snap.startswith(f"{PROJECT}.snapds.orders_snapshot_")
    expires = datetime.fromisoformat(out["expires"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(UTC)) - timedelta(days=7)) < timedelta(minutes=1)
    assert client.get_table(snap).table_type == "SNAPSHOT"

    client.query(f"DELETE FROM `{PROJECT}.snapds.orders` WHERE id >= 50").result()
    client.query(f"UPDATE `{PROJECT}.snapds.orders` SET name = 'corrupt' WHERE id < 10").result()
    snap_table = snap.rsplit(".", 1)[1]
    restored = act(
        env,
        tmp_path,
        "bigquery.restore_table",
        dataset="snapds",
        table="orders",
        from_dataset="snapds",
        from_table=snap_table,
    )
    assert restored["kind"] == "snapshot" and restored["rows"] == 200
    names = {r["name"] for r in client.query(f"SELECT name FROM `{PROJECT}.snapds.orders`").result()}
    assert "corrupt" not in names and len(names) == 200


def test_time_travel_restore_drops_later_rows(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "ttds", {"events": 100})
    time.sleep(1.1)
    mark = datetime.now(UTC)
    time.sleep(1.1)
    insert(client, f"{PROJECT}.ttds.events", range(1000, 1025))
    client.query(f"DELETE FROM `{PROJECT}.ttds.events` WHERE id < 10").result()
    assert count(client, f"{PROJECT}.ttds.events") == 115

    out = act(env, tmp_path, "bigquery.time_travel_restore", dataset="ttds", table="events", timestamp=mark.isoformat())
    assert out["rows"] == 100
    assert ids(client, f"{PROJECT}.ttds.events") == set(range(100))
    leftovers = [t.table_id for t in client.list_tables(f"{PROJECT}.ttds")]
    assert leftovers == ["events"]  # the staging table is gone

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(ActionError, match="in the future"):
        act(env, tmp_path, "bigquery.time_travel_restore", dataset="ttds", table="events", timestamp=future)


def test_list_and_prune_backups_by_name_timestamp(env: Environment, client: Any, tmp_path: Path) -> None:
    """bqemulator cannot backdate a dataset's creation time: age comes from the name's timestamp."""
    from google.cloud import bigquery

    now = datetime.now(UTC)
    ages = [200, 120, 91, 30, 1]
    names = [f"prunesrc_backup_{(now - timedelta(days=d)).strftime('%Y%m%d_%H%M%S')}" for d in ages]
    bystanders = ["prunesrc_backup_notes", f"other_backup_{(now - timedelta(days=400)).strftime('%Y%m%d_%H%M%S')}"]
    for name in names + bystanders:
        client.create_dataset(bigquery.Dataset(f"{PROJECT}.{name}"), exists_ok=True)
        client.create_table(
            bigquery.Table(f"{PROJECT}.{name}.t", schema=[bigquery.SchemaField("id", "INT64")]), exists_ok=True
        )

    listed = act(env, tmp_path, "bigquery.list_backups", dataset="prunesrc")
    assert listed["names"] == names and listed["latest"] == names[-1] and listed["count"] == 5
    with pytest.raises(ActionError, match="older than 1h"):
        act(env, tmp_path, "bigquery.list_backups", dataset="prunesrc", max_age="1h")

    # A dry run only says what it would delete.
    c = Ctx(env, tmp_path)
    prune = registry()["bigquery.prune_backups"]
    out = prune.run(c.ctx, prune.Params(dataset="prunesrc", dry_run=True))
    assert out == {"deleted": [], "kept": names}
    assert [line.split(" (")[0] for line in c.lines if line.startswith("would delete")] == [
        f"would delete {n}" for n in names[:3]
    ]
    assert set(names) <= {d.dataset_id for d in client.list_datasets()}

    out = act(env, tmp_path, "bigquery.prune_backups", dataset="prunesrc", older_than="90d")
    assert out["deleted"] == names[:3] and out["kept"] == names[3:]
    remaining = {d.dataset_id for d in client.list_datasets()}
    assert not set(names[:3]) & remaining and set(names[3:] + bystanders) <= remaining

    # Everything is old: the newest survives anyway.
    out = act(env, tmp_path, "bigquery.prune_backups", dataset="prunesrc", older_than="1h")
    assert out["deleted"] == [names[3]] and out["kept"] == [names[4]]


def test_compare_counts_mismatch_is_one_sentence(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "cmp_a", {"sales": 300, "views": 20})
    make_dataset(client, "cmp_b", {"sales": 290, "extra": 5})
    with pytest.raises(ActionError) as info:
        act(env, tmp_path, "bigquery.compare_counts", a="cmp_a", b="cmp_b")
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0
    assert msg.startswith("Row counts differ between cmp_a and cmp_b:")
    assert "sales 300 vs 290" in msg and "views missing from cmp_b" in msg and "extra missing from cmp_a" in msg
    out = act(env, tmp_path, "bigquery.compare_counts", a="cmp_a.sales", b="cmp_b.sales", fail=False)
    assert out["equal"] is False and out["counts_a"] == {"sales": 300} and out["counts_b"] == {"sales": 290}
    assert (
        act(env, tmp_path, "bigquery.compare_counts", a="cmp_a.sales", b="cmp_b.sales", tolerance=10)["equal"] is True
    )


def test_cross_region_copy(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "regional", {"sales": 150, "views": 60})
    out = act(env, tmp_path, "bigquery.copy_dataset_region", dataset="regional")
    assert out["target_dataset"] == "regional_europe_west1" and out["location"] == "europe-west1"
    assert out["rows"] == {"sales": 150, "views": 60}
    assert client.get_dataset(f"{PROJECT}.regional_europe_west1").location == "europe-west1"
    # Idempotent: a second run truncates, it does not append.
    assert act(env, tmp_path, "bigquery.copy_dataset_region", dataset="regional")["total"] == 210
    with pytest.raises(ActionError, match="already exists in europe-west1, not in US"):
        act(
            env,
            tmp_path,
            "bigquery.copy_dataset_region",
            dataset="regional",
            region="primary",
            target_dataset="regional_europe_west1",
        )


def test_generate_events_and_detect_changed_rows(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "drill", {})
    out = act(
        env, tmp_path, "bigquery.generate_events", dataset="drill", table="events", count=1000, id_prefix="E", seed=1
    )
    assert out["rows"] == 1000 and (out["first_event_id"], out["last_event_id"]) == ("E000000", "E000999")
    assert count(client, f"{PROJECT}.drill.events") == 1000

    act(env, tmp_path, "bigquery.backup_dataset", dataset="drill", backup_dataset="drill_copy")
    client.query(f"UPDATE `{PROJECT}.drill.events` SET type = 'tampered' WHERE event_id = 'E000003'").result()
    client.query(f"DELETE FROM `{PROJECT}.drill.events` WHERE event_id = 'E000007'").result()
    with pytest.raises(ActionError) as info:
        act(
            env,
            tmp_path,
            "bigquery.verify_rows",
            dataset="drill",
            table="events",
            reference_dataset="drill_copy",
            key="event_id",
            sample=10,
            method="first",
        )
    assert (
        str(info.value)
        == "2 of 10 sampled rows of drill.events differ from drill_copy.events (event_id E000003, E000007)."
    )
    out = act(
        env,
        tmp_path,
        "bigquery.verify_rows",
        dataset="drill",
        table="events",
        reference_dataset="drill_copy",
        key="event_id",
        sample=10,
        method="first",
        fail=False,
    )
    assert out["mismatched_keys"] == ["E000003", "E000007"]


def test_missing_things_are_one_sentence(env: Environment, tmp_path: Path) -> None:
    with pytest.raises(ActionError) as info:
        act(
            env,
            tmp_path,
            "bigquery.restore_table",
            dataset="shop",
            table="sales",
            from_dataset="nope_backup_20250101_000000",
        )
    msg = str(info.value)
    assert msg.startswith("BigQuery: not found while trying to read the restore source") and "\n" not in msg
    no_dataset = Environment(
        name="nods",
        sandbox=True,
        stores={"gcp": {"project": PROJECT, "bigquery_endpoint": env.stores["gcp"]["bigquery_endpoint"]}},
    )
    with pytest.raises(ActionError, match="No dataset given"):
        act(no_dataset, tmp_path, "bigquery.row_counts")


def test_stopped_step_leaves_no_partial_backup(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "halt", {"a": 5, "b": 5})
    c = Ctx(env, tmp_path)
    c.ctx.cancelled.set()
    action = registry()["bigquery.backup_dataset"]
    with pytest.raises(ActionError) as info:
        action.run(c.ctx, action.Params(dataset="halt", backup_dataset="halt_backup_20250101_000000"))
    assert str(info.value) == (
        "Copying halt to halt_backup_20250101_000000 was stopped by the operator after 0 tables; "
        "the incomplete backup dataset halt_backup_20250101_000000 was deleted."
    )
    assert "halt_backup_20250101_000000" not in {d.dataset_id for d in client.list_datasets()}


def test_stopped_step_stops_waiting_for_its_job(env: Environment, client: Any, tmp_path: Path) -> None:
    make_dataset(client, "halt_snap", {"orders": 5})
    c = Ctx(env, tmp_path)
    c.ctx.cancelled.set()
    action = registry()["bigquery.snapshot_table"]
    with pytest.raises(ActionError) as info:
        action.run(c.ctx, action.Params(dataset="halt_snap", table="orders", snapshot="orders_snap"))
    assert re.fullmatch(
        r"BigQuery job \S+ \(snapshot halt_snap\.orders to halt_snap\.orders_snap\) was stopped by the operator\.",
        str(info.value),
    )


def test_stopped_emulator_is_one_sentence_and_retry_works(
    bq: BigQueryEmulator, env: Environment, client: Any, tmp_path: Path
) -> None:
    make_dataset(client, "outage", {"sales": 80})
    assert act(env, tmp_path, "bigquery.row_counts", dataset="outage")["total"] == 80
    endpoint = bq.endpoint
    bq.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        act(env, tmp_path, "bigquery.row_counts", dataset="outage")
    assert time.monotonic() - started < 10  # a refused connection is not retried for minutes
    msg = str(info.value)
    assert (
        msg.startswith("BigQuery is not reachable while trying to")
        and "runbook sandbox status" in msg
        and "\n" not in msg
    )

    bq.start()
    bq.wait_ready()
    assert bq.endpoint == endpoint
    # bqemulator persists its data: the retried step sees the same rows.
    assert act(env, tmp_path, "bigquery.row_counts", dataset="outage")["counts"] == {"sales": 80}
