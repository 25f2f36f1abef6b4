"""PostgreSQL from a root shell: run its programs as the ``postgres`` user, hand it files, and
check a server is ready without a client library.

``initdb`` and ``postgres`` refuse to run as root. As root, every server command goes through
``runuser -u postgres --``, so every file the server must read or write must be owned by or
accessible to the ``postgres`` user, and every ancestor directory must be traversable by it
(:func:`grant_to_postgres` does both). As a normal user the commands run directly.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

SUPERUSER = "postgres"
SYSTEM_USER = "postgres"


def is_root() -> bool:
    """Whether we run as root (server commands then go through ``runuser``)."""
    return os.geteuid() == 0


def run_as_postgres_argv(argv: Sequence[str]) -> list[str]:
    """Prefix ``runuser -u postgres --`` when running as root, so initdb/pg_ctl/pg_basebackup work.

    Files the command reads or writes must be accessible to ``postgres`` (see :func:`grant_to_postgres`).
    """
    if not is_root():
        return list(argv)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", SYSTEM_USER, "--", *argv]


def grant_to_postgres(path: Path | str) -> None:
    """As root, hand ``path`` (recursively) to the ``postgres`` user and make its ancestors traversable.

    Ancestors only gain ``o+x`` (enter, not list) where ``postgres`` could not enter them, e.g.
    pytest's 0700 base temp directory or ``/root``. A no-op when not root.
    """
    if not is_root():
        return
    import pwd  # POSIX only; kept local so importing this module stays cheap

    entry = pwd.getpwnam(SYSTEM_USER)
    uid, gid = entry.pw_uid, entry.pw_gid
    root = Path(path).resolve()
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    for ancestor in root.parents:
        st = ancestor.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            os.chmod(ancestor, st.st_mode | 0o001)


def pg_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether the server accepts connections, like ``pg_isready``, without a client library.

    Sends a protocol-3 startup message and reads the first reply: an authentication request
    means ready; an error is "not ready" only for 57P03 (starting up, shutting down, in
    recovery), since any other error (bad password, unknown database) comes from a running server.
    """
    params = f"user\0{SUPERUSER}\0database\0postgres\0\0".encode()
    packet = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(packet)
            head = sock.recv(1)
            if head == b"R":
                try:
                    sock.sendall(b"X\0\0\0\4")  # Terminate: leave no half-open backend
                except OSError:
                    pass
                return True
            if head != b"E":
                return False
            body = b""
            while len(body) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
                if b"\0\0" in body[4:]:
                    break
    except OSError:
        return False
    return b"C57P03\0" not in body
