"""`runbook drill` on a throwaway sandbox: the data must come back, or the drill fails and says why."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, runbook


def test_drill_restores_and_is_recorded(rb_home: Path) -> None:
    r = runbook(rb_home, "drill", "storage-restore-tenant", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Drill passed" in r.stdout and "RTO achieved" in r.stdout
    incident = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("incident: "))
    rows = {row["id"]: row for row in json.loads(runbook(rb_home, "list", "--json").stdout)}
    assert rows["storage-restore-tenant"]["last_drilled"] is not None
    assert (
        rows["storage-restore-tenant"]["drill_overdue"] is False
        and rows["storage-restore-tenant"]["drill_every_days"] == 30
    )
    assert all(
        row["drill_overdue"] for pid, row in rows.items() if pid != "storage-restore-tenant" and row["drillable"]
    )
    table = runbook(rb_home, "list").stdout
    assert "never ⚠ due" in table
    assert runbook(rb_home, "verify", incident).returncode == 0
    # The throwaway sandbox is gone.
    assert not any((rb_home / "drills").glob("*/sandbox/postgres/data/postmaster.pid"))
    assert not any((rb_home / "drills").glob("*/sandbox/storage"))


def test_drill_fails_when_the_data_does_not_come_back(rb_home: Path, tmp_path: Path) -> None:
    text = (REPO / "playbooks" / "storage-restore-tenant.yaml").read_text()
    # Sabotage: restore a different tenant than the one the scenario deleted.
    text = text.replace('tenant: "{{ params.tenant }}"\n    notify: true', "tenant: tenant-abc\n    notify: true")
    assert "tenant: tenant-abc" in text
    pb = tmp_path / "pbs" / "storage-restore-tenant.yaml"
    pb.parent.mkdir()
    pb.write_text(text)
    r = runbook(rb_home, "drill", str(pb), timeout=300)
    assert r.returncode == 1
    assert "Drill FAILED" in r.stderr and "storage: tenant-acme is missing" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_playbook_without_scenario_is_not_drillable(rb_home: Path, tmp_path: Path) -> None:
    pb = tmp_path / "manual-only.yaml"
    pb.write_text(
        "id: manual-only\ntitle: M\ntier: maintenance\nnot_drillable: needs a human on site\n"
        "steps:\n  - id: a\n    manual: true\n"
    )
    r = runbook(rb_home, "drill", str(pb))
    assert r.returncode == 2 and "cannot be drilled: needs a human on site" in r.stderr


def test_scenario_passes_a_value_from_its_setup_to_the_playbook(rb_home: Path, tmp_path: Path) -> None:
    pb = tmp_path / "pbs" / "handoff.yaml"
    pb.parent.mkdir()
    pb.write_text(
        """
id: handoff
title: Hand-off
tier: data-loss
params:
  target_time: {type: timestamp, required: true}
steps:
  - id: use
    shell: [echo, "recovering to {{ params.target_time }}"]
    effect: read-only
scenario:
  params:
    target_time: "{{ steps.note_time.outputs.now }}"
  setup:
    - id: note_time
      shell: [date, -u, "+%Y-%m-%dT%H:%M:%SZ"]
      effect: read-only
      outputs: {now: last_line}
"""
    )
    r = runbook(rb_home, "drill", str(pb), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    incident = next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("incident: "))
    from runbook.journal.store import Journal

    bound = [e for e in Journal(rb_home / "journal.sqlite3").events(incident) if e.type == "param_bound"]
    assert bound[0].payload["value"].startswith("20") and bound[0].payload["value"].endswith("Z")
    bad = pb.read_text().replace("steps.note_time.outputs.now", "steps.use.outputs.stdout")
    pb.write_text(bad)
    r = runbook(rb_home, "validate", str(pb))
    assert r.returncode == 1 and "not a setup or break step" in r.stdout
