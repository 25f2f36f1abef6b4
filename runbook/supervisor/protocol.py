"""The supervisor's wire format: one JSON object per line over a Unix socket, version :data:`VERSION`.

It carries the front-end protocol (:mod:`runbook.engine.frontend`) between the engine, which runs
in the supervisor, and a client (the TUI or the headless CLI):

client → supervisor
    ``hello`` {v, role: drive | watch | status, who, pid, take_over, answers?}; then
    ``decision`` {id, choice, reason, typed, value}, ``cancel`` {step}, ``note`` {text}.
supervisor → client
    ``welcome`` {v, incident, pid, role, driver, after_n, tail, waiting}; then ``event`` {event},
    ``output`` {step, line}, ``status`` {step, status}, ``request`` {id, request},
    ``withdrawn`` {id}, ``role`` {role, by}, ``dropped`` {lines}, ``outcome`` {status, message},
    ``refused`` {message}.

A peer with another version is refused with one sentence, never misread. Sockets live in the
runbook home (``run/``, 0700), are 0600, and a peer of another uid is refused (``SO_PEERCRED``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runbook.core.events import Event
from runbook.core.paths import private_dir
from runbook.engine.frontend import Ask, Choice, Decision, Request

VERSION = 1
MAX_LINE = 16 * 1024 * 1024  # one message; a longer line is a broken peer
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


class ProtocolError(Exception):
    """The peer sent something this version cannot read (one sentence)."""


def socket_dir(home: Path) -> Path:
    return private_dir(home / "run")


def socket_path(home: Path, incident: str) -> Path:
    return socket_dir(home) / f"{incident}.sock"


def encode(kind: str, **body: Any) -> bytes:
    body["t"] = kind
    return (json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode("utf-8")


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("The supervisor's peer sent a message that is not JSON.") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("The supervisor's peer sent a message without a type.")
    return message


# -- the front-end protocol as plain data ---------------------------------------------------------


def request_to_wire(request: Request) -> dict[str, Any]:
    """A question as plain data; a typed confirmation of a secret target travels as its sha256 only."""
    data = asdict(request)
    if request.expected is not None and request.expected_is_secret():
        data["expected"] = None
        data["expected_sha256"] = hashlib.sha256(request.expected.encode("utf-8")).hexdigest()
    data["ask"] = request.ask.value
    data["choices"] = [c.value for c in request.choices]
    return data


def request_from_wire(data: dict[str, Any]) -> Request:
    fields = dict(data)
    fields["ask"] = Ask(fields["ask"])
    fields["choices"] = tuple(Choice(c) for c in fields.get("choices", ()))
    return Request(**fields)


def decision_to_wire(decision: Decision) -> dict[str, Any]:
    return {"choice": decision.choice.value, "reason": decision.reason, "typed": decision.typed,
            "value": decision.value}


def decision_from_wire(data: dict[str, Any]) -> Decision:
    try:
        choice = Choice(str(data.get("choice")))
    except ValueError:
        raise ProtocolError(f"Unknown choice {data.get('choice')!r}.") from None
    text = {k: data.get(k) if isinstance(data.get(k), str) else None for k in ("reason", "typed", "value")}
    return Decision(choice, **text)


def event_to_wire(event: Event) -> dict[str, Any]:
    return asdict(event)


def event_from_wire(data: dict[str, Any]) -> Event:
    return Event(**data)


# -- sockets ----------------------------------------------------------------------------------------


class _Address:
    """A socket path usable with bind/connect even when longer than ``sun_path`` allows.

    Test and CI homes can be deep; the kernel caps a Unix socket address at 107 bytes. A long path
    is reached through ``/proc/self/fd/N/`` of its directory, which names the same inode.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> str:
        text = str(self.path)
        if len(os.fsencode(text)) <= _SUN_PATH_MAX:
            return text
        self._fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._fd}/{self.path.name}"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)


def listen(path: Path) -> socket.socket:
    """A listening socket at ``path``, 0600 from birth (a stale file from a dead supervisor is replaced)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        with _Address(path) as address:
            sock.bind(address)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(8)
    return sock


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _Address(path) as address:
            sock.connect(address)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (``SO_PEERCRED``: the kernel's word, not the peer's)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class LineReader:
    """Reads newline-terminated messages from a socket (the last partial line is kept)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def messages(self) -> Any:
        """Yield decoded messages until the peer closes the connection."""
        while True:
            try:
                chunk = self.sock.recv(262144)
            except OSError:
                return
            if not chunk:
                return
            if b"\n" not in chunk:
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE:
                    raise ProtocolError("The supervisor's peer sent a message longer than 16 MiB.")
                continue
            lines = (self._buffer + chunk).split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                if line.strip():
                    yield decode(line)
