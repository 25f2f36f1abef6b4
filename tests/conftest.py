"""Shared fixtures: a private RUNBOOK_HOME per test, and running the real `runbook` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def rb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    monkeypatch.setenv("RUNBOOK_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("RUNBOOK_PLAYBOOKS", raising=False)
    monkeypatch.chdir(tmp_path)
    yield home
    for sup in supervisors(home):  # a test that left an incident running detached: stop it
        sup.kill()


def supervisors(home: Path) -> list:
    """The live ``runbook supervise`` processes of this runbook home."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "supervise" in (p.info["cmdline"] or []) and p.environ().get("RUNBOOK_HOME") == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def supervisor_of(client_pid: int, timeout: float = 20.0):
    """The supervisor a ``runbook run``/``resume`` client started (its child until the client dies)."""
    import time

    import psutil

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            kids = [c for c in psutil.Process(client_pid).children() if "supervise" in c.cmdline()]
        except psutil.Error:
            kids = []
        if kids:
            return kids[0]
        time.sleep(0.02)
    raise AssertionError(f"no supervisor started by pid {client_pid}")


def kill_run(proc: subprocess.Popen, sig: int = 9) -> tuple:
    """Kill a headless run entirely, its supervisor (the engine) and its client; their output."""
    import psutil

    sup = supervisor_of(proc.pid)
    sup.send_signal(sig)
    proc.send_signal(sig)
    out = proc.communicate()
    try:
        sup.wait(timeout=20)
    except psutil.Error:
        pass  # already reaped by its parent
    return out


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RUNBOOK_HOME"] = str(home)
    env["RUNBOOK_CONFIG_DIR"] = str(home / "config")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def runbook(
    home: Path, *args: str, timeout: float = 120, input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real `runbook` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        cwd=home.parent,
    )


@pytest.fixture
def rb(rb_home: Path):
    def call(*args: str, **kw):
        return runbook(rb_home, *args, **kw)

    return call


def write_playbook(directory: Path, text: str, name: str | None = None) -> Path:
    import re

    if name is None:
        m = re.search(r"^id:\s*(\S+)", text, re.M)
        name = m.group(1) if m else "pb"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path
