"""End to end: the installed `runbook` command in tmux at 80×24, driven by send-keys."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbook.core.events import EventType
from tests.tui.conftest import WAIT_TIMEOUT

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
]


def runbook_cmd() -> list[str]:
    found = shutil.which("runbook") or (
        str(Path(sys.executable).parent / "runbook") if (Path(sys.executable).parent / "runbook").exists() else None
    )
    return [found] if found else [sys.executable, "-m", "runbook"]


def capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def wait_pane(session: str, text: str, *, gone: bool = False, timeout: float = WAIT_TIMEOUT) -> str:
    """Wait until the pane shows ``text`` (or, with ``gone``, no longer shows it); returns the pane."""
    from runbook.actions.support.poll import WaitTimeout, wait_until

    try:
        return wait_until(lambda: capture(session), lambda pane: (text in pane) != gone, timeout=timeout, every=0.1)
    except WaitTimeout as exc:
        raise AssertionError(
            f"{text!r} {'never went' if gone else 'never appeared'}; the pane shows:\n{exc.last}"
        ) from None


def test_runbook_run_in_tmux(tui_home: Path, tmp_path: Path) -> None:
    from runbook.journal.store import Journal

    victim = tmp_path / "victim"
    victim.write_text("x")
    session = f"rbtest{int(time.time() * 1000) % 10**8}"
    cmd = [*runbook_cmd(), "run", "files", "-p", f"victim={victim}", "-p", f"marker={tmp_path / 'm'}"]
    env = (
        f"RUNBOOK_HOME={shlex.quote(str(tui_home))} RUNBOOK_CONFIG_DIR={shlex.quote(str(tmp_path / 'config'))} "
        f"RUNBOOK_PLAYBOOKS={shlex.quote(str(tmp_path / 'playbooks-test'))} TERM=xterm-256color"
    )
    if os.environ.get(
        "PYTHONPATH"
    ):  # the tree under test, not only the installed one (a tmux server keeps its own environment)
        env += f" PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])}"
    shell = f"cd {shlex.quote(str(tmp_path))} && env {env} {shlex.join(cmd)}; echo EXITED-$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", shell], check=True)
    try:
        pane = wait_pane(session, "Next:")
        assert "LIVE · sandbox" in pane
        assert "Look at the file" in pane
        subprocess.run(["tmux", "send-keys", "-t", session, "r"], check=True)
        pane = wait_pane(session, "Remove the file —")
        subprocess.run(["tmux", "send-keys", "-t", session, "r"], check=True)
        pane = wait_pane(session, "confirm a DESTRUCTIVE step")
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait_pane(session, "confirm a DESTRUCTIVE step", gone=True)  # refused: the run screen has the keys again
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        pane = wait_pane(session, "EXITED-0")
        assert "paused" in pane
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    journal = Journal(tui_home / "journal.sqlite3")
    try:
        inc = journal.incidents()[0]
        types = [e.type for e in journal.events(inc)]
        assert EventType.CONFIRMATION_REFUSED in types and types[-1] == EventType.PAUSED
        assert victim.exists()
    finally:
        journal.close()
