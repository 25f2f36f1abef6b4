"""Steps never outlive the process that runs them: a reaper kills their process groups when it dies.

Every command a step runs gets its own process group (so a timeout or a cancel stops everything
it started). That same isolation means nothing stops the group when the ``runbook`` process itself
dies (a dropped SSH session's SIGHUP, SIGTERM, kill -9, the OOM killer): the step would go on
unsupervised, and a later ``--retry-interrupted`` would start a second copy beside it.

So the first command started by a process also starts a reaper: a tiny Python process in its own
session (a terminal's hangup never reaches it) that reads the process groups to watch from a pipe.
Only this process holds the pipe's write end (it is not inherited by commands), so the pipe reaches
end-of-file exactly when this process is gone, however it died. The reaper then sends SIGTERM to
every group still registered, and SIGKILL after a grace period to what is left.

Why a process per ``runbook`` process rather than ``PR_SET_PDEATHSIG``: the death signal reaches
only a direct child (it is cleared on fork), so ``sh -c 'pg_restore …'`` would leave ``pg_restore``
running; and it fires when the *thread* that forked exits, which a worker-thread design hits. Why
not a cgroup: it needs systemd or root on the bastion, which we cannot assume.

There is one reaper per OS process because it watches that process's death; it is the only
process-wide state in the actions layer, and it holds nothing but group ids.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

GRACE_SECONDS = 3.0

# Runs with ``python -I -S``: no site-packages, starts in a few milliseconds. Lines "+ PGID" and
# "- PGID" register and forget a group; end-of-file means the parent is gone.
_REAPER_CODE = f"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    op, _, pgid = line.strip().partition(" ")
    if pgid.isdigit():
        (groups.add if op == "+" else groups.discard)(int(pgid))

def signal_all(sig):
    for g in list(groups):
        try:
            os.killpg(g, sig)
        except ProcessLookupError:
            groups.discard(g)
        except PermissionError:
            groups.discard(g)

signal_all(signal.SIGTERM)
deadline = time.monotonic() + {GRACE_SECONDS}
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    signal_all(0)
signal_all(signal.SIGKILL)
"""


class Reaper:
    """Registers process groups with this process's reaper (started on first use, restarted if gone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before :meth:`forget` is called for it."""
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+ {pgid}\n")

    def forget(self, pgid: int) -> None:
        """The group's leader has ended and been waited for: its id may be reused, stop watching it."""
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._send(f"- {pgid}\n")

    @property
    def pid(self) -> int | None:
        """The reaper's pid (for tests), or None before the first command."""
        return self._proc.pid if self._proc is not None else None

    def _send(self, line: str) -> None:
        for _ in range(2):
            proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
            assert proc.stdin is not None
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
                return
            except (BrokenPipeError, OSError):
                self._proc = None  # someone killed it: start another, with every group still watched
        # Two reapers failed to start or died at once: commands still run, only unguarded.

    def _start(self) -> subprocess.Popen[bytes]:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
        assert self._proc.stdin is not None
        if self._groups:
            self._proc.stdin.write("".join(f"+ {g}\n" for g in sorted(self._groups)).encode())
            self._proc.stdin.flush()
        return self._proc


def _after_fork_in_child() -> None:
    # A forked copy of this process (multiprocessing, a daemonising supervisor) must not share the
    # parent's reaper: its pipe would not reach end-of-file when the child dies.
    global REAPER
    REAPER = Reaper()


REAPER = Reaper()
os.register_at_fork(after_in_child=_after_fork_in_child)
