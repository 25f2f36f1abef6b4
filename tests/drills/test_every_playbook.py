"""Every bundled playbook is drilled against a throwaway sandbox: its scenario breaks the data, the
playbook must bring back exactly what was destroyed, within its RTO scaled to the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.drills.drill import run_drill
from runbook.journal.store import Journal
from runbook.playbook.validate import load
from tests.conftest import REPO

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))


def test_every_playbook_is_drillable_or_says_why() -> None:
    for path in PLAYBOOKS:
        pb = load(path).playbook
        assert pb is not None, path
        assert pb.scenario is not None or pb.not_drillable, f"{path.name} has no scenario and no not_drillable reason"


@pytest.mark.parametrize("path", [p for p in PLAYBOOKS], ids=[p.stem for p in PLAYBOOKS])
def test_drill(path: Path, rb_home: Path) -> None:
    loaded = load(path)
    assert loaded.ok, loaded.diagnostics
    if loaded.playbook.scenario is None:
        pytest.skip(f"not drillable: {loaded.playbook.not_drillable}")
    journal = Journal(rb_home / "journal.sqlite3")
    lines: list[str] = []
    report = run_drill(journal, loaded, home=rb_home, echo=lines.append)
    assert report.passed, "; ".join(report.problems)
    assert all(status in ("done", "skipped", "planned") for _sid, status, _d in report.steps), report.steps
    result = [e for e in journal.events(report.incident) if e.type == "drill_result"]
    assert result and result[0].payload["passed"] is True
    assert journal.verify(report.incident)[1] is None
    # Nothing of the drill's sandbox is left running.
    assert not list((rb_home / "drills").glob("*/sandbox/postgres/data/postmaster.pid"))
