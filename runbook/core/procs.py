"""Facts about processes and ports, from psutil (no hand-written ``/proc`` parsing).

Used by the journal (is a lock holder alive?), by actions that manage server processes, and by
the sandbox. A zombie counts as dead: it holds nothing and will never finish a step.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

LOCALHOST = "127.0.0.1"
SAME_START_SECONDS = 1.0  # start times closer than this are the same process (clock-tick rounding)

# Told of every command the step running in this context starts, as (pid, program): the engine
# journals it (see :func:`leftovers`). Set by the engine around an action, read by the process runner.
STEP_PROCESSES: ContextVar[Callable[[int, str], None] | None] = ContextVar("runbook_step_processes", default=None)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie.

    A multi-threaded process's main thread shows as a zombie while its other threads are still
    exiting (and still hold its sockets): it is only dead once they are gone.
    """
    import psutil

    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return _other_threads_alive(pid)


def _other_threads_alive(pid: int) -> bool:
    import psutil

    try:
        tids = [t.id for t in psutil.Process(pid).threads() if t.id != pid]
    except (psutil.Error, OSError):
        return False
    for tid in tids:
        try:
            if psutil.Process(tid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return True
        except psutil.Error:
            continue
    return False


def start_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), to tell a reused pid apart; None if gone."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and pid_alive(proc.pid):
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


def leftovers(pgid: int, started: float | None) -> list[int]:
    """Live processes of a command group a step started (leader ``pgid``, started at ``started``).

    Empty when the group is gone, or when its id now belongs to another process: a leader alive
    with a different start time is a reused pid, not ours. When our leader has ended, any process
    still in its group is ours (a group id is only ever taken by a process with that pid).
    """
    leader_start = start_time(pgid)
    if leader_start is not None and started is not None and abs(leader_start - started) > SAME_START_SECONDS:
        return []
    return group_members(pgid)


def still_running(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of the commands a step started (``process_started`` payloads), those with a process alive.

    Each item: ``pid``, ``pgid``, ``program`` and ``alive`` (the live pids of its group).
    """
    found = []
    for r in records:
        pgid = int(r.get("pgid") or r.get("pid") or 0)
        alive = leftovers(pgid, r.get("started")) if pgid > 0 else []
        if alive:
            found.append({"pid": r.get("pid"), "pgid": pgid, "program": r.get("program") or "?", "alive": alive})
    return found


def wait_gone(records: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """:func:`still_running`, after waiting up to ``seconds`` for it to become empty.

    A dead ``runbook`` process's reaper stops its step's commands within a few seconds: a
    resume right after the death waits for that instead of asking about processes being stopped.
    """
    import time

    deadline = time.monotonic() + seconds
    while (running := still_running(records)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def stop_group(pgid: int, grace: float = 3.0) -> list[int]:
    """SIGTERM process group ``pgid``, SIGKILL what is left after ``grace`` seconds; what is still alive."""
    import signal
    import time

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not group_members(pgid):
            break
    return group_members(pgid)


def processes_with_cwd(directory: Path, exe_name: str | None = None) -> list[int]:
    """Live processes whose working directory is ``directory``.

    Finds every process of a server that changes into its data directory (PostgreSQL does),
    even ones that made themselves session leaders or were reparented after their parent died.

    Args:
        directory: The working directory to match.
        exe_name: Only processes running this program (so a shell someone opened in the
            directory is never matched).
    """
    import psutil

    target = os.path.realpath(directory)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd() != target or not pid_alive(proc.pid):
                continue
            if exe_name is not None and os.path.basename(proc.exe()).removesuffix(" (deleted)") != exe_name:
                continue
        except (psutil.Error, OSError):
            continue
        found.append(proc.pid)
    return found


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def describe_running(running: list[dict[str, Any]]) -> str:
    """``sh, pid 123 (2 processes)`` for each command still alive (records from :func:`still_running`)."""
    return "; ".join(f"{r['program']}, pid {r['pid']} ({len(r['alive'])} process{'es' if len(r['alive']) != 1 else ''})"
                     for r in running)
