"""bigtable.* actions against real cbtemulators behind the backup proxy, with the real clients (no mocks).

Two emulators stand for two regions (us-central1 primary, europe-west1 secondary), each behind a
``BigtableBackupServer`` that implements managed backups. The proxy's clock is movable, which is
how backups "created 40 days ago" are made for the prune test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions.registry import registry
from runbook.actions.spec import Effect, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.core.procs import free_port
from runbook.sandbox.bigtable_backup import BigtableBackupServer
from runbook.sandbox.emulators import BIGTABLE_BIN, BigtableEmulator
from runbook.stores import bigtable as bts
from runbook.stores.pool import ClientPool

POOL = ClientPool()  # clients these tests make directly (actions get their own through StepContext)

pytestmark = [
    pytest.mark.skipif(not BIGTABLE_BIN.exists(), reason="cbtemulator not installed"),
    pytest.mark.timeout(60),
]

PROJECT = "runbook-sandbox"
INSTANCE = "ecommerce"
CLUSTER = "ecommerce-c1"
TABLE = "product_stats"
ROWS = 300
DAY = 86400


class Clock:
    """The proxy's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Region:
    emulator: BigtableEmulator
    proxy: BigtableBackupServer
    clock: Clock


def _region(base: Path, name: str) -> Iterator[Region]:
    emulator = BigtableEmulator(base / name, port=free_port())
    emulator.start()
    emulator.wait_ready()
    clock = Clock()
    proxy = BigtableBackupServer(
        upstream=emulator.address, state_dir=base / name / "state", clock=clock
    ).start()
    try:
        yield Region(emulator, proxy, clock)
    finally:
        proxy.stop()
        emulator.stop()


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    yield from _region(tmp_path_factory.mktemp("bt"), "us")


@pytest.fixture(scope="module")
def secondary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    yield from _region(tmp_path_factory.mktemp("bt"), "eu")


def make_env(primary: Region, secondary: Region | None = None, **extra: Any) -> Environment:
    gcp: dict[str, Any] = {
        "project": PROJECT,
        "region": "us-central1",
        "secondary_region": "europe-west1",
        "bigtable_instance": INSTANCE,
        "bigtable_cluster": CLUSTER,
        "bigtable_table": TABLE,
        "bigtable_host_us_central1": primary.proxy.address,
        **extra,
    }
    if secondary is not None:
        gcp["bigtable_host_europe_west1"] = secondary.proxy.address
    return Environment(name="sandbox", sandbox=True, stores={"gcp": gcp})


class Run:
    """Runs actions in one environment, collecting log lines."""

    def __init__(self, env: Environment, workdir: Path, on_log: Any = None) -> None:
        self.lines: list[str] = []
        self.env = env

        def log(line: str) -> None:
            self.lines.append(line)
            if on_log is not None:
                on_log(line)

        self.ctx = StepContext(
            incident_id="t", step_id="s", mode="live", environment=env, workdir=workdir, log=log
        )

    def __call__(self, name: str, **params: Any) -> dict[str, Any]:
        action = registry()[name]
        return action.run(self.ctx, action.Params(**params))


def seed(env: Environment, table: str, region: str | None = None, rows: int = ROWS) -> None:
    """A product_stats-like table: three families, several versions, binary qualifiers and values."""
    from google.cloud.bigtable.data import RowMutationEntry, SetCell
    from google.cloud.bigtable_admin_v2 import types

    h, _ = bts.handle(env, region, pool=POOL)
    families = {
        "stats": types.ColumnFamily(gc_rule=types.GcRule(max_num_versions=3)),
        "meta": types.ColumnFamily(gc_rule=types.GcRule(max_num_versions=1)),
        "raw": types.ColumnFamily(),
    }
    h.admin.create_table(
        parent=h.instance_path(INSTANCE),
        table_id=table,
        table=types.Table(column_families=families),
        retry=bts.admin_retry(30),  # right after an emulator restart the proxy may still be reconnecting
    )
    entries = []
    base = 1_763_596_800_000_000  # 2025-11-20, in microseconds (millisecond granularity)
    for i in range(rows):
        muts = [
            SetCell("stats", b"views", str(i * v).encode(), timestamp_micros=base + v * 1000)
            for v in range(3)
        ]
        muts.append(SetCell("stats", b"orders", str(i % 17).encode(), timestamp_micros=base))
        muts.append(SetCell("meta", b"category", [b"books", b"toys", b"tools"][i % 3], timestamp_micros=base))
        if i % 4 == 0:
            muts.append(SetCell("raw", b"bin\x00q", bytes(range(i % 256)), timestamp_micros=base + 5000))
        entries.append(RowMutationEntry(f"product#P{i:04d}".encode(), muts))
    h.table(INSTANCE, table).bulk_mutate_rows(entries)


def delete_rows(env: Environment, table: str, keys: list[bytes]) -> None:
    from google.cloud.bigtable.data import DeleteAllFromRow, RowMutationEntry

    h, _ = bts.handle(env, pool=POOL)
    h.table(INSTANCE, table).bulk_mutate_rows([RowMutationEntry(k, [DeleteAllFromRow()]) for k in keys])


@pytest.fixture(scope="module")
def seeded(primary: Region) -> Environment:
    env = make_env(primary)
    seed(env, TABLE)
    seed(env, "reference")  # the same content, never touched: what every copy must equal
    return env


# --- registry, params, describe -----------------------------------------------------------


def test_actions_are_registered_with_their_effects() -> None:
    effects = {name: registry()[name].effect for name in registry() if name.startswith("bigtable.")}
    assert effects == {
        "bigtable.backup": Effect.MUTATING,
        "bigtable.list_backups": Effect.READ_ONLY,
        "bigtable.restore": Effect.DESTRUCTIVE,
        "bigtable.prune_backups": Effect.DESTRUCTIVE,
        "bigtable.row_count": Effect.READ_ONLY,
        "bigtable.verify_rows": Effect.READ_ONLY,
        "bigtable.export_table": Effect.MUTATING,
        "bigtable.import_table": Effect.DESTRUCTIVE,
    }
    restore = registry()["bigtable.restore"]
    p = restore.Params(backup="latest", table="product_stats", replace=True)
    assert restore.target(p) == "product_stats"
    assert "DeleteTable(product_stats)" in restore.describe(p) and "RestoreTable" in restore.describe(p)
    backup = registry()["bigtable.backup"]
    assert "product_stats_backup_<YYYYmmdd_HHMMSS>" in backup.describe(backup.Params(table="product_stats"))
    with pytest.raises(ValidationError, match="between 6h and 90d"):
        backup.Params(retention="120d")
    with pytest.raises(ValidationError):
        backup.Params(retention="soon")
    with pytest.raises(ValidationError):
        restore.Params(backup="b", table="bad/name")
    with pytest.raises(ValidationError):
        registry()["bigtable.prune_backups"].Params(table="t", keep_latest=0)  # never the newest
    assert registry()["bigtable.prune_backups"].Params(table="t").older_than == "30d"


def test_clients_are_cached_and_env_var_is_not_left_behind(primary: Region, secondary: Region) -> None:
    env = make_env(primary, secondary)
    os.environ.pop("BIGTABLE_EMULATOR_HOST", None)
    a, _ = bts.handle(env, pool=POOL)
    b, _ = bts.handle(env, "primary", pool=POOL)
    c, _ = bts.handle(env, "secondary", pool=POOL)
    assert a is b and a is not c
    assert (a.endpoint, c.endpoint, c.region) == (
        primary.proxy.address,
        secondary.proxy.address,
        "europe-west1",
    )
    assert "BIGTABLE_EMULATOR_HOST" not in os.environ
    assert a.table(INSTANCE, TABLE) is a.table(INSTANCE, TABLE)


# --- backup, restore, verify ----------------------------------------------------------------


def test_backup_delete_restore_and_verify(seeded: Environment, tmp_path: Path) -> None:
    run = Run(seeded, tmp_path)
    out = run("bigtable.backup", retention="30d")
    assert out["backup"].startswith("product_stats_backup_") and len(out["backup"]) == len(
        "product_stats_backup_20250101_030000"
    )
    assert out["name"].endswith(f"/clusters/{CLUSTER}/backups/{out['backup']}")
    assert out["expire_time"].endswith("Z") and out["size_bytes"] > 0
    listed = run("bigtable.list_backups", max_age="1h")
    assert listed["latest"] == out["backup"] and listed["count"] >= 1 and out["backup"] in listed["names"]

    # Data loss: 40 rows deleted after the backup.
    lost = [f"product#P{i:04d}".encode() for i in range(0, 200, 5)]
    delete_rows(seeded, TABLE, lost)
    assert run("bigtable.row_count")["rows"] == ROWS - len(lost)
    with pytest.raises(ActionError) as err:
        run("bigtable.verify_rows", table=TABLE, reference_table="reference", sample=0)
    assert str(err.value) == (
        "Table product_stats does not match reference: row product#P0000 is missing from product_stats "
        "(40 of 300 compared rows differ)."
    )
    with pytest.raises(ActionError, match=r"rows, expected 300\.$"):
        run("bigtable.row_count", expected=ROWS)

    # Restore into a new table, by "latest".
    restored = run("bigtable.restore", backup="latest", table="product_stats_restored")
    assert restored == {"table": "product_stats_restored", "rows": ROWS, "backup": out["name"]}
    ok = run("bigtable.verify_rows", table="product_stats_restored", reference_table="reference", sample=0)
    assert ok == {"sampled": ROWS, "mismatches": 0, "first_mismatch": ""}
    sampled = run(
        "bigtable.verify_rows", table="product_stats_restored", reference_table="reference", sample=50
    )
    assert sampled["sampled"] == 50 and sampled["mismatches"] == 0

    # Onto the damaged original: refused, then replaced.
    with pytest.raises(ActionError) as err:
        run("bigtable.restore", backup=out["backup"], table=TABLE)
    assert str(err.value) == (
        "Table product_stats already exists in instance ecommerce (us-central1): restore into a new "
        "table name, or set replace: true to delete it first."
    )
    replaced = run("bigtable.restore", backup=out["backup"], table=TABLE, replace=True)
    assert replaced["rows"] == ROWS
    assert any("deleting existing table product_stats" in line for line in run.lines)
    assert run("bigtable.verify_rows", table=TABLE, reference_table="reference", sample=25)["mismatches"] == 0

    # A sampled check finds a changed cell and names its row; fail: false only reports.
    from google.cloud.bigtable.data import RowMutationEntry, SetCell

    h, _ = bts.handle(seeded, pool=POOL)
    h.table(INSTANCE, TABLE).bulk_mutate_rows(
        [RowMutationEntry(b"product#P0299", [SetCell("meta", b"category", b"garden", timestamp_micros=0)])]
    )
    report = run("bigtable.verify_rows", table=TABLE, reference_table="reference", sample=10, fail=False)
    assert (
        report["mismatches"] == 1 and report["first_mismatch"] == "product#P0299"
    )  # the last key is always sampled

    with pytest.raises(ActionError, match="not found while trying to restore backup nope"):
        run("bigtable.restore", backup="nope", table="x")


def test_prune_older_than_never_the_newest(primary: Region, seeded: Environment, tmp_path: Path) -> None:
    from google.cloud.bigtable_admin_v2 import types

    run = Run(seeded, tmp_path)
    h, _ = bts.handle(seeded, pool=POOL)
    h.admin.create_table(parent=h.instance_path(INSTANCE), table_id="prunable", table=types.Table())
    try:
        primary.clock.offset = -40 * DAY  # the proxy stamps these backups 40 days ago
        run("bigtable.backup", table="prunable", backup_id="old1")
        primary.clock.offset = -35 * DAY
        run("bigtable.backup", table="prunable", backup_id="old2")
    finally:
        primary.clock.offset = 0
    # A dry run only says what it would delete.
    out = run("bigtable.prune_backups", table="prunable", older_than="30d", dry_run=True)
    assert out == {"deleted": [], "kept": ["old2", "old1"]}
    assert [line.split(" (")[0] for line in run.lines if line.startswith("would delete")] == ["would delete old1"]
    assert run("bigtable.list_backups", table="prunable")["names"] == ["old2", "old1"]
    # Only old backups: the newest of them survives.
    out = run("bigtable.prune_backups", table="prunable", older_than="30d")
    assert out == {"deleted": ["old1"], "kept": ["old2"]}
    run("bigtable.backup", table="prunable", backup_id="fresh")
    out = run("bigtable.prune_backups", table="prunable", older_than="30d")
    assert out == {"deleted": ["old2"], "kept": ["fresh"]}
    assert run("bigtable.list_backups", table="prunable")["names"] == ["fresh"]
    with pytest.raises(
        ActionError, match=r"^The newest backup of prunable, fresh, is .* old, older than 1s\.$"
    ):
        time.sleep(1.1)
        run("bigtable.list_backups", table="prunable", max_age="1s")


def test_stopped_step_stops_waiting_but_the_backup_goes_on(seeded: Environment, tmp_path: Path) -> None:
    from google.cloud.bigtable_admin_v2 import types

    from runbook.actions.support.poll import wait_until

    h, _ = bts.handle(seeded, pool=POOL)
    h.admin.create_table(parent=h.instance_path(INSTANCE), table_id="stopped", table=types.Table())
    run = Run(seeded, tmp_path)
    run.ctx.cancelled.set()
    with pytest.raises(ActionError) as err:
        run("bigtable.backup", table="stopped", backup_id="stopped_b1")
    assert str(err.value) == (
        "Stopped waiting for the operation to back up table stopped as stopped_b1: it continues in the background."
    )
    listed = wait_until(
        lambda: Run(seeded, tmp_path)("bigtable.list_backups", table="stopped")["names"],
        lambda names: names == ["stopped_b1"],
        timeout=30,
    )
    assert listed == ["stopped_b1"]


# --- export / import across regions ---------------------------------------------------------


def test_export_import_into_the_secondary_region(primary: Region, secondary: Region, tmp_path: Path) -> None:
    env = make_env(primary, secondary)
    seed(env, "to_copy")
    run = Run(env, tmp_path)
    out = run("bigtable.export_table", table="to_copy", directory=str(tmp_path / "exports"))
    path = Path(out["path"])
    assert path.name.startswith("to_copy_export_") and path.name.endswith(".jsonl.gz")
    assert out["rows"] == ROWS and out["cells"] == ROWS * 5 + ROWS // 4
    assert (path.stat().st_mode & 0o777) == 0o600
    assert Path(f"{path}.sha256").read_text() == f"{out['sha256']}  {path.name}\n"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []

    imported = run("bigtable.import_table", path=str(path), table="to_copy", region="secondary")
    assert imported == {"table": "to_copy", "rows": ROWS, "cells": out["cells"]}
    same = run(
        "bigtable.verify_rows",
        table="to_copy",
        region="secondary",
        reference_table="to_copy",
        reference_region="primary",
        sample=0,
    )
    assert same == {"sampled": ROWS, "mismatches": 0, "first_mismatch": ""}
    h2, _ = bts.handle(env, "secondary", pool=POOL)
    schema = h2.admin.get_table(name=h2.table_path(INSTANCE, "to_copy"))
    assert sorted(schema.column_families) == ["meta", "raw", "stats"]
    assert schema.column_families["stats"].gc_rule.max_num_versions == 3

    with pytest.raises(
        ActionError, match=r"^Table to_copy already exists in instance ecommerce \(europe-west1\)"
    ):
        run("bigtable.import_table", path=str(path), table="to_copy", region="secondary")
    assert (
        run("bigtable.import_table", path=str(path), table="to_copy", region="secondary", replace=True)[
            "rows"
        ]
        == ROWS
    )

    # An export that changed after it was written is never imported.
    tampered = tmp_path / "tampered.jsonl.gz"
    tampered.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "tampered.jsonl.gz.sha256").write_text(f"{out['sha256']}  tampered.jsonl.gz\n")
    with pytest.raises(ActionError, match=r"^Checksum mismatch for .*tampered\.jsonl\.gz"):
        run("bigtable.import_table", path=str(tampered), table="never", region="secondary")
    (tmp_path / "tampered.jsonl.gz.sha256").unlink()
    with pytest.raises(ActionError, match="refusing to import an unverified export"):
        run("bigtable.import_table", path=str(tampered), table="never", region="secondary")


# --- an emulator dying mid-step ---------------------------------------------------------------


def test_store_outage_mid_step(tmp_path: Path) -> None:
    """A short outage is ridden out; a dead emulator is one sentence; a retry after the restart works."""
    emulator = BigtableEmulator(tmp_path / "em", port=free_port())
    emulator.start()
    emulator.wait_ready()
    proxy = BigtableBackupServer(upstream=emulator.address).start()
    port = proxy.port
    servers = [proxy]
    try:
        region = Region(emulator, proxy, Clock())
        env = make_env(region, rpc_timeout=15)
        seed(env, TABLE)

        # 1. The endpoint goes away for ~1 s as the scan starts: the export retries and completes.
        def blip(line: str) -> None:
            if line.startswith("reading every row"):
                servers[-1].stop(grace=0)

                def back() -> None:
                    time.sleep(1.0)
                    servers.append(BigtableBackupServer(upstream=emulator.address, port=port).start())

                threading.Thread(target=back, daemon=True).start()

        run = Run(env, tmp_path, on_log=blip)
        out = run("bigtable.export_table", directory=str(tmp_path / "blip"))
        assert out["rows"] == ROWS
        assert any("store not answering (ServiceUnavailable), retrying" in line for line in run.lines)
        region.proxy = servers[-1]  # the same address, a new server

        # 2. The emulator dies as the scan starts: one sentence, within the rpc_timeout budget.
        def kill(line: str) -> None:
            if line.startswith("reading every row"):
                emulator.stop()

        run = Run(make_env(region, rpc_timeout=2), tmp_path, on_log=kill)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as err:
            run("bigtable.export_table", directory=str(tmp_path / "out"))
        message = str(err.value)
        assert message.startswith("Bigtable is not reachable while trying to export table product_stats: ")
        assert "runbook sandbox status" in message and "\n" not in message
        assert time.monotonic() - started < 10
        assert not list((tmp_path / "out").iterdir())  # no half-written export left behind

        # 3. The sandbox comes back (empty: the emulator keeps data in memory); the same cached
        # clients reconnect and the retried step works.
        emulator.start()
        emulator.wait_ready()
        retry_env = make_env(region, rpc_timeout=30)
        seed(retry_env, TABLE)
        out = Run(retry_env, tmp_path)("bigtable.export_table", directory=str(tmp_path / "out"))
        assert out["rows"] == ROWS
    finally:
        for server in servers:
            server.stop(grace=0)
        emulator.stop()
