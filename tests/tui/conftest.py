"""Fixtures for the TUI tests: a private RUNBOOK_HOME, test playbooks made of real shell steps."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runbook.core.events import EventType

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
    from tests.conftest import supervisors

    for sup in supervisors(home):  # an incident a test left running detached
        sup.kill()


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


# Generous: the suite must pass on a busy machine (two cores shared by many processes).
WAIT_TIMEOUT = 60.0
POLL = 0.02  # how often a wait looks again (the app runs in between)
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def frame_text(app, screen=None) -> str:
    """What ``screen`` (the active one by default) paints now, as plain text lines.

    Read from the screen's compositor, as a terminal (or a snapshot) would get it: a widget not
    yet composed, laid out or rendered is not in it.
    """
    screen = screen if screen is not None else app.screen
    width, height = app.size
    out = io.StringIO()
    console = Console(
        width=width, height=height, file=out, force_terminal=True, color_system=None, legacy_windows=False
    )
    # As App.export_screenshot renders it: a dialog over the screens below it.
    below = app._background_screens if screen is app.screen else None
    console.print(screen._compositor.render_update(full=True, screen_stack=below))
    return CSI.sub("", out.getvalue())


def painted(app, *texts: str, screen=None) -> bool:
    """Whether every one of ``texts`` is on ``screen`` (the active one by default) now."""
    shown = frame_text(app, screen)
    return all(text in shown for text in texts)


async def wait_until(pilot, cond: Callable[[], object], timeout: float = WAIT_TIMEOUT, what: str = "condition") -> None:
    """Let the app run until ``cond()`` is true; fail after ``timeout`` seconds saying what was awaited.

    ``cond`` may query widgets that are not mounted yet: a missing widget counts as not yet.
    """
    from textual.css.query import NoMatches

    app = pilot.app
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except NoMatches:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; "
                f"{type(app.screen).__name__} shows:\n{frame_text(app)}"
            )
        await pilot.pause(POLL)


def record_notifications(app) -> list[str]:
    """Every notification ``app`` shows from now on (``run_test`` does not paint them)."""
    seen: list[str] = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        seen.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording
    return seen


async def wait_notified(pilot, seen: list[str], text: str, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until a notification recorded in ``seen`` (see :func:`record_notifications`) says ``text``."""
    await wait_until(
        pilot,
        lambda: any(text in message for message in seen),
        timeout,
        what=f"a notification saying {text!r} (seen: {seen})",
    )


def on_top(app, screen_type: type, focus: str | None = None) -> Callable[[], bool]:
    """A condition: a ``screen_type`` screen is on top and mounted, and ``focus`` (an id) has the focus.

    A screen is on the stack (``app.screen``) before it is composed: keys pressed then may go nowhere.
    """

    def check() -> bool:
        screen = app.screen
        if not isinstance(screen, screen_type) or not screen.is_mounted:
            return False
        return focus is None or (app.focused is not None and app.focused.id == focus)

    return check


async def wait_painted(pilot, *texts: str, screen=None, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until every one of ``texts`` is painted on ``screen`` (the active one by default)."""
    await wait_until(pilot, lambda: painted(pilot.app, *texts, screen=screen), timeout, what=f"{texts!r} on the screen")


async def keys_handled(pilot, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until every message already posted (the keys pressed, and what handling them posted) is handled.

    For a test that a key does *nothing*: once the app's and every widget's queue is empty after
    a full round of processing, the key has had every effect it will have on the UI.
    """
    app = pilot.app

    def quiet() -> bool:
        pumps = [app, *(node for screen in app.screen_stack for node in screen.walk_children(with_self=True))]
        return all(pump.message_queue_size == 0 for pump in pumps)

    # Quiet after two rounds in a row: a handler still running at the first look (its queue is
    # empty while it awaits) has finished by the second, and what it posted would be queued.
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    while quiet_rounds < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"the app was still handling messages after {timeout:.0f}s")
        await pilot.pause()
        quiet_rounds = quiet_rounds + 1 if quiet() else 0


def wait_for(probe: Callable[[], Any], done: Callable[[Any], bool], *, what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Outside the app: poll ``probe`` until ``done(value)`` (the project's own poll helper)."""
    from runbook.actions.support.poll import WaitTimeout
    from runbook.actions.support.poll import wait_until as poll_until

    try:
        return poll_until(probe, done, timeout=timeout, every=0.05)
    except WaitTimeout as exc:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {exc.last!r}") from None


def events_of(journal, incident: str, type_: EventType):
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
