"""Start, health-check and stop the local server processes that stand in for the stores.

A :class:`ManagedProcess` runs one server detached in its own session, so it outlives the CLI
command that started it (``runbook sandbox up`` starts the stores and exits; later commands use
them). Everything about a running server lives in its directory: ``NAME.log`` (stdout and
stderr), ``NAME.pid`` (pid and start time) and ``NAME.port``.

Health is "the port accepts a connection" (plus an optional protocol probe) and the recorded
process is alive and not a zombie: a crashed server can linger as a zombie when nobody reaps it,
and ``kill -0`` succeeds on zombies. Process facts come from :mod:`runbook.core.procs` (psutil),
port facts from :mod:`runbook.sandbox.ports`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runbook.core.procs import (
    LOCALHOST,
    group_members,
    pid_alive,
    start_time,
)
from runbook.core.timestamps import iso_z, utc_now
from runbook.sandbox.errors import SandboxError
from runbook.sandbox.ports import (
    Probe,
    RememberedPort,
    port_accepts,
)

POLL_SECONDS = 0.02
STOP_GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 30
LOG_MAX_BYTES = 8 << 20  # a server's log is rotated once, at start, beyond this
START_TIME_TOLERANCE_SECONDS = 2.0


# -- small helpers ---------------------------------------------------------------------------


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Move ``path`` to ``path.1`` once it exceeds ``max_bytes`` (call before a server starts)."""
    try:
        if path.stat().st_size > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except OSError:
        pass


def same_process(pid: int, recorded: str) -> bool:
    """Whether live ``pid`` is still the process whose start time was recorded as ``recorded``.

    Pid files written now hold psutil's start time (seconds since the epoch, always with a
    decimal point); older versions wrote the kernel's clock ticks since boot (an integer), which
    cannot be compared: such a file is trusted as before a pid check existed, the pid alone.
    Start times are compared with a tolerance because psutil derives them from the boot time,
    which the kernel reports to the second and moves when the clock is stepped.
    """
    if "." not in recorded:
        return True  # an older pid file (clock ticks), or no start time recorded
    try:
        expected = float(recorded)
    except ValueError:
        return True
    started = start_time(pid)
    return started is None or abs(started - expected) <= START_TIME_TOLERANCE_SECONDS


def kill_group(
    pgid: int, *, grace: float = STOP_GRACE_SECONDS, reap: Callable[[], object] | None = None
) -> None:
    """SIGTERM process group ``pgid``, wait up to ``grace`` seconds, then SIGKILL what is left.

    Args:
        pgid: The process group (a server started in its own session has pgid == pid).
        grace: Seconds to wait after SIGTERM before SIGKILL.
        reap: Called while waiting, to reap our own child (``Popen.poll``) so it does not linger
            as a zombie.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        if not group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not group_members(pgid):
                break
            time.sleep(POLL_SECONDS)
    if reap is not None:
        reap()


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log: Path | None = None,
    failed: Callable[[], str | None] | None = None,
) -> float:
    """Poll ``ready`` with short sleeps until it is true; return the seconds waited.

    Args:
        ready: The readiness check.
        timeout: Seconds before giving up.
        what: Names the server in the error message.
        log: Its log file; the error quotes its tail.
        failed: Returns a reason when waiting is pointless (the process exited), else None.

    Raises:
        SandboxError: Timed out, or ``failed`` reported a reason.
    """
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        reason = failed() if failed is not None else None
        if reason is None and time.monotonic() - start > timeout:
            reason = f"was not ready after {timeout:.0f} s"
        if reason is not None:
            msg = f"{what} {reason}."
            if log is not None:
                msg += f" Log: {log}"
                log_tail = tail(log)
                if log_tail:
                    msg += f"\n--- last lines ---\n{log_tail}"
            raise SandboxError(msg)
        time.sleep(POLL_SECONDS)


# -- the managed process ---------------------------------------------------------------------


class ManagedProcess:
    """One detached server process with pid, port and log files in ``directory``.

    ``start()`` returns as soon as the process is spawned, so several servers can start in
    parallel; ``wait_ready()`` then polls until each answers. ``ensure_running()`` does both and
    is idempotent.

    The port is, in order: the ``port`` argument, the port file from an earlier run (so clients
    configured with it keep working after a restart), or a free port picked now.

    Args:
        name: Short name used for the files and in messages (``pubsub``).
        directory: Where the log, pid and port files live (created if missing).
        command: Builds the argv for a given port. A list, never a shell string.
        port: A fixed port; ``None`` picks one (see above).
        host: The address the server listens on.
        env: Extra environment variables for the server (merged over ours).
        cwd: The server's working directory (default: ``directory``).
        probe: A protocol-level readiness check ``probe(host, port)`` run after the port
            accepts a connection.
        ready_timeout: Default seconds ``wait_ready`` waits.
    """

    def __init__(
        self,
        name: str,
        directory: Path | str,
        command: Callable[[int], Sequence[str]],
        *,
        port: int | None = None,
        host: str = LOCALHOST,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        probe: Probe | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.directory = Path(directory)
        self.command = command
        self.host = host
        self.server_env = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else self.directory
        self.probe = probe
        self.ready_timeout = ready_timeout
        self._port = RememberedPort(self.directory / f"{name}.port", port, host)
        self._proc: subprocess.Popen[bytes] | None = None

    # files

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.directory / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        """First line: the pid; second line: its start time (see :func:`same_process`)."""
        return self.directory / f"{self.name}.pid"

    @property
    def port_path(self) -> Path:
        """The port the server listens on."""
        return self._port.path

    @property
    def port(self) -> int:
        """The server's port (see :class:`~runbook.sandbox.ports.RememberedPort`)."""
        return self._port.number

    @property
    def address(self) -> str:
        """``host:port``, the form most emulator clients want."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The recorded pid if that process is still the one we started and alive, else None."""
        try:
            lines = self.pid_path.read_text().split()
        except OSError:
            return None
        if not lines or not lines[0].isdigit():
            return None
        pid = int(lines[0])
        self._reap()
        if not pid_alive(pid):
            return None
        if len(lines) > 1 and not same_process(pid, lines[1]):
            return None  # the pid was reused by an unrelated process
        return pid

    # state

    def _reap(self) -> None:
        # Our own child that died must be waited for, or it stays a zombie for our lifetime.
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def is_alive(self) -> bool:
        """Whether the recorded process is running (not dead, not a zombie)."""
        return self.pid is not None

    def is_healthy(self) -> bool:
        """Whether the process is alive, its port accepts connections and the probe passes."""
        if not self.is_alive() or not port_accepts(self.port, self.host):
            return False
        return self.probe is None or self.probe(self.host, self.port)

    # lifecycle

    def start(self) -> None:
        """Spawn the server detached and return at once (pair with :meth:`wait_ready`).

        Raises:
            SandboxError: It is already running, its port is taken, or it cannot be executed.
        """
        if self.is_alive():
            raise SandboxError(f"{self.name} is already running (pid {self.pid}).")
        if self.pid_path.exists():
            self.stop()  # a dead run: clear children it left in its process group
        self.directory.mkdir(parents=True, exist_ok=True)
        rotate_log(self.log_path)
        moved = self._port.claim(self.name)
        argv = [str(a) for a in self.command(self.port)]
        self._spawn(argv, f"--- {moved}\n" if moved else "")
        pid = self._proc.pid if self._proc is not None else 0
        started = start_time(pid)
        self.pid_path.write_text(f"{pid}\n{'' if started is None else repr(started)}\n")
        self._port.save()

    def _spawn(self, argv: list[str], note: str) -> None:
        child_env = {**os.environ, **self.server_env}
        with self.log_path.open("ab") as log:
            log.write(note.encode())
            log.write(f"--- {iso_z(utc_now())} starting: {argv}\n".encode())
            log.flush()
            try:
                # New session: the server survives our exit and a Ctrl-C in our terminal, and
                # stop() can signal everything it spawned through its process group.
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=child_env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise SandboxError(
                    f"Could not start {self.name} ({argv[0]}): {exc.strerror or exc}."
                ) from None

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until :meth:`is_healthy`; return the seconds waited.

        Raises:
            SandboxError: The process exited or timed out; the message quotes the log's tail.
        """

        def failed() -> str | None:
            return None if self.is_alive() else "exited before it was ready"

        return wait_until(
            self.is_healthy,
            timeout=self.ready_timeout if timeout is None else timeout,
            what=self.name,
            log=self.log_path,
            failed=failed,
        )

    def ensure_running(self, timeout: float | None = None) -> bool:
        """Make sure the server is healthy: nothing if it is, else clean up and (re)start it.

        A process that is alive but not answering gets ``timeout`` seconds to become ready
        (it may still be starting) before it is killed and restarted.

        Returns:
            True if the server was (re)started, False if it was already healthy.
        """
        if self.is_healthy():
            return False
        if self.is_alive():
            try:
                self.wait_ready(timeout)
                return False
            except SandboxError:
                pass
        self.stop()
        self.start()
        self.wait_ready(timeout)
        return True

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the server and everything it spawned; remove the pid and port files.

        SIGTERM to the process group, up to ``grace`` seconds, then SIGKILL. Safe to call when
        nothing is running. The port is kept in memory, so a later start reuses it.
        """
        pid = self.pid
        recorded = self._read_int_first_line(self.pid_path)
        if pid is None and recorded is not None and not pid_alive(recorded):
            # The leader is gone, but children it spawned may survive in its group (a dead
            # pid cannot have been reused as a group id; a live but different one is not ours).
            pid = recorded
        if pid is not None:
            proc = self._proc
            kill_group(pid, grace=grace, reap=proc.poll if proc is not None else None)
        self._reap()
        self.pid_path.unlink(missing_ok=True)
        self._port.forget()

    @staticmethod
    def _read_int_first_line(path: Path) -> int | None:
        try:
            first = path.read_text().split()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.isdigit() else None

    def __repr__(self) -> str:
        name, directory = type(self).__name__, str(self.directory)
        return f"{name}({self.name!r}, port={self._port.known}, directory={directory!r})"


def start_all(servers: Sequence[ManagedProcess], timeout: float | None = None) -> dict[str, float]:
    """Start every server that is not healthy, all at once, then wait for them together.

    Returns:
        Seconds from the start of this call until each (re)started server was ready, by name.

    Raises:
        SandboxError: A server exited or was not ready in time (the others keep running).
    """
    begin = time.monotonic()
    pending: list[ManagedProcess] = []
    for server in servers:
        if server.is_healthy():
            continue
        server.stop()  # clears a dead or zombie leftover
        server.start()
        pending.append(server)
    took: dict[str, float] = {}
    while pending:
        for server in list(pending):
            if server.is_healthy():
                took[server.name] = time.monotonic() - begin
                pending.remove(server)
            elif not server.is_alive() or time.monotonic() - begin > (timeout or server.ready_timeout):
                server.wait_ready(0)  # raises with the reason and the log's tail
        if pending:
            time.sleep(POLL_SECONDS)
    return took


__all__ = ["ManagedProcess", "kill_group", "rotate_log", "same_process", "start_all", "tail", "wait_until"]
