"""Seed 000 (the e-commerce streaming pipeline on Google Cloud): the playbooks' promises, for real.

* the data-loss playbook's Pub/Sub replay re-delivers exactly the lost window, nothing else;
* the Level 2 failover leaves the secondary region serving the same data the primary had;
* an emulator stopped in the middle of a step gives one clear sentence, and once it is back the
  step is retried successfully (a new run after a failure; ``resume --retry-interrupted`` after
  a crash);
* store client libraries are imported only by the steps that need them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from runbook.core import incident as S
from runbook.drills.drill import run_drill
from runbook.journal.store import Journal
from runbook.playbook.validate import load
from tests.conftest import REPO, cli_env, kill_run, runbook, write_playbook

PLAYBOOKS = REPO / "playbooks"
SEED000 = (
    "bq-daily-backup", "bq-snapshot-before-change", "bigtable-backup", "config-backup", "pipeline-state-backup",
    "level1-component-failure", "level2-regional-outage", "level3-system-loss", "bq-restore", "bigtable-restore",
    "pipeline-state-recovery", "backup-monitoring", "backup-cleanup", "backup-validation", "recovery-testing-drill",
    "data-loss-incident", "security-incident",
)  # fmt: skip
HEAVY = ("google.cloud", "google.api_core", "grpc", "psycopg", "slack_sdk", "textual", "duckdb")


def outputs_of(journal: Journal, incident: str) -> dict[str, dict[str, Any]]:
    return S.fold(incident, journal.events(incident)).outputs()


# --- the playbooks themselves --------------------------------------------------------------------


@pytest.mark.parametrize("pid", SEED000)
def test_seed000_playbook_is_valid_and_complete(pid: str) -> None:
    loaded = load(PLAYBOOKS / f"{pid}.yaml")
    assert loaded.diagnostics == [], loaded.diagnostics
    pb = loaded.playbook
    assert pb is not None and pb.id == pid
    assert pb.rto is not None and pb.rpo is not None and pb.description
    assert pb.scenario is not None
    for step in pb.steps:
        assert step.title and "{{" not in step.title, f"{pid}.{step.id}: titles are shown as written"
        assert step.phase, f"{pid}.{step.id} has no phase"
    if pb.tier.value == "maintenance":
        assert not pb.scenario.break_, f"{pid}: a backup-type playbook destroys nothing"


def test_levels_and_targets_follow_the_seed() -> None:
    got = {pid: load(PLAYBOOKS / f"{pid}.yaml").playbook for pid in SEED000}
    assert (got["level1-component-failure"].level, got["level1-component-failure"].rto_seconds) == (1, 900)
    assert (got["level2-regional-outage"].level, got["level2-regional-outage"].rto_seconds) == (2, 3600)
    assert (got["level3-system-loss"].level, got["level3-system-loss"].rto_seconds) == (3, 14400)
    # Critical data (events, pipeline state, configuration): RPO < 15 minutes.
    for pid in ("config-backup", "pipeline-state-backup", "pipeline-state-recovery", "data-loss-incident"):
        assert got[pid].rpo_seconds == 900, pid
    # Important data (BigQuery aggregates): RTO < 4 h, RPO < 1 h.
    for pid in ("bq-daily-backup", "bq-restore", "bq-snapshot-before-change"):
        assert (got[pid].rto_seconds, got[pid].rpo_seconds) == (14400, 3600), pid


def test_backup_cleanup_keeps_bigquery_backups_at_least_a_week() -> None:
    from runbook.playbook.params import ParamError, bind

    pb = load(PLAYBOOKS / "backup-cleanup.yaml").playbook
    assert pb is not None
    spec = {"bigquery_age": pb.params["bigquery_age"]}
    assert bind(spec, {}) == {"bigquery_age": "90d"}
    assert bind(spec, {"bigquery_age": "2w"}) == {"bigquery_age": "2w"}
    for too_short in ("6d", "1d", "12h", "0w"):
        with pytest.raises(ParamError, match="bigquery_age"):
            bind(spec, {"bigquery_age": too_short})


# --- Pub/Sub replay: exactly the lost window -----------------------------------------------------


def test_data_loss_replay_redelivers_exactly_the_lost_window(rb_home: Path) -> None:
    journal = Journal(rb_home / "journal.sqlite3")
    report = run_drill(journal, load(PLAYBOOKS / "data-loss-incident.yaml"), home=rb_home, echo=lambda _m: None)
    assert report.passed, report.problems

    lost = [f"LOST-{i:06d}" for i in range(250)]
    # The window the faulty job swallowed (acked without writing) in the scenario…
    swallowed = outputs_of(journal, report.scenario_incident)["swallowed"]
    assert swallowed["event_ids"] == lost
    # …is what the playbook's seek delivered again: every one of them, once, and nothing older
    # (the 1,000 events processed before the snapshot do not come back).
    replayed = outputs_of(journal, report.verify_incident)["replayed"]
    assert replayed["event_ids"] == lost
    assert replayed["count"] == 250 and replayed["duplicates"] == 0
    assert not [e for e in replayed["event_ids"] if not e.startswith("LOST-")]

    run = outputs_of(journal, report.incident)
    assert run["replay"]["to"].endswith(run["pick_snapshot"]["snapshot"])
    assert run["running"]["state"] == "RUNNING"


# --- Level 2: the secondary region serves what the primary had ------------------------------------


def test_level2_failover_secondary_serves_the_primary_row_counts(rb_home: Path) -> None:
    from runbook.sandbox import fingerprint
    from runbook.sandbox.manager import Sandbox
    from runbook.sandbox.seed_gcp import PRODUCTS, bigquery_rows

    journal = Journal(rb_home / "journal.sqlite3")
    report = run_drill(
        journal, load(PLAYBOOKS / "level2-regional-outage.yaml"), home=rb_home, keep=True, echo=lambda _m: None
    )
    box = Sandbox(Path(report.sandbox_dir))
    try:
        assert report.passed, report.problems
        stores = box.stores()
        gcp = stores["gcp"]

        def with_gcp(**changes: str) -> dict[str, Any]:
            return {**stores, "gcp": {**gcp, **changes}}

        # BigQuery: the primary tables were dropped; the failover dataset in the secondary region
        # has every seeded row, identical to the cross-region copy taken before the outage.
        seeded = {table: len(rows) for table, rows in bigquery_rows().items()}
        primary = fingerprint.bigquery(stores)
        assert primary == {}, "the scenario dropped the primary tables"
        failover = fingerprint.bigquery(with_gcp(dataset="ecommerce_failover"))
        replica = fingerprint.bigquery(with_gcp(dataset="ecommerce_replica"))
        assert {t: fp["rows"] for t, fp in failover.items()} == seeded
        assert failover == replica

        # Bigtable: the secondary instance serves the primary's rows, cell for cell.
        bt_primary = fingerprint.bigtable(stores)
        bt_secondary = fingerprint.bigtable(with_gcp(bigtable_host_us_central1=gcp["bigtable_host_europe_west1"]))
        assert bt_secondary["product_stats"]["rows"] == PRODUCTS
        assert bt_secondary == bt_primary

        # The pipeline runs in the secondary region, writing to the failover dataset.
        run = outputs_of(journal, report.incident)
        assert run["launch_secondary"]["region"] == "europe-west1"
        assert run["secondary_running"]["state"] == "RUNNING"
        assert run["import_bigtable"]["rows"] == PRODUCTS
    finally:
        box.down()


# --- an emulator stopped mid-step ----------------------------------------------------------------

DRAIN_PLAYBOOK = """
id: drain-events
title: Drain the pipeline subscription
tier: maintenance
not_drillable: test playbook
steps:
  - id: drain
    title: Pull and acknowledge every event
    run: pubsub.drain_count
    with:
      idle_seconds: 6
    timeout: 60s
"""


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        env=cli_env(home, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> list[str]:
    """Read the run's output until a line contains ``needle`` (the step is then mid-way)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"never saw {needle!r}: {''.join(lines)}"
    return lines


def test_emulator_stopped_mid_step_fails_clearly_and_a_retry_succeeds(rb_home: Path, tmp_path: Path) -> None:
    from runbook.sandbox.manager import Sandbox

    pb = write_playbook(tmp_path / "pbs", DRAIN_PLAYBOOK)
    up = runbook(rb_home, "sandbox", "up", "--only", "pubsub", timeout=180)
    assert up.returncode == 0, up.stderr
    box = Sandbox(rb_home / "sandbox")
    try:
        # 1. The emulator dies while the step is pulling: one clear sentence, exit 1, no traceback.
        proc = _start(rb_home, "run", str(pb), "--headless", "--yes")
        lines = _wait_for_line(proc, "1,000 messages pulled")
        incident = lines[0].split()[-1]
        box.pubsub().stop()
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 1, (out, err)
        assert "Traceback" not in out + err
        assert "Pub/Sub" in err and "drain" in err, err
        j = Journal(rb_home / "journal.sqlite3")
        try:
            st = S.fold(incident, j.events(incident))
        finally:
            j.close()
        assert st.status == "failed" and st.steps["drain"].status == S.StepStatus.FAILED
        assert "Pub/Sub" in (st.steps["drain"].error or "")

        # 2. Once it is back (restarted and re-seeded with its 1,000 events), the step succeeds.
        up = runbook(rb_home, "sandbox", "up", "--only", "pubsub", timeout=180)
        assert up.returncode == 0, up.stderr
        again = runbook(rb_home, "run", str(pb), "--headless", "--yes", timeout=120)
        assert again.returncode == 0, again.stderr
        assert "1,000 distinct events" in again.stdout

        # 3. The same with the runbook process dying too: the step is interrupted, never re-run by
        #    itself; `resume --retry-interrupted` re-runs it once the emulator is back.
        runbook(rb_home, "sandbox", "down", timeout=60)
        up = runbook(rb_home, "sandbox", "up", "--only", "pubsub", timeout=180)
        assert up.returncode == 0, up.stderr
        proc = _start(rb_home, "run", str(pb), "--headless", "--yes")
        lines = _wait_for_line(proc, "1,000 messages pulled")
        incident = lines[0].split()[-1]
        kill_run(proc)  # the supervisor (the engine) and its client
        box.pubsub().stop()
        blocked = runbook(rb_home, "resume", incident, "--headless", "--yes", timeout=120)
        assert blocked.returncode == 3, blocked.stderr
        assert "--retry-interrupted" in blocked.stderr
        up = runbook(rb_home, "sandbox", "up", "--only", "pubsub", timeout=180)
        assert up.returncode == 0, up.stderr
        resumed = runbook(
            rb_home,
            "resume",
            incident,
            "--headless",
            "--yes",
            "--retry-interrupted",
            "--reason",
            "emulator is back",
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stderr
        j = Journal(rb_home / "journal.sqlite3")
        try:
            st = S.fold(incident, j.events(incident))
            assert st.status == "completed"
            assert st.steps["drain"].status == "done" and st.steps["drain"].attempts == 2
            assert st.outputs()["drain"]["unique"] == 1000
            assert j.verify(incident)[1] is None
        finally:
            j.close()
    finally:
        runbook(rb_home, "sandbox", "down", timeout=60)


# --- store clients are imported only by the steps that need them ---------------------------------


def _modules_after_run(home: Path, playbook: Path) -> tuple[int, list[str]]:
    """Run PLAYBOOK (``--yes``) in a fresh interpreter as its supervisor, which runs the steps; its
    sys.modules at the end (on stderr: a supervisor lets go of its standard output)."""
    code = (
        "import sys, json\n"
        "sys.argv = ['runbook', 'supervise']\n"
        "from runbook.cli import cli\n"
        "try:\n"
        "    cli.main(standalone_mode=False)\n"
        "    code = 0\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "sys.stderr.write('MODULES ' + json.dumps({'code': code, 'modules': sorted(sys.modules)}) + '\\n')\n"
    )
    spec = {"action": "open", "playbook": str(playbook), "params": {}, "env": None, "mode": "live",
            "answers": {"yes": True}, "detached": True}
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(home), capture_output=True, text=True, timeout=180, cwd=home.parent,
        input=json.dumps(spec),
    )
    line = next(ln for ln in reversed(done.stderr.splitlines()) if ln.startswith("MODULES "))
    data = json.loads(line[len("MODULES ") :])
    return data["code"], data["modules"]


def _heavy(mods: list[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted({h for m in mods for h in names if m == h or m.startswith(h + ".")})


def test_loading_and_planning_seed000_playbooks_imports_no_store_client() -> None:
    code = (
        "import json, sys\n"
        "from runbook.playbook.catalog import playbook_files\n"
        "from runbook.playbook.validate import load\n"
        "loaded = [load(p) for p in playbook_files()]\n"
        "assert all(l.ok for l in loaded), [str(d) for l in loaded for d in l.errors]\n"
        "print('MODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    mods = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("MODULES "))[len("MODULES ") :])
    assert _heavy(mods) == []
    # and the seed-000 playbooks are among those loaded
    assert {p.stem for p in PLAYBOOKS.glob("*.yaml")} >= set(SEED000)


def test_a_postgres_only_playbook_never_imports_google_cloud(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: pg-counts
title: Row counts of the database
tier: maintenance
not_drillable: test playbook
steps:
  - id: counts
    title: Count rows
    run: postgres.row_counts
""",
    )
    up = runbook(rb_home, "sandbox", "up", "--only", "postgres", timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        code, mods = _modules_after_run(rb_home, pb)
        assert code == 0
        assert "psycopg" in mods  # the step really ran against PostgreSQL
        assert _heavy(mods, ("google.cloud", "google.api_core", "grpc", "slack_sdk", "duckdb", "textual")) == []
    finally:
        runbook(rb_home, "sandbox", "down", timeout=60)


def test_a_bigquery_step_imports_only_the_bigquery_client(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: bq-counts
title: Row counts of the dataset
tier: maintenance
not_drillable: test playbook
steps:
  - id: counts
    title: Count rows
    run: bigquery.row_counts
""",
    )
    up = runbook(rb_home, "sandbox", "up", "--only", "bigquery", timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        code, mods = _modules_after_run(rb_home, pb)
        assert code == 0
        assert "google.cloud.bigquery" in mods
        unwanted = (
            "google.cloud.bigtable",
            "google.cloud.pubsub_v1",
            "google.cloud.dataflow_v1beta3",
            "psycopg",
            "slack_sdk",
        )
        assert _heavy(mods, unwanted) == []
    finally:
        runbook(rb_home, "sandbox", "down", timeout=60)
