"""The sandbox's process managers, against real servers: PostgreSQL, Pub/Sub, Bigtable, bqemulator.

Each test starts real processes in its tmp dir, talks to them with the real client library,
and checks that ``stop()`` leaves no process behind. Start-up times are printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from runbook.core.procs import group_members, pid_alive, start_time
from runbook.sandbox.emulators import (
    BIGTABLE_BIN,
    PUBSUB_BIN,
    BigQueryEmulator,
    BigtableEmulator,
    PubSubEmulator,
)
from runbook.sandbox.errors import SandboxError
from runbook.sandbox.ports import http_probe, port_accepts
from runbook.sandbox.postgres import (
    PostgresCluster,
    grant_to_postgres,
    pg_ping,
    run_as_postgres_argv,
    server_bin,
)
from runbook.sandbox.procs import ManagedProcess, start_all


def _have_postgres() -> bool:
    try:
        server_bin("initdb")
    except SandboxError:
        return False
    return True


needs_postgres = pytest.mark.skipif(not _have_postgres(), reason="PostgreSQL server binaries not installed")
needs_pubsub = pytest.mark.skipif(not PUBSUB_BIN.exists(), reason="Cloud SDK Pub/Sub emulator not installed")
needs_bigtable = pytest.mark.skipif(
    not BIGTABLE_BIN.exists(), reason="Cloud SDK Bigtable emulator not installed"
)


def report(capsys: pytest.CaptureFixture[str], what: str, seconds: float) -> None:
    with capsys.disabled():
        print(f"\n  start-up: {what}: {seconds:.2f} s", end="")


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def cmdlines_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (to prove nothing was left behind)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if text in cmd and pid_alive(proc.pid):
            found.append(f"{proc.pid}: {cmd}")
    return found


def assert_gone(server: ManagedProcess, pid: int, port: int) -> None:
    assert not pid_alive(pid), f"{server.name} pid {pid} still alive"
    assert group_members(pid) == [], f"{server.name} left processes in its group"
    assert not port_accepts(port), f"{server.name} port {port} still accepts connections"
    assert not server.pid_path.exists() and not server.port_path.exists()
    assert not server.is_healthy()


# -- ManagedProcess, with a tiny HTTP server -------------------------------------------------


def http_server(directory: Path, port: int | None = None) -> ManagedProcess:
    # The sleep child checks that stop() reaches everything the server spawned.
    code = (
        "import subprocess, sys, http.server;"
        "subprocess.Popen(['sleep', '300']);"
        "http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind='127.0.0.1')"
    )
    return ManagedProcess(
        "web", directory, lambda p: [sys.executable, "-c", code, str(p)], port=port, probe=http_probe("/")
    )


def test_managed_process_start_health_kill_restart_stop(tmp_path: Path) -> None:
    server = http_server(tmp_path / "web")
    try:
        assert not server.is_healthy()
        assert server.ensure_running(timeout=10) is True
        assert server.ensure_running(timeout=10) is False  # idempotent when healthy
        pid, port = server.pid, server.port
        assert pid is not None and server.is_healthy()
        assert server.port_path.read_text().strip() == str(port)
        assert len(group_members(pid)) == 2  # python + its sleep child

        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not server.is_healthy(), 5), "health check missed the killed server"
        assert server.ensure_running(timeout=10) is True
        new_pid = server.pid
        assert new_pid is not None and new_pid != pid and server.is_healthy()
        assert server.port == port  # clients keep their endpoint across a restart
        assert group_members(pid) == [], "the dead server's child was not cleaned up on restart"

        # Another manager (a later CLI command) sees the running server through its files.
        other = http_server(tmp_path / "web")
        assert other.is_healthy() and other.pid == new_pid and other.port == port
        other.stop()
        assert_gone(other, new_pid, port)
        assert not server.is_healthy()
    finally:
        server.stop()


def test_health_treats_zombie_as_dead(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: a zombie, which kill -0 would still report as alive.
        assert wait_for(lambda: not pid_alive(child.pid), 5)
        os.kill(child.pid, 0)
    finally:
        child.kill()
        child.wait()


def test_pid_file_start_time_new_kind_is_checked_old_kind_accepted(tmp_path: Path) -> None:
    server = ManagedProcess(
        "sleeper", tmp_path, lambda p: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    server.start()
    try:
        pid, recorded = server.pid_path.read_text().split()
        assert server.pid == int(pid)
        assert abs(float(recorded) - (start_time(int(pid)) or 0)) < 0.01  # psutil's create_time
        server.pid_path.write_text(f"{pid}\n123456\n")  # an older version's clock ticks since boot
        assert server.pid == int(pid), "an old pid file must still find its server"
        server.pid_path.write_text(f"{pid}\n{float(recorded) - 3600!r}\n")  # the pid was reused
        assert server.pid is None
    finally:
        server.pid_path.write_text(f"{pid}\n{recorded}\n")
        server.stop(grace=1)
    assert not pid_alive(int(pid))


def test_wait_ready_reports_exit_with_log_tail(tmp_path: Path) -> None:
    server = ManagedProcess(
        "broken",
        tmp_path,
        lambda p: [sys.executable, "-c", "print('boom-marker', flush=True); raise SystemExit(3)"],
    )
    server.start()
    with pytest.raises(SandboxError, match=r"(?s)broken exited before it was ready.*boom-marker"):
        server.wait_ready(timeout=10)
    server.stop()
    assert not server.pid_path.exists()


def test_wait_ready_times_out(tmp_path: Path) -> None:
    server = ManagedProcess("mute", tmp_path, lambda p: [sys.executable, "-c", "import time; time.sleep(60)"])
    server.start()
    pid = server.pid
    try:
        with pytest.raises(SandboxError, match="was not ready after"):
            server.wait_ready(timeout=0.3)
    finally:
        server.stop(grace=1)
    assert pid is not None and not pid_alive(pid)


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def cluster():
    # Not tmp_path: every new pytest session (others may run concurrently) resets
    # /tmp/pytest-of-root to 0700, which locks the postgres user out mid-test.
    base = Path(tempfile.mkdtemp(prefix="runbook-pg-test-"))
    pg = PostgresCluster(base / "pg")
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert pg.server_processes() == []


@needs_postgres
def test_postgres_init_start_query_create_database_stop(cluster: PostgresCluster, capsys) -> None:
    import psycopg

    t0 = time.monotonic()
    assert cluster.init() is True
    t_init = time.monotonic() - t0
    assert cluster.init() is False  # idempotent
    t1 = time.monotonic()
    cluster.start()
    cluster.wait_ready(timeout=30)
    report(capsys, "postgres initdb", t_init)
    report(capsys, "postgres start", time.monotonic() - t1)
    assert cluster.is_running()
    assert cluster.ensure_running() is False

    with psycopg.connect(cluster.dsn()) as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    dsn = cluster.create_database("incident db")  # a name that needs quoting
    assert cluster.create_database("incident db") == dsn  # idempotent
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("incident db",)

    postmaster = cluster.postmaster_pid()
    assert postmaster is not None and len(cluster.server_processes()) >= 3
    cluster.stop()
    assert cluster.server_processes() == []
    assert not pid_alive(postmaster)
    assert cmdlines_mentioning(str(cluster.data_dir)) == []
    assert not pg_ping(cluster.host, cluster.port)
    assert not (cluster.data_dir / "postmaster.pid").exists()
    cluster.stop()  # stopping a stopped cluster is fine


@needs_postgres
def test_postgres_ensure_running_after_sigkill(cluster: PostgresCluster, capsys) -> None:
    import psycopg

    assert cluster.ensure_running(timeout=30) is True
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    postmaster = cluster.postmaster_pid()
    assert postmaster is not None
    os.kill(postmaster, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(postmaster), 5)
    assert not cluster.is_running()
    assert (cluster.data_dir / "postmaster.pid").exists()  # stale lock left by the crash

    t0 = time.monotonic()
    assert cluster.ensure_running(timeout=30) is True
    report(capsys, "postgres restart after SIGKILL (crash recovery)", time.monotonic() - t0)
    assert cluster.postmaster_pid() != postmaster
    with psycopg.connect(cluster.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


@needs_postgres
def test_postgres_wal_archiving(cluster: PostgresCluster) -> None:
    import psycopg

    cluster.init(wal_archiving=True, archive_timeout=5)
    cluster.start()
    cluster.wait_ready()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        assert conn.execute("SHOW archive_mode").fetchone() == ("on",)
        assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    archived = cluster.archive_dir / segment
    assert wait_for(archived.exists, 15), f"{segment} not archived: {sorted(os.listdir(cluster.archive_dir))}"
    assert archived.stat().st_size == 1024 * 1024  # 1 MB segments when archiving
    assert cluster.restore_command().startswith("cp ")

    # The base backup a PITR restore starts from, taken as the postgres user when root.
    backups = cluster.base_dir / "backups"
    backups.mkdir()
    grant_to_postgres(backups)
    target = backups / "base"
    argv = [cluster.bin("pg_basebackup"), "-D", str(target), "-h", cluster.host, "-p", str(cluster.port)]
    subprocess.run(
        run_as_postgres_argv([*argv, "-U", "postgres", "-X", "none", "-c", "fast"]),
        check=True,
        timeout=60,
        cwd=backups,
    )
    assert (target / "backup_label").exists() and (target / "PG_VERSION").exists()


def test_run_as_postgres_argv() -> None:
    argv = run_as_postgres_argv(["pg_basebackup", "-D", "/x"])
    if os.geteuid() == 0:
        assert argv[-4:] == ["--", "pg_basebackup", "-D", "/x"] and argv[1:3] == ["-u", "postgres"]
    else:
        assert argv == ["pg_basebackup", "-D", "/x"]


# -- Google emulators ------------------------------------------------------------------------


@needs_pubsub
def test_pubsub_emulator_publish(tmp_path: Path, monkeypatch, capsys) -> None:
    emulator = PubSubEmulator(tmp_path / "pubsub", project="sandbox-proj")
    try:
        t0 = time.monotonic()
        emulator.start()
        emulator.wait_ready()
        report(capsys, "pubsub emulator", time.monotonic() - t0)
        pid, port = emulator.pid, emulator.port
        assert pid is not None
        for key, value in emulator.env().items():
            monkeypatch.setenv(key, value)
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path("sandbox-proj", "alerts")
        sub = subscriber.subscription_path("sandbox-proj", "alerts-sub")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=sub, topic=topic)
        message_id = publisher.publish(topic, b"disk full", sev="high").result(timeout=10)
        assert message_id
        pulled = subscriber.pull(subscription=sub, max_messages=1, timeout=10)
        assert [m.message.data for m in pulled.received_messages] == [b"disk full"]
        subscriber.close()
        publisher.stop()
    finally:
        emulator.stop()
    assert_gone(emulator, pid, port)
    assert cmdlines_mentioning(f"--port={port}") == []


@needs_bigtable
@pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator")
def test_bigtable_emulator_write_read_and_restart_after_kill(tmp_path: Path, monkeypatch, capsys) -> None:
    emulator = BigtableEmulator(tmp_path / "bigtable")
    try:
        t0 = time.monotonic()
        emulator.start()
        emulator.wait_ready()
        report(capsys, "bigtable emulator", time.monotonic() - t0)
        monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", emulator.env()["BIGTABLE_EMULATOR_HOST"])
        from google.cloud import bigtable
        from google.cloud.bigtable import column_family

        client = bigtable.Client(project="sandbox-proj", admin=True)
        table = client.instance("inst").table("events")
        table.create(column_families={"cf": column_family.MaxVersionsGCRule(1)})
        row = table.direct_row(b"k1")
        row.set_cell("cf", b"msg", b"hello")
        row.commit()
        assert table.read_row(b"k1").cells["cf"][b"msg"][0].value == b"hello"

        # Crash it: health notices, ensure_running brings it back on the same endpoint.
        pid, port = emulator.pid, emulator.port
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not emulator.is_healthy(), 5)
        assert emulator.ensure_running() is True
        assert emulator.port == port and emulator.pid not in (None, pid)
        table.create(column_families={"cf": column_family.MaxVersionsGCRule(1)})  # in memory: gone
        assert table.read_row(b"k1") is None
        pid = emulator.pid
    finally:
        emulator.stop()
    assert_gone(emulator, pid, port)


@pytest.mark.timeout(120)  # a client aimed at a dead endpoint retries for minutes
def test_bigquery_emulator_offline_rows_persist_across_restart_and_crash(tmp_path: Path, capsys) -> None:
    base = tmp_path / "bigquery"
    emulator = BigQueryEmulator(base, project="sandbox-proj")
    pids: list[int] = []
    try:
        assert not emulator.extensions_marker.exists()
        t0 = time.monotonic()
        emulator.start()
        emulator.wait_ready()
        report(capsys, "bqemulator (first start, installs extensions)", time.monotonic() - t0)
        assert emulator.extensions_marker.exists()
        assert list((base / "home" / ".duckdb" / "extensions").rglob("spatial.duckdb_extension"))
        pids.append(emulator.pid)

        from google.cloud import bigquery

        client = bigquery.Client(**emulator.client_kwargs())
        client.create_dataset("ops")
        client.create_table(
            bigquery.Table(
                "sandbox-proj.ops.events",
                schema=[bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("msg", "STRING")],
            )
        )
        assert (
            client.insert_rows_json("sandbox-proj.ops.events", [{"id": i, "msg": f"m{i}"} for i in range(3)])
            == []
        )
        count = "SELECT COUNT(*) AS n FROM `sandbox-proj.ops.events`"
        assert next(iter(client.query(count).result())).n == 3

        endpoint = emulator.endpoint
        emulator.stop()
        assert_gone(emulator, pids[0], emulator.port)
        t1 = time.monotonic()
        emulator.start()
        emulator.wait_ready()
        report(capsys, "bqemulator (restart)", time.monotonic() - t1)
        pids.append(emulator.pid)
        assert emulator.endpoint == endpoint
        assert (base / "data" / "bqemulator.duckdb").exists()
        assert next(iter(client.query(count).result())).n == 3, "rows did not survive a restart"

        # A crash too: DuckDB replays its WAL.
        client.insert_rows_json("sandbox-proj.ops.events", [{"id": 9, "msg": "late"}])
        os.kill(pids[-1], signal.SIGKILL)
        assert wait_for(lambda: not emulator.is_healthy(), 5)
        assert emulator.ensure_running() is True
        pids.append(emulator.pid)
        assert emulator.endpoint == endpoint, "the restarted emulator moved: its clients would lose it"
        assert next(iter(client.query(count).result())).n == 4, "rows did not survive a SIGKILL"
    finally:
        emulator.stop()
    assert_gone(emulator, pids[-1], emulator.port)
    assert not port_accepts(emulator.grpc_port)


@needs_bigtable
def test_server_outlives_the_command_that_started_it(tmp_path: Path) -> None:
    # Like `runbook sandbox up`: a separate process starts the server and exits.
    code = (
        "import sys; from runbook.sandbox.emulators import BigtableEmulator; "
        "BigtableEmulator(sys.argv[1]).ensure_running()"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "bt")], check=True, timeout=30)
    later = BigtableEmulator(tmp_path / "bt")  # a later command
    try:
        assert later.is_healthy(), "the server died with the command that started it"
        pid, port = later.pid, later.port
        assert pid is not None and os.getsid(pid) == pid  # its own session
    finally:
        later.stop()
    assert_gone(later, pid, port)


@needs_pubsub
@needs_bigtable
def test_start_all_in_parallel(tmp_path: Path, capsys) -> None:
    servers = [BigtableEmulator(tmp_path / "bt"), PubSubEmulator(tmp_path / "ps")]
    try:
        took = start_all(servers)
        report(capsys, "bigtable + pubsub together", max(took.values()))
        assert set(took) == {"bigtable", "pubsub"} and all(s.is_healthy() for s in servers)
        assert start_all(servers) == {}  # nothing to do when healthy
    finally:
        for server in servers:
            server.stop()
    assert not any(s.is_alive() for s in servers)
