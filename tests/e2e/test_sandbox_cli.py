"""`runbook sandbox up|status|down`: idempotent, a crashed store is restarted, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from runbook.core.procs import pid_alive
from tests.conftest import runbook


def processes_under(path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(path) in cmd or cwd.startswith(str(path)):
            pids.append(int(entry.name))
    return pids


def test_sandbox_lifecycle(rb_home: Path) -> None:
    r = runbook(rb_home, "sandbox", "up", "--only", "postgres,storage,dataflow")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(runbook(rb_home, "sandbox", "status", "--json").stdout)}
    assert rows["postgres"]["running"] and rows["postgres"]["port"] and rows["postgres"]["size"] > 0
    assert rows["dataflow"]["running"] and rows["storage"]["size"] > 1_000_000
    pid = rows["postgres"]["pid"]

    # Idempotent: a second `up` restarts nothing.
    r = runbook(rb_home, "sandbox", "up", "--only", "postgres,storage,dataflow")
    rows2 = {row["name"]: row for row in json.loads(runbook(rb_home, "sandbox", "status", "--json").stdout)}
    assert rows2["postgres"]["pid"] == pid

    # A crashed store is detected and restarted, with its data.
    os.kill(pid, signal.SIGKILL)
    assert eventually(lambda: not pid_alive(pid)), "the killed postgres is still alive"
    rows3 = {row["name"]: row for row in json.loads(runbook(rb_home, "sandbox", "status", "--json").stdout)}
    assert not rows3["postgres"]["running"]
    r = runbook(rb_home, "sandbox", "up", "--only", "postgres")
    assert r.returncode == 0, r.stderr
    rows4 = {row["name"]: row for row in json.loads(runbook(rb_home, "sandbox", "status", "--json").stdout)}
    assert rows4["postgres"]["running"] and rows4["postgres"]["pid"] != pid
    r = runbook(rb_home, "run", "backup-verification", "--headless")  # starts what it needs on demand
    assert "incident: " in r.stdout

    r = runbook(rb_home, "sandbox", "down")
    assert r.returncode == 0 and "postgres" in r.stdout
    assert eventually(lambda: processes_under(rb_home / "sandbox") == []), processes_under(rb_home / "sandbox")
    r = runbook(rb_home, "sandbox", "up", "--only", "kafka")
    assert r.returncode == 2 and "Unknown sandbox component 'kafka'" in r.stderr


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
