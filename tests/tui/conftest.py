"""Fixtures for the TUI tests: a private RUNBOOK_HOME, test playbooks made of real shell steps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FILES_PLAYBOOK = """\
id: files
title: File repair
tier: component
not_drillable: a test playbook
level: 1
rto: 15m
rpo: 1h
description: Repair a file by hand and by shell.
params:
  victim:
    type: path
    required: true
    help: The file to remove.
  marker:
    type: path
    required: true
steps:
  - id: look
    title: Look at the file
    phase: First 15 minutes
    description: List the file **before** touching it.
    shell: [ls, -l, "{{ params.victim }}"]
    effect: read-only
  - id: remove
    title: Remove the file
    phase: Repair
    description: Removes the file for good.
    shell: [rm, "{{ params.victim }}"]
    effect: destructive
    confirm: {typed: "{{ params.victim }}"}
  - id: mark
    title: Write the marker
    phase: Repair
    shell: [touch, "{{ params.marker }}"]
    effect: mutating
  - id: tell
    title: Tell the team
    phase: Close
    manual: true
    description: Post in the incident channel.
  - id: last
    title: Final check
    phase: Close
    shell: [ls, "{{ params.marker }}"]
    effect: read-only
"""

SLOW_PLAYBOOK = """\
id: slow
title: Slow step
tier: maintenance
not_drillable: a test playbook
rto: 1h
params:
  marker:
    type: path
    required: true
steps:
  - id: first
    title: Quick first
    shell: [echo, hello]
    effect: read-only
  - id: nap
    title: Long sleep
    description: Sleeps a long time (killed by the test).
    shell: [sh, -c, "echo started-nap; sleep 60"]
    effect: mutating
    confirm: yes
  - id: after
    title: Touch after
    shell: [touch, "{{ params.marker }}"]
    effect: mutating
"""

FLOOD_PLAYBOOK = """\
id: flood
title: Floods output
tier: maintenance
not_drillable: a test playbook
steps:
  - id: flood
    title: Print 200000 lines
    shell: [seq, "1", "200000"]
    effect: read-only
  - id: after
    title: After the flood
    shell: [echo, done]
    effect: read-only
"""

FIXED_NOW = datetime(2025, 11, 23, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def tui_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RUNBOOK_HOME, config dir and playbook dir; cwd is the temp dir; TZ is UTC."""
    home = tmp_path / "home"
    home.mkdir()
    pbs = tmp_path / "playbooks-test"
    pbs.mkdir()
    (pbs / "files.yaml").write_text(FILES_PLAYBOOK)
    (pbs / "slow.yaml").write_text(SLOW_PLAYBOOK)
    (pbs / "flood.yaml").write_text(FLOOD_PLAYBOOK)
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    monkeypatch.setenv("RUNBOOK_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(pbs))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)
    yield home
    time.tzset()


@pytest.fixture
def ctx(tui_home: Path):
    """A TuiContext on the private home (journal actor fixed for stable screens)."""
    from runbook.journal.store import Journal
    from runbook.sandbox.environment import with_sandbox
    from runbook.stores.config import load_config
    from runbook.tui.app import TuiContext

    journal = Journal(tui_home / "journal.sqlite3", actor="oncall@testhost")
    context = TuiContext(load_config(local=with_sandbox()), journal, home=tui_home)
    yield context
    journal.close()


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RUNBOOK_HOME"] = str(home)
    env["NO_COLOR"] = "1"
    return env


def start_headless(home: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m runbook run … --headless`` in a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", *args, "--headless"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
    )


async def wait_until(pilot, cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Let the app run until ``cond()`` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(journal, incident: str, type_: str):
    return [e for e in journal.events(incident) if e.type == type_]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (no pytest-asyncio needed)."""
    import asyncio
    import inspect

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
