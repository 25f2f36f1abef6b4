"""Start, health-check and stop the local server processes that stand in for the stores.

A :class:`ManagedProcess` runs one server detached in its own session, so it outlives the CLI
command that started it (``runbook sandbox up`` starts the stores and exits; later commands use
them). Everything about a running server lives in its directory: ``NAME.log`` (stdout and
stderr), ``NAME.pid`` (pid and kernel start time) and ``NAME.port``.

Health is "the port accepts a connection" (plus an optional protocol probe) and the recorded
process is alive and not a zombie: a crashed server can linger as a zombie when nobody reaps it,
and ``kill -0`` succeeds on zombies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runbook.core.errors import RunbookError

LOCALHOST = "127.0.0.1"
POLL_SECONDS = 0.02
STOP_GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 30
LOG_MAX_BYTES = 8 << 20  # a server's log is rotated once, at start, beyond this

Probe = Callable[[str, int], bool]


class SandboxError(RunbookError):
    """A sandbox store could not be started, checked or stopped; the message says why."""


# -- small helpers ---------------------------------------------------------------------------


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """Whether ``port`` can be bound on ``host`` (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT from our own last run is free for a server too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_port_free(port: int, host: str = LOCALHOST, timeout: float = 3.0) -> bool:
    """Wait until ``port`` can be bound; False at once if a server listens there, or on timeout.

    Right after a server is killed its port stays unbindable for a moment (its connections
    linger in FIN-WAIT): waiting keeps a restarted server on the endpoint its clients know.
    """
    deadline = time.monotonic() + timeout
    while not port_is_free(port, host):
        if port_accepts(port, host) or time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS * 2)
    return True


def port_accepts(port: int, host: str = LOCALHOST, timeout: float = 0.25) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_probe(path: str = "/", *, timeout: float = 0.5) -> Probe:
    """A probe that is true when ``GET http://HOST:PORT{path}`` answers with a 2xx status."""

    def probe(host: str, port: int) -> bool:
        import http.client  # only pulled in by servers that use an HTTP probe

        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path)
            return 200 <= conn.getresponse().status < 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    return probe


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


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(b")") + 2 :].decode().split()


def process_start_time(pid: int) -> str | None:
    """The kernel start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _task_alive(pid: int, tid: str) -> bool:
    try:
        raw = Path(f"/proc/{pid}/task/{tid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3] not in (b"Z", b"X")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] not in ("Z", "X"):
            return True
        # A multi-threaded process's main thread shows as a zombie while the other threads are
        # still exiting (and still hold its sockets): it is only dead once they are gone.
        return any(_task_alive(pid, tid) for tid in _tasks(pid) if tid != str(pid))
    if Path("/proc/self/stat").exists():
        return False  # Linux: no /proc entry means no process
    try:  # elsewhere: the best we have (zombies count as alive)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``.

    On systems without ``/proc`` this returns ``[pgid]`` while ``killpg(pgid, 0)`` succeeds.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat and stat[2] == str(pgid) and pid_alive(int(entry.name)):
            members.append(int(entry.name))
    return members


def processes_with_cwd(directory: Path, exe_name: str | None = None) -> list[int]:
    """Live processes whose working directory is ``directory`` (Linux; [] elsewhere).

    Finds every process of a server that changes into its data directory (PostgreSQL does),
    even ones that made themselves session leaders or were reparented after their parent died.

    Args:
        directory: The working directory to match.
        exe_name: Only processes running this program (so a shell someone opened in the
            directory is never matched).
    """
    target = os.path.realpath(directory)
    found = []
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd != target or not pid_alive(int(entry.name)):
            continue
        if exe_name is not None:
            try:
                exe = os.readlink(entry / "exe")
            except OSError:
                continue
            if os.path.basename(exe).removesuffix(" (deleted)") != exe_name:
                continue
        found.append(int(entry.name))
    return found


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
        self._fixed_port = port
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None

    # files

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.directory / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        """First line: the pid; second line: its kernel start time."""
        return self.directory / f"{self.name}.pid"

    @property
    def port_path(self) -> Path:
        """The port the server listens on."""
        return self.directory / f"{self.name}.port"

    @property
    def port(self) -> int:
        """The server's port (chosen and remembered on first use)."""
        if self._port is None:
            self._port = self._read_int(self.port_path) or free_port(self.host)
        return self._port

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
        started = process_start_time(pid)
        if len(lines) > 1 and started is not None and started != lines[1]:
            return None  # the pid was reused by an unrelated process
        return pid

    @staticmethod
    def _read_int(path: Path) -> int | None:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

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
        note = ""
        if not wait_port_free(self.port, self.host):
            if self._fixed_port is not None:
                raise SandboxError(f"{self.name}: port {self.port} on {self.host} is already in use.")
            # The remembered port was taken by something else meanwhile: move to a new one.
            note = f"--- port {self.port} is in use: moving to another port\n"
            self._port = free_port(self.host)
        argv = [str(a) for a in self.command(self.port)]
        child_env = {**os.environ, **self.server_env}
        with self.log_path.open("ab") as log:
            log.write(note.encode())
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
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
        pid = self._proc.pid
        self.pid_path.write_text(f"{pid}\n{process_start_time(pid) or ''}\n")
        self.port_path.write_text(f"{self.port}\n")

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
        for path in (self.pid_path, self.port_path):
            path.unlink(missing_ok=True)

    @staticmethod
    def _read_int_first_line(path: Path) -> int | None:
        try:
            first = path.read_text().split()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.isdigit() else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, port={self._port}, directory={str(self.directory)!r})"


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


__all__ = [
    "LOCALHOST",
    "ManagedProcess",
    "SandboxError",
    "free_port",
    "group_members",
    "http_probe",
    "kill_group",
    "pid_alive",
    "port_accepts",
    "port_is_free",
    "processes_with_cwd",
    "rotate_log",
    "start_all",
    "tail",
    "wait_port_free",
    "wait_until",
]
