"""BigtableBackupServer against a real cbtemulator, driven by the real google-cloud-bigtable client."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.core.procs import free_port
from runbook.sandbox.bigtable_backup import HIDDEN_TABLE_PREFIX, STATE_FILE, BigtableBackupServer

CBTEMULATOR = "/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator"
PROJECT = "proj"
INSTANCE = "inst"
CLUSTER = "c1"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CBTEMULATOR), reason="cbtemulator not installed"),
    pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning"),
    pytest.mark.timeout(60),
]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} did not open")


def _days(n: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=n)


class _Clock:
    """A movable clock for the server (expiry tests)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def emulator() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [CBTEMULATOR, "-host", "127.0.0.1", "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def server(emulator: str, tmp_path: Path, clock: _Clock) -> Iterator[BigtableBackupServer]:
    with BigtableBackupServer(upstream=emulator, port=0, state_dir=tmp_path / "state", clock=clock) as srv:
        yield srv


def _client(monkeypatch: pytest.MonkeyPatch, address: str):
    from google.cloud import bigtable

    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", address)
    return bigtable.Client(project=PROJECT, admin=True)


@pytest.fixture
def client(server: BigtableBackupServer, monkeypatch: pytest.MonkeyPatch):
    return _client(monkeypatch, server.address)


@pytest.fixture
def instance(client):
    return client.instance(INSTANCE)


def _make_table(instance, table_id: str = "orders"):
    """A table with three families, several qualifiers, versions, explicit timestamps and big values."""
    from google.cloud.bigtable import column_family

    table = instance.table(table_id)
    table.create(
        column_families={
            "cf1": column_family.MaxVersionsGCRule(5),
            "cf2": None,
            "meta": column_family.MaxAgeGCRule(dt.timedelta(days=3650)),
        }
    )
    rows = []
    for i in range(30):
        row = table.direct_row(f"row#{i:03d}".encode())
        for v in range(3):
            ts = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=v, milliseconds=i)
            row.set_cell("cf1", b"q", f"v{v}-{i}".encode(), timestamp=ts)
        row.set_cell("cf2", b"bin\x00q", bytes(range(256)) * (i % 3))
        row.set_cell("cf2", b"other", str(i).encode())
        if i % 5 == 0:
            row.set_cell("meta", b"big", os.urandom(300_000))
        rows.append(row)
    statuses = table.mutate_rows(rows)
    assert all(s.code == 0 for s in statuses)
    return table


def _snapshot(table) -> dict[bytes, dict[tuple[str, bytes], list[tuple[int, bytes]]]]:
    """Every cell of the table: {row: {(family, qualifier): [(timestamp_micros, value), ...]}}."""
    out: dict[bytes, dict[tuple[str, bytes], list[tuple[int, bytes]]]] = {}
    for row in table.read_rows():
        cells: dict[tuple[str, bytes], list[tuple[int, bytes]]] = {}
        for family, columns in row.cells.items():
            for qualifier, versions in columns.items():
                cells[(family, qualifier)] = [
                    (
                        (c.timestamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
                        // dt.timedelta(microseconds=1),
                        c.value,
                    )
                    for c in versions
                ]
        out[row.row_key] = cells
    return out


def _families(table) -> dict[str, object]:
    return {
        name: cf.gc_rule.to_pb() if cf.gc_rule else None for name, cf in table.list_column_families().items()
    }


def _emulator_table_ids(emulator: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Table ids as the emulator itself sees them (hidden ones included)."""
    direct = _client(monkeypatch, emulator)
    return {t.table_id for t in direct.instance(INSTANCE).list_tables()}


def test_backup_and_restore_roundtrip(instance, client):
    from google.cloud.bigtable_admin_v2.types import Backup

    table = _make_table(instance)
    before = _snapshot(table)
    assert len(before) == 30

    expire = _days(7)
    backup = table.backup("nightly", cluster_id=CLUSTER, expire_time=expire)
    operation = backup.create()
    assert operation.operation.done is False  # like the real service: the client polls GetOperation
    result = operation.result(timeout=30)
    assert result.name == f"projects/{PROJECT}/instances/{INSTANCE}/clusters/{CLUSTER}/backups/nightly"
    assert result.state == Backup.State.READY
    assert operation.metadata.source_table == table.name

    assert backup.exists()
    backup.reload()
    assert backup.source_table == table.name
    assert backup.size_bytes > 1_500_000  # six 300 kB values and more
    assert backup.state == Backup.State.READY
    assert abs(backup.expire_time.seconds - expire.timestamp()) < 1
    assert backup.start_time.seconds <= backup.end_time.seconds
    assert [b.backup_id for b in table.list_backups()] == ["nightly"]
    listed = client.table_admin_client.list_backups(parent=f"{instance.name}/clusters/-")
    assert [b.name for b in listed] == [backup.name]
    assert listed.backups[0].encryption_info.encryption_type == 1  # GOOGLE_DEFAULT_ENCRYPTION

    # Change the source after the backup.
    changed = table.direct_row(b"row#002")
    changed.set_cell("cf1", b"q", b"changed")
    changed.delete_cell("cf2", b"other")
    new = table.direct_row(b"zz-new")
    new.set_cell("cf2", b"x", b"y")
    assert all(s.code == 0 for s in table.mutate_rows([changed, new]))
    row0 = table.direct_row(b"row#000")
    row0.delete()
    row0.commit()
    assert _snapshot(table) != before

    restore_op = backup.restore("orders-restored")
    restored_pb = restore_op.result(timeout=30)
    assert restored_pb.name == f"{instance.name}/tables/orders-restored"
    assert restore_op.metadata.backup_info.backup == backup.name
    restored = instance.table("orders-restored")
    assert _snapshot(restored) == before
    assert _families(restored) == _families(table)

    # Table.restore(...) by backup id works too.
    op2 = table.restore("orders-restored-2", cluster_id=CLUSTER, backup_id="nightly")
    op2.result(timeout=30)
    assert _snapshot(instance.table("orders-restored-2")) == before


def test_conflicts_and_not_found(instance):
    from google.api_core import exceptions

    table = _make_table(instance)
    backup = table.backup("b1", cluster_id=CLUSTER, expire_time=_days(2))
    backup.create().result(timeout=30)

    with pytest.raises(exceptions.AlreadyExists):
        table.backup("b1", cluster_id=CLUSTER, expire_time=_days(3)).create()
    with pytest.raises(exceptions.AlreadyExists):
        backup.restore(table.table_id)  # restoring onto an existing table
    with pytest.raises(exceptions.NotFound):
        instance.table("missing").backup("b2", cluster_id=CLUSTER, expire_time=_days(2)).create()
    ghost = table.backup("ghost", cluster_id=CLUSTER)
    assert not ghost.exists()
    with pytest.raises(exceptions.NotFound):
        ghost.restore("from-ghost")
    with pytest.raises(exceptions.NotFound):
        ghost.delete()
    with pytest.raises(exceptions.InvalidArgument):
        table.backup("bad/id", cluster_id=CLUSTER, expire_time=_days(2)).create()
    assert "from-ghost" not in {t.table_id for t in instance.list_tables()}


def test_expire_time_validation_and_update(instance):
    from google.api_core import exceptions

    table = _make_table(instance)
    for expire in (_days(0.2), _days(91), _days(-1)):  # < 6 hours, > 90 days, in the past
        with pytest.raises(exceptions.InvalidArgument):
            table.backup("short", cluster_id=CLUSTER, expire_time=expire).create()
    assert table.list_backups() == []

    backup = table.backup("ok", cluster_id=CLUSTER, expire_time=_days(0.3))  # 7.2 hours
    backup.create().result(timeout=30)
    later = _days(30)
    backup.update_expire_time(later)
    backup.reload()
    assert abs(backup.expire_time.seconds - later.timestamp()) < 1
    with pytest.raises(exceptions.InvalidArgument):
        backup.update_expire_time(_days(100))
    backup.reload()
    assert abs(backup.expire_time.seconds - later.timestamp()) < 1


def test_delete_backup_and_expiry(instance, emulator, clock, monkeypatch):
    table = _make_table(instance)
    doomed = table.backup("doomed", cluster_id=CLUSTER, expire_time=_days(1))
    doomed.create().result(timeout=30)
    short = table.backup("short-lived", cluster_id=CLUSTER, expire_time=_days(2))
    short.create().result(timeout=30)
    long = table.backup("long-lived", cluster_id=CLUSTER, expire_time=_days(10))
    long.create().result(timeout=30)
    hidden = {f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__{b}" for b in ("doomed", "short-lived", "long-lived")}
    assert hidden <= _emulator_table_ids(emulator, monkeypatch)

    doomed.delete()
    assert not doomed.exists()
    assert f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__doomed" not in _emulator_table_ids(emulator, monkeypatch)

    clock.offset = 3 * 86400  # three days later: short-lived has expired
    assert not short.exists()
    assert [b.backup_id for b in table.list_backups()] == ["long-lived"]
    remaining = _emulator_table_ids(emulator, monkeypatch)
    assert f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__short-lived" not in remaining
    assert f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__long-lived" in remaining


def test_list_filter_order_and_paging(instance, client):
    from google.api_core import exceptions

    orders = _make_table(instance, "orders")
    other = _make_table(instance, "orders10")
    for backup_id, tbl, cluster in (("a1", orders, "c1"), ("a2", orders, "c2"), ("b1", other, "c1")):
        tbl.backup(backup_id, cluster_id=cluster, expire_time=_days(5)).create().result(timeout=30)

    api = client.table_admin_client
    everything = f"{instance.name}/clusters/-"
    # Default order: newest start_time first.
    assert [b.name.rsplit("/", 1)[1] for b in api.list_backups(parent=everything)] == ["b1", "a2", "a1"]
    by_name = api.list_backups(request={"parent": everything, "order_by": "name"})
    assert [b.name.rsplit("/", 1)[1] for b in by_name] == ["a1", "b1", "a2"]  # full names: c1 < c2
    only_c1 = api.list_backups(parent=f"{instance.name}/clusters/c1")
    assert sorted(b.name.rsplit("/", 1)[1] for b in only_c1) == ["a1", "b1"]
    filtered = api.list_backups(
        request={"parent": everything, "filter": f'source_table="{orders.name}" AND (name:a1 OR name:a2)'}
    )
    assert sorted(b.name.rsplit("/", 1)[1] for b in filtered) == ["a1", "a2"]
    negated = api.list_backups(request={"parent": everything, "filter": "NOT name:backups/a AND state:READY"})
    assert [b.name.rsplit("/", 1)[1] for b in negated] == ["b1"]
    assert len(list(api.list_backups(request={"parent": everything, "filter": "size_bytes > 0"}))) == 3
    assert (
        list(
            api.list_backups(request={"parent": everything, "filter": 'expire_time < "2001-01-01T00:00:00Z"'})
        )
        == []
    )
    pages = list(
        api.list_backups(request={"parent": everything, "page_size": 2, "order_by": "name desc"}).pages
    )
    assert [[b.name.rsplit("/", 1)[1] for b in page.backups] for page in pages] == [["a2", "b1"], ["a1"]]
    # Table.list_backups filters with "source_table:<name>", a "contains" match (as documented).
    assert sorted(b.backup_id for b in other.list_backups()) == ["b1"]
    assert sorted(b.backup_id for b in orders.list_backups(cluster_id="c2")) == ["a2"]
    with pytest.raises(exceptions.InvalidArgument):
        list(api.list_backups(request={"parent": everything, "filter": "colour:red"}))


def test_copy_backup_and_operations(instance, client):
    from google.api_core import exceptions, operations_v1

    table = _make_table(instance)
    before = _snapshot(table)
    table.backup("src", cluster_id=CLUSTER, expire_time=_days(5)).create().result(timeout=30)
    api = client.table_admin_client
    op = api.copy_backup(
        parent=f"{instance.name}/clusters/c2",
        backup_id="copied",
        source_backup=f"{instance.name}/clusters/{CLUSTER}/backups/src",
        expire_time=_days(6),
    )
    copied = op.result(timeout=30)
    assert copied.source_backup.endswith("/backups/src")
    assert copied.source_table == table.name
    client.instance(INSTANCE).table("x").restore("from-copy", backup_name=copied.name).result(timeout=30)
    assert _snapshot(instance.table("from-copy")) == before

    ops = operations_v1.OperationsClient(api.transport.grpc_channel)
    finished = ops.get_operation(op.operation.name)
    assert finished.done and finished.name.startswith(copied.name + "/operations/")
    assert op.operation.name in [o.name for o in ops.list_operations(copied.name, filter_="")]
    with pytest.raises(exceptions.NotFound):
        ops.get_operation(f"{instance.name}/operations/nope")


def test_data_api_passthrough_and_hidden_tables(instance, emulator, monkeypatch):
    from google.api_core import exceptions
    from google.cloud.bigtable import row_filters

    table = _make_table(instance)
    keys = [r.row_key for r in table.sample_row_keys()]
    assert keys and keys[-1] == b""
    row = table.read_row(b"row#007")
    assert row.cells["cf2"][b"other"][0].value == b"7"

    cond = table.conditional_row(b"row#007", filter_=row_filters.ColumnQualifierRegexFilter(b"other"))
    cond.set_cell("cf2", b"flag", b"matched", state=True)
    assert cond.commit() is True
    counter = table.append_row(b"counter")
    counter.increment_cell_value("cf2", b"n", 5)
    counter.commit()
    counter.increment_cell_value("cf2", b"n", 2)
    assert counter.commit()["cf2"][b"n"][0][0] == (7).to_bytes(8, "big")

    table.drop_by_prefix(b"row#00")
    remaining = [r.row_key for r in table.read_rows()]
    assert not any(k.startswith(b"row#00") for k in remaining)
    assert b"row#010" in remaining and b"counter" in remaining

    table.backup("b", cluster_id=CLUSTER, expire_time=_days(1)).create().result(timeout=30)
    hidden_id = f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__b"
    assert {t.table_id for t in instance.list_tables()} == {"orders"}
    assert hidden_id in _emulator_table_ids(emulator, monkeypatch)
    with pytest.raises(exceptions.NotFound):
        instance._client.table_admin_client.get_table(name=f"{instance.name}/tables/{hidden_id}")
    assert not instance.table(hidden_id).exists()
    with pytest.raises(exceptions.NotFound):
        instance.table(hidden_id).delete()
    assert hidden_id in _emulator_table_ids(emulator, monkeypatch)  # the backup's data survived
    # Errors from the emulator come back unchanged.
    with pytest.raises(exceptions.AlreadyExists):
        instance.table("orders").create()
    with pytest.raises(exceptions.NotFound):
        list(instance.table("nope").read_rows())


def test_metadata_persists_across_restart(emulator, tmp_path, monkeypatch):
    state = tmp_path / "state"
    with BigtableBackupServer(upstream=emulator, state_dir=state) as first:
        instance = _client(monkeypatch, first.address).instance(INSTANCE)
        table = _make_table(instance)
        before = _snapshot(table)
        table.backup("keep", cluster_id=CLUSTER, expire_time=_days(4)).create().result(timeout=30)
    saved = json.loads((state / STATE_FILE).read_text())
    assert list(saved["backups"]) == [f"{instance.name}/clusters/{CLUSTER}/backups/keep"]

    # Same emulator, new server process state: the backup is still there and restorable.
    with BigtableBackupServer(upstream=emulator, state_dir=state) as second:
        instance = _client(monkeypatch, second.address).instance(INSTANCE)
        table = instance.table("orders")
        assert [b.backup_id for b in table.list_backups()] == ["keep"]
        backup = table.backup("keep", cluster_id=CLUSTER)
        backup.reload()
        assert backup.source_table == table.name
        table.truncate()
        backup.restore("orders-again").result(timeout=30)
        assert _snapshot(instance.table("orders-again")) == before

    # Without a state dir nothing is remembered.
    with BigtableBackupServer(upstream=emulator) as third:
        instance = _client(monkeypatch, third.address).instance(INSTANCE)
        assert instance.table("orders").list_backups() == []


def test_lost_backup_data_is_dropped(emulator, tmp_path, monkeypatch):
    """A backup whose data table vanished (emulator restarted) disappears instead of failing restores."""
    state = tmp_path / "state"
    with BigtableBackupServer(upstream=emulator, state_dir=state) as srv:
        instance = _client(monkeypatch, srv.address).instance(INSTANCE)
        table = _make_table(instance)
        backup = table.backup("lost", cluster_id=CLUSTER, expire_time=_days(4))
        backup.create().result(timeout=30)
        direct = _client(monkeypatch, emulator).instance(INSTANCE)
        direct.table(f"{HIDDEN_TABLE_PREFIX}{CLUSTER}__lost").delete()
        assert not backup.exists()
        assert table.list_backups() == []


def test_subprocess_form(emulator, tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runbook.sandbox.bigtable_backup",
            "--upstream",
            emulator,
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening 127.0.0.1:"), (
            line,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        address = line.split()[1]
        instance = _client(monkeypatch, address).instance(INSTANCE)
        table = _make_table(instance)
        table.backup("proc", cluster_id=CLUSTER, expire_time=_days(1)).create().result(timeout=30)
        assert [b.backup_id for b in table.list_backups()] == ["proc"]
        assert (tmp_path / "state" / STATE_FILE).exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_module_import_is_cheap():
    code = (
        "import sys, runbook.sandbox.bigtable_backup; "
        "print(sorted(m for m in ('grpc', 'google.cloud.bigtable_admin_v2', 'google.protobuf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_requires_upstream():
    out = subprocess.run(
        [sys.executable, "-m", "runbook.sandbox.bigtable_backup"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 2 and "--upstream" in out.stderr


def test_start_twice_and_port_in_use(emulator):
    with BigtableBackupServer(upstream=emulator) as srv:
        with pytest.raises(RuntimeError):
            srv.start()
        with pytest.raises(OSError):
            BigtableBackupServer(upstream=emulator, port=srv.port).start()
