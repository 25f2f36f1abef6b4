"""TCP ports of the sandbox's servers: is one free, does it answer, and which one a server keeps.

A server keeps its port across restarts (:class:`RememberedPort`), so clients configured with the
endpoint keep working after a crash and a restart.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from runbook.core.procs import LOCALHOST, free_port
from runbook.sandbox.errors import SandboxError

POLL_SECONDS = 0.04

Probe = Callable[[str, int], bool]


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
        time.sleep(POLL_SECONDS)
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


class RememberedPort:
    """A server's TCP port, remembered in a file so that a restarted server keeps its endpoint.

    The port is, in order: the ``fixed`` port, the one in ``path`` from an earlier run, or a free
    port picked now.

    Args:
        path: The file holding the port.
        fixed: A port that must be used (a taken one is then an error, not a move).
        host: The address the server listens on.
    """

    def __init__(self, path: Path, fixed: int | None = None, host: str = LOCALHOST) -> None:
        self.path = path
        self.fixed = fixed
        self.host = host
        self._number = fixed

    @property
    def number(self) -> int:
        """The port (chosen and remembered in memory on first use)."""
        if self._number is None:
            self._number = self._read() or free_port(self.host)
        return self._number

    @property
    def known(self) -> int | None:
        """The port if it was given or already chosen, without choosing one."""
        return self._number

    def _read(self) -> int | None:
        try:
            text = self.path.read_text().split()[0]
        except (OSError, IndexError):
            return None
        return int(text) if text.isdigit() else None

    def claim(self, what: str) -> str:
        """Before a start: wait for the port to be bindable, or move to a free one.

        Returns:
            "" when the port is usable, else a line for the server's log saying it moved.

        Raises:
            SandboxError: A fixed port is in use.
        """
        taken = self.number
        if wait_port_free(taken, self.host):
            return ""
        if self.fixed is not None:
            raise SandboxError(f"{what}: port {taken} on {self.host} is already in use.")
        self._number = free_port(self.host)  # the remembered port was taken meanwhile
        return f"port {taken} is in use: moving to another port"

    def save(self) -> None:
        """Write the port to its file."""
        self.path.write_text(f"{self.number}\n")

    def forget(self) -> None:
        """Remove the file (the port stays in memory, so a later start reuses it)."""
        self.path.unlink(missing_ok=True)
