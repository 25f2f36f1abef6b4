"""Facts about processes and ports, from psutil (no hand-written ``/proc`` parsing).

Used by the journal (is a lock holder alive?), by actions that manage server processes, and by
the sandbox. A zombie counts as dead: it holds nothing and will never finish a step.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOCALHOST = "127.0.0.1"


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
