"""Exit codes say what a script needs to know (PRODUCT.md: 0, 1, 2, 3; 130 for Ctrl-C)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import runbook, write_playbook


def test_a_failure_the_playbook_accepts_exits_0_and_says_so(rb_home: Path, tmp_path: Path) -> None:
    """`on_failure: continue` declares a failure non-fatal: the run completes (exit 0), and the last
    line names the accepted failure, so nobody reads a green run as a clean one."""
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: lenient
title: Lenient
tier: maintenance
steps:
  - id: optional_check
    shell: [sh, -c, "exit 4"]
    effect: read-only
    on_failure: continue
  - id: main
    shell: ["true"]
    effect: read-only
""",
    )
    r = runbook(rb_home, "run", str(pb), "--headless")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert "incident completed" in last and "1 failure accepted" in last and "optional_check" in last, last


def test_a_failure_that_stops_the_incident_exits_1(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: strict
title: Strict
tier: maintenance
steps:
  - id: must_pass
    shell: [sh, -c, "exit 4"]
    effect: read-only
""",
    )
    r = runbook(rb_home, "run", str(pb), "--headless")
    assert r.returncode == 1 and "must_pass" in r.stderr and "Traceback" not in r.stderr, r.stderr
