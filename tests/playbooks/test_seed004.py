"""Seed 004 playbooks run for real through the `runbook` command against a private sandbox.

(a) point-in-time recovery keeps what was committed before the target and drops what came after;
(b) a dump that fails its checksum stops db-restore-full before anything destructive;
(c) a run killed during pg_restore reports the interrupted step and, retried by choice, ends right;
(d) hostile inputs are refused or quoted, and a DSN password never reaches the journal or logs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runbook.journal.store import Journal
from tests.conftest import cli_env, runbook, supervisor_of, supervisors

pytestmark = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("rsync") is None, reason="needs PostgreSQL and rsync"
)


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def rb_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RUNBOOK_HOME outside pytest's base temp directory.

    The sandbox's PostgreSQL runs as `postgres` and needs every ancestor of its data directory
    traversable; any pytest session starting meanwhile (another suite, another developer) resets
    /tmp/pytest-of-<user> to 0700 and the server PANICs. A short path also keeps the temporary
    PITR server's socket path under 107 bytes.
    """
    base = Path(tempfile.mkdtemp(prefix="rb004-", dir="/tmp"))
    home = base / "home"
    home.mkdir()
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    monkeypatch.setenv("RUNBOOK_CONFIG_DIR", str(base / "config"))
    monkeypatch.delenv("RUNBOOK_PLAYBOOKS", raising=False)
    monkeypatch.delenv("RUNBOOK_SANDBOX_DIR", raising=False)
    monkeypatch.chdir(base)
    try:
        yield home
    finally:
        for sup in supervisors(home):  # an incident left running detached
            sup.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sandbox(rb_home: Path) -> Iterator[dict[str, Any]]:
    """The private sandbox (PostgreSQL + storage) of this test's RUNBOOK_HOME; stopped at the end."""
    r = runbook(rb_home, "sandbox", "up", "--only", "postgres,storage", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    from runbook.sandbox.manager import Sandbox

    try:
        yield Sandbox().stores()
    finally:
        down = runbook(rb_home, "sandbox", "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


def connect(stores: dict[str, Any], database: str = "varlor", **kw: Any) -> Any:
    import psycopg

    pg = stores["postgres"]
    return psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname=database, autocommit=True, **kw)


def scalar(stores: dict[str, Any], query: str, *args: Any) -> Any:
    with connect(stores) as conn:
        row = conn.execute(query, args).fetchone()
        return row[0] if row else None


def incident_of(result: subprocess.CompletedProcess[str]) -> str:
    first = result.stdout.splitlines()[0] if result.stdout else ""
    assert first.startswith("incident: "), result.stdout + result.stderr
    return first.split()[1]


def started_steps(home: Path, incident: str) -> list[str]:
    return [e.step for e in Journal(home / "journal.sqlite3").events(incident) if e.type == "step_started"]


def run_pb(home: Path, playbook: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return runbook(home, "run", playbook, "--headless", *args, timeout=timeout, **env)


def write_setup_playbook(directory: Path, name: str, steps: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(f"id: {name}\ntitle: test setup\ntier: maintenance\nnot_drillable: test helper\nsteps:\n{steps}")
    return path


# --- (a) point-in-time recovery ------------------------------------------------------------


def test_pitr_keeps_rows_before_the_target_and_drops_rows_after(rb_home: Path, sandbox: dict[str, Any]) -> None:
    setup = write_setup_playbook(rb_home.parent, "pitr-base", "  - id: base\n    run: postgres.base_backup\n")
    r = run_pb(rb_home, str(setup), "--yes")
    assert r.returncode == 0, r.stdout + r.stderr

    with connect(sandbox) as conn:
        conn.execute(
            "INSERT INTO datasets (id, tenant_id, name, file_path, created_at, updated_at) "
            "VALUES (601, 'tenant-abc', 'before.csv', 'tenant-abc/601/data.csv', now(), now())"
        )
    time.sleep(1.2)  # target_time has whole seconds: leave a second between the commits and it
    target = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.2)
    with connect(sandbox) as conn:
        conn.execute(
            "INSERT INTO datasets (id, tenant_id, name, file_path, created_at, updated_at) "
            "VALUES (602, 'tenant-abc', 'after.csv', 'tenant-abc/602/data.csv', now(), now())"
        )
        conn.execute("DELETE FROM datasets WHERE tenant_id = 'tenant-umbrella'")
    assert scalar(sandbox, "SELECT count(*) FROM datasets") == 600 + 2 - 120

    expected_target = target.replace("Z", ".000000Z")
    r = run_pb(
        rb_home,
        "db-pitr",
        "-p",
        f"target_time={target}",
        "--yes",
        "--confirm",
        f"pitr={expected_target}",
        "--confirm",
        "inspect=done",
        "--confirm",
        "replace_live_db=varlor",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    incident = incident_of(r)

    ids = {row for (row,) in connect(sandbox).execute("SELECT id FROM datasets WHERE id > 600").fetchall()}
    assert ids == {601}, "the row committed before the target is back, the one after it is not"
    assert scalar(sandbox, "SELECT count(*) FROM datasets WHERE tenant_id = 'tenant-umbrella'") == 120
    assert scalar(sandbox, "SELECT count(*) FROM datasets") == 601
    events = Journal(rb_home / "journal.sqlite3").events(incident)
    resolved = next(e for e in events if e.type == "step_finished" and e.step == "resolve_target")
    assert resolved.payload["outputs"]["target_time"] == expected_target
    pitr = next(e for e in events if e.type == "step_finished" and e.step == "pitr")
    assert pitr.payload["outputs"]["counts"]["datasets"] == 601
    assert {"target_from_marker"} <= {e.step for e in events if e.type == "step_skipped"}


# --- (b) a dump that fails its checksum ----------------------------------------------------


def test_restore_stops_before_anything_destructive_when_the_dump_is_corrupted(
    rb_home: Path, sandbox: dict[str, Any]
) -> None:
    db_backups = sandbox["files"]["db_backups"]
    r = run_pb(rb_home, "db-backup", "--yes", "--confirm", f"prune_old={db_backups}")
    assert r.returncode == 0, r.stdout + r.stderr
    dump = next(Path(db_backups).glob("varlor_db_*.dump"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only the checksum can tell
    dump.write_bytes(bytes(data))

    r = run_pb(rb_home, "db-restore-full", "--yes", "--confirm", "restore=varlor")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Checksum mismatch" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    incident = incident_of(r)
    assert started_steps(rb_home, incident) == ["find_dump", "verify_dump"]
    events = Journal(rb_home / "journal.sqlite3").events(incident)
    assert not [e for e in events if e.type == "confirmation_given"]
    # The database was never touched: rows there, the application still allowed in.
    assert scalar(sandbox, "SELECT count(*) FROM datasets") == 600
    assert scalar(sandbox, "SELECT count(*) FROM dataset_columns") > 0
    assert scalar(sandbox, "SELECT has_database_privilege('public', 'varlor', 'CONNECT')") is True


# --- (c) killed during pg_restore, then resumed ---------------------------------------------

BIG_ROWS = 1_500_000


def _big_dump(rb_home: Path, sandbox: dict[str, Any]) -> Path:
    """A database with a 1.5M-row table (pg_restore takes seconds) and its dump; the temp dir."""
    with connect(sandbox) as conn:
        conn.execute(
            f"CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
            f"FROM generate_series(1, {BIG_ROWS}) g"
        )
        conn.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    tmp_path = rb_home.parent
    dump = write_setup_playbook(
        tmp_path,
        "big-dump",
        f"  - id: dump\n    run: postgres.dump\n    with:\n"
        f"      directory: {sandbox['files']['db_backups']}\n      compress: 1\n",
    )
    r = run_pb(rb_home, str(dump), "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path


def _restore_loading_big(rb_home: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Journal]:
    """``runbook run db-restore-full`` in a session of its own, returned once pg_restore loads ``big``."""
    out = (tmp_path / "run.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", "db-restore-full", "--headless", "--yes", "--confirm",
         "restore=varlor"],
        env=cli_env(rb_home), stdout=out, stderr=subprocess.STDOUT, cwd=rb_home.parent, start_new_session=True,
    )
    journal = Journal(rb_home / "journal.sqlite3")
    incident = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            text = (tmp_path / "run.out").read_text()
            if incident is None and text.startswith("incident: "):
                incident = text.split()[1]
            if incident:
                started = [e for e in journal.events(incident) if e.type == "step_started" and e.step == "restore"]
                log = Path(started[0].payload["log"]) if started else None
                if log and log.exists() and 'processing data for table "public.big"' in log.read_text(errors="replace"):
                    break
            assert proc.poll() is None, text
            time.sleep(0.05)
        else:
            pytest.fail("pg_restore of the big table never started")
    finally:
        out.close()
    assert incident is not None
    return proc, incident, journal


def test_a_dropped_terminal_during_pg_restore_changes_nothing(rb_home: Path, sandbox: dict[str, Any]) -> None:
    """SIGHUP, SIGTERM or SIGKILL to the client's whole session while pg_restore loads: the restore
    completes in the supervisor, the journal says done, `attach` shows the end, the data verifies."""
    import random

    tmp_path = _big_dump(rb_home, sandbox)
    rng = random.Random(4)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGKILL):
        proc, incident, journal = _restore_loading_big(rb_home, tmp_path)
        time.sleep(rng.uniform(0.0, 0.5))
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
        r = runbook(rb_home, "attach", incident, "--headless", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "✓ restore" in r.stdout and "incident completed" in r.stdout
        assert started_steps(rb_home, incident).count("restore") == 1
        assert [e.step for e in journal.events(incident) if e.type == "step_finished"].count("restore") == 1
        assert scalar(sandbox, "SELECT count(*) FROM big") == BIG_ROWS
        assert scalar(sandbox, "SELECT count(*) FROM datasets") == 600
        assert journal.verify(incident)[1] is None
        journal.close()


def test_kill_during_pg_restore_then_retry_after_the_operators_choice(rb_home: Path, sandbox: dict[str, Any]) -> None:
    tmp_path = _big_dump(rb_home, sandbox)
    proc, incident, journal = _restore_loading_big(rb_home, tmp_path)
    supervisor = supervisor_of(proc.pid)
    time.sleep(0.05)  # pg_restore is loading `big` now (the log line is flushed within 0.25 s)
    assert proc.poll() is None, "the restore finished before the kill: make the table bigger"
    supervisor.kill()  # the engine's process: its reaper takes pg_restore with it
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not [e for e in journal.events(incident) if e.type == "step_finished" and e.step == "restore"]

    # Resumed without a decision: exit 3, naming the interrupted step; nothing is re-run.
    r = runbook(rb_home, "resume", incident, "--headless", "--yes", "--confirm", "restore=varlor", timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "'restore'" in r.stderr and "interrupted" in r.stderr, r.stderr
    assert started_steps(rb_home, incident).count("restore") == 1

    # The operator chooses to retry it.
    r = runbook(
        rb_home,
        "resume",
        incident,
        "--headless",
        "--yes",
        "--confirm",
        "restore=varlor",
        "--retry-interrupted",
        "--reason",
        "killed during pg_restore",
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    steps = started_steps(rb_home, incident)
    assert steps.count("restore") == 2 and steps.count("find_dump") == 1
    assert scalar(sandbox, "SELECT count(*) FROM datasets") == 600
    assert scalar(sandbox, "SELECT count(*) FROM big") == BIG_ROWS
    assert scalar(sandbox, "SELECT has_database_privilege('public', 'varlor', 'CONNECT')") is True
    assert journal.verify(incident)[1] is None


# --- (d) hostile inputs and secrets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("playbook", "params", "named"),
    [
        ("storage-restore-tenant", ["tenant=../../etc"], "tenant"),
        ("dr-accidental-deletion", ["tenant=../../etc"], "tenant"),
        ("storage-restore-dataset", ["tenant=tenant-abc", "dataset=/"], "dataset"),
        ("storage-restore-dataset", ["tenant=tenant-abc", "dataset=../tenant-acme"], "dataset"),
        ("storage-restore-full", ["snapshot=../../etc"], "snapshot"),
        ("db-restore-full", ["dump=../../etc/passwd"], "dump"),
        ("storage-restore-full", ["owner=root;rm -rf /"], "owner"),
    ],
)
def test_path_like_inputs_are_refused_before_anything_runs(
    rb_home: Path, playbook: str, params: list[str], named: str
) -> None:
    args = [a for p in params for a in ("-p", p)]
    r = run_pb(rb_home, playbook, *args, "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"'{named}'" in r.stderr and "Traceback" not in r.stderr
    assert not r.stdout.startswith("incident: ")


def test_database_names_with_quotes_and_spaces_are_quoted(rb_home: Path, sandbox: dict[str, Any]) -> None:
    from psycopg import sql

    weird = "we\"ird 'db' name"
    with connect(sandbox, "postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(weird)))
    with connect(sandbox, weird) as conn:
        conn.execute("CREATE TABLE marker (id int)")
        conn.execute("INSERT INTO marker SELECT generate_series(1, 7)")
    db_backups = sandbox["files"]["db_backups"]
    r = run_pb(rb_home, "db-backup", "-p", f"database={weird}", "--yes", "--confirm", f"prune_old={db_backups}")
    assert r.returncode == 0, r.stdout + r.stderr
    dump = next(Path(db_backups).glob("varlor_db_*.dump"))
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert "TABLE public marker" in listing and "datasets" not in listing

    # An injection attempt is just a (missing) database name: refused, nothing dropped.
    hostile = 'varlor"; DROP DATABASE varlor; --'
    r = run_pb(
        rb_home,
        "db-restore-tables",
        "-p",
        f"database={hostile}",
        "-p",
        f"dump={dump.name}",
        "--yes",
        "--confirm",
        f"restore_tables={hostile}",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "restore_tables" not in started_steps(rb_home, incident_of(r))
    assert scalar(sandbox, "SELECT count(*) FROM datasets") == 600
    assert scalar(sandbox, "SELECT count(*) FROM pg_database WHERE datname = %s", weird) == 1


PASSWORD = "Pw-7f3a!s3cr3t 'q\"x"


def test_dsn_password_never_reaches_journal_logs_or_exports(rb_home: Path, sandbox: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    pg = sandbox["postgres"]
    hba = Path(pg["data_dir"]) / "pg_hba.conf"
    with connect(sandbox, "postgres") as conn:
        conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(PASSWORD)))
        hba.write_text(
            hba.read_text().replace(
                "host    all             all             127.0.0.1/32            trust",
                "host    all             all             127.0.0.1/32            scram-sha-256",
            )
        )
        conn.execute("SELECT pg_reload_conf()")
    with pytest.raises(psycopg.OperationalError):
        connect(sandbox, "varlor").close()  # password authentication is really on
    connect(sandbox, "varlor", password=PASSWORD).close()

    stores = {k: v for k, v in pg.items() if k != "run_as"}
    lines = [
        "[environments.pwtest]",
        'description = "sandbox cluster with a password"',
        "[environments.pwtest.postgres]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in stores.items()]
    lines += ['password_env = "RB_TEST_PGPW"', "[environments.pwtest.storage]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in sandbox["storage"].items()]
    lines += ["[environments.pwtest.files]"] + [f"{k} = {json.dumps(v)}" for k, v in sandbox["files"].items()]
    (rb_home.parent / "runbook.toml").write_text("\n".join(lines) + "\n")

    db_backups = sandbox["files"]["db_backups"]
    ok = run_pb(
        rb_home, "db-backup", "--env", "pwtest", "--yes", "--confirm", f"prune_old={db_backups}", RB_TEST_PGPW=PASSWORD
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    test = run_pb(
        rb_home,
        "db-test-restore-staging",
        "--env",
        "pwtest",
        "--yes",
        "--confirm",
        "restore_staging=varlor_staging",
        RB_TEST_PGPW=PASSWORD,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    wrong = run_pb(rb_home, "db-backup", "--env", "pwtest", "-p", "database=missing db", "--yes", RB_TEST_PGPW=PASSWORD)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    unset = run_pb(rb_home, "db-backup", "--env", "pwtest", "--yes")
    assert unset.returncode == 1 and "RB_TEST_PGPW" in unset.stdout + unset.stderr

    texts = [ok.stdout, ok.stderr, test.stdout, test.stderr, wrong.stdout, wrong.stderr]
    for r in (ok, test, wrong):
        incident = incident_of(r)
        for fmt in ("json", "md", "html"):
            exported = runbook(rb_home, "export", incident, "--format", fmt)
            assert exported.returncode == 0, exported.stderr
            texts.append(exported.stdout)
    for text in texts:
        assert PASSWORD not in text
    secret = PASSWORD.encode()
    for path in rb_home.rglob("*"):
        if path.is_file() and "sandbox" not in path.relative_to(rb_home).parts:
            assert secret not in path.read_bytes(), f"the password is in {path}"
