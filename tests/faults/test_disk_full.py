"""Disk full while journaling: the run stops cleanly with one clear sentence, and nothing already
journaled is lost (the hash chain still verifies)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.journal.store import Journal
from tests.conftest import cli_env, write_playbook


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only); skipped with the reason where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_cleanly_and_keeps_the_journal(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: filler
title: Filler
tier: maintenance
not_drillable: fault-test fixture
steps:
  - id: first
    shell: [echo, first step ok]
    effect: read-only
  - id: flood
    shell: [python3, -c, "import sys\\nfor i in range(400000): sys.stdout.write(f'{i:08d} ' + 'x' * 60 + '\\\\n')"]
    effect: read-only
  - id: never
    shell: [echo, should not run]
    effect: read-only
""",
    )
    r = subprocess.run(
        [sys.executable, "-m", "runbook", "run", str(pb), "--headless"],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout[-500:] + r.stderr
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and ("disk is full" in err[0] or "No space left" in err[0] or "free space" in err[0]), r.stderr
    incident = r.stdout.split()[1]
    # Free some room so the journal can be opened for reading, then check what is there.
    for log in (home / "logs").rglob("flood.*.log"):
        log.unlink()
    journal = Journal(home / "journal.sqlite3")
    events = journal.events(incident)
    assert any(e.type == "step_finished" and e.step == "first" for e in events)
    assert not any(e.step == "never" for e in events)
    assert journal.verify(incident)[1] is None
