"""A real local PostgreSQL cluster for the sandbox, managed with initdb and pg_ctl.

``initdb`` and ``postgres`` refuse to run as root. As root, every server command goes through
``runuser -u postgres --``, so every file the server must read or write (data directory, log,
socket directory, WAL archive, a base backup being restored) must be owned by or accessible to
the ``postgres`` user, and every ancestor directory must be traversable by it
(:func:`grant_to_postgres` does both). As a normal user the commands run directly.

Layout under ``base_dir``: ``data/`` (PGDATA), ``run/`` (Unix socket), ``wal_archive/``,
``server.log``, ``port``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from runbook.core.procs import LOCALHOST, pid_alive, processes_with_cwd
from runbook.sandbox.errors import SandboxError
from runbook.sandbox.pgtools import (
    SUPERUSER,
    grant_to_postgres,
    is_root,
    pg_ping,
    run_as_postgres_argv,
)
from runbook.sandbox.ports import RememberedPort
from runbook.sandbox.procs import rotate_log, tail, wait_until
from runbook.stores.postgres import ProgramNotFound, find_program

COMMAND_TIMEOUT = 60.0


def server_bin(name: str, version: str | None = None) -> str:
    """A PostgreSQL server program (see :func:`runbook.stores.postgres.find_program`).

    Raises:
        SandboxError: Not found anywhere.
    """
    try:
        return find_program(name, version)
    except ProgramNotFound as exc:
        raise SandboxError(str(exc)) from None


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_string(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("'", "''") + "'"


class PostgresCluster:
    """One PostgreSQL cluster under ``base_dir`` listening on 127.0.0.1.

    ``start()`` returns once pg_ctl has launched the postmaster; ``wait_ready()`` polls until it
    accepts connections (so it can start in parallel with the other stores). ``pg_ctl`` detaches
    the postmaster into its own session, so it outlives the command that started it.

    Args:
        base_dir: The cluster's directory (created by :meth:`init`).
        port: TCP port; ``None`` reuses the port remembered in ``base_dir/port`` or picks a free one.
    """

    def __init__(self, base_dir: Path | str, port: int | None = None) -> None:
        self.base_dir = Path(base_dir).absolute()
        #: PGDATA.
        self.data_dir = self.base_dir / "data"
        #: Where ``archive_command`` copies finished WAL segments when archiving is on.
        self.archive_dir = self.base_dir / "wal_archive"
        #: The server log (``pg_ctl -l``).
        self.log_path = self.base_dir / "server.log"
        self._port = RememberedPort(self.base_dir / "port", port)

    # -- paths and addresses -------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """The Unix socket directory (``-k``).

        A socket path is limited to 107 bytes; deep directories (drills, pytest) get a short
        directory under the system temp dir instead, named after the cluster.
        """
        local = self.base_dir / "run"
        if len(str(local / ".s.PGSQL.65535.lock")) <= 100:
            return local
        import hashlib
        import tempfile

        digest = hashlib.sha1(str(self.base_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"runbook-pg-{digest}"

    @property
    def port(self) -> int:
        """The TCP port, remembered in ``base_dir/port`` so restarts keep it."""
        return self._port.number

    @property
    def host(self) -> str:
        """The TCP host the server listens on."""
        return LOCALHOST

    @property
    def version(self) -> str | None:
        """The major version of the initialised data directory (``PG_VERSION``), if any."""
        try:
            return (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def bin(self, name: str) -> str:
        """A server program matching this cluster's version (see :func:`server_bin`)."""
        return server_bin(name, self.version)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq conninfo string for psycopg (``psycopg.connect(cluster.dsn("app"))``)."""
        parts = {"host": self.host, "port": str(self.port), "user": user, "dbname": dbname}
        return " ".join(f"{k}={_conninfo_value(v)}" for k, v in parts.items())

    conninfo = dsn

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """The same as :meth:`dsn` as a ``postgresql://`` URL."""
        from urllib.parse import quote

        return f"postgresql://{quote(user, safe='')}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def env(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq environment variables (for psql, pg_dump, pg_restore)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": SUPERUSER, "PGDATABASE": dbname}

    # -- running commands ----------------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, what: str, timeout: float = COMMAND_TIMEOUT) -> str:
        full = run_as_postgres_argv(argv)
        try:
            # cwd: postgres cannot stat a cwd like /root and would warn on every command.
            done = subprocess.run(
                full,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
                check=False,
            )
        except FileNotFoundError:
            raise SandboxError(f"PostgreSQL {what}: {full[0]!r} not found.") from None
        except subprocess.TimeoutExpired:
            raise SandboxError(f"PostgreSQL {what} did not finish within {timeout:.0f} s.") from None
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            msg = f"PostgreSQL {what} failed (exit {done.returncode}): {output or 'no output'}"
            log_tail = tail(self.log_path, 15)
            if log_tail:
                msg += f"\n--- {self.log_path} ---\n{log_tail}"
            raise SandboxError(msg)
        return output

    # -- lifecycle -----------------------------------------------------------------------------

    def is_initialized(self) -> bool:
        """Whether ``data/`` holds a cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    def init(
        self,
        *,
        wal_archiving: bool = False,
        archive_timeout: int = 10,
        extra_settings: dict[str, str] | None = None,
    ) -> bool:
        """Create the cluster (``initdb``) unless it exists.

        Args:
            wal_archiving: Configure continuous archiving for point-in-time recovery:
                ``wal_level=replica``, ``archive_mode=on``, ``archive_command`` copying each
                segment into :attr:`archive_dir`, and a short ``archive_timeout``. WAL segments
                are then 1 MB instead of 16 MB, since the timeout forces frequent switches.
            archive_timeout: Seconds after which a partly filled segment with changes is
                archived anyway (bounds how much recent history a restore can miss).
            extra_settings: More ``postgresql.conf`` settings (values are raw conf syntax).

        Returns:
            True if the cluster was created, False if it already existed.
        """
        if self.is_initialized():
            return False
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if wal_archiving:
            self.archive_dir.mkdir(exist_ok=True)
        grant_to_postgres(self.base_dir)
        argv = [
            server_bin("initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "-E", "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",  # a throwaway sandbox: skip the fsync of every new file (seconds)
        ]  # fmt: skip
        if wal_archiving:
            argv.append("--wal-segsize=1")
        self._run(argv, what="initdb")
        conf = "\n".join(
            f"{k} = {v}" for k, v in self._settings(wal_archiving, archive_timeout, extra_settings).items()
        )
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\n# --- runbook sandbox ---\n{conf}\n")
        self._port.save()
        return True

    def _settings(
        self, wal_archiving: bool, archive_timeout: int, extra_settings: dict[str, str] | None
    ) -> dict[str, str]:
        """The ``postgresql.conf`` lines the sandbox appends (see :meth:`init`)."""
        settings: dict[str, str] = {
            "listen_addresses": _conf_string(LOCALHOST),
            "port": str(self.port),
            "unix_socket_directories": _conf_string(str(self.socket_dir)),
        }
        if wal_archiving:
            archive = shlex.quote(str(self.archive_dir))
            settings |= {
                "wal_level": "replica",
                "archive_mode": "on",
                # Never overwrite: a segment already archived means something else is wrong.
                # Copy under a temporary name and rename, so a reader (a restore's
                # restore_command, a test) never sees a half-written segment.
                "archive_command": _conf_string(
                    f"test ! -f {archive}/%f && cp %p {archive}/%f.partial && mv {archive}/%f.partial {archive}/%f"
                ),
                "archive_timeout": str(archive_timeout),
            }
        settings |= extra_settings or {}
        return settings

    def _server_options(self) -> str:
        # pg_ctl passes -o through a shell to postgres: quote each value.
        return " ".join(
            shlex.quote(a)
            for a in ("-p", str(self.port), "-k", str(self.socket_dir), "-c", f"listen_addresses={LOCALHOST}")
        )

    def postmaster_pid(self) -> int | None:
        """The pid in ``postmaster.pid`` (which may be stale)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(first) if first.isdigit() else None

    def is_running(self) -> bool:
        """Whether the postmaster is alive and accepts connections on its port."""
        pid = self.postmaster_pid()
        return pid is not None and pid_alive(pid) and pg_ping(self.host, self.port)

    def server_processes(self) -> list[int]:
        """Live processes of this cluster: every PostgreSQL process changes into its data directory.

        (Backends make themselves session leaders and are reparented when the postmaster dies,
        so neither the process group nor the parent finds them.)
        """
        return processes_with_cwd(self.data_dir, exe_name="postgres")

    def _kill_leftovers(self, wait: float) -> None:
        """Give the cluster's processes ``wait`` seconds to exit, then SIGKILL the rest."""
        deadline = time.monotonic() + wait
        while self.server_processes() and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(100):
            leftovers = self.server_processes()
            if not leftovers:
                return
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        raise SandboxError(
            f"PostgreSQL processes {self.server_processes()} in {self.data_dir} would not die."
        )

    def _clear_stale(self) -> None:
        """After a crash: wait for (or kill) leftover backends of a dead postmaster, drop ``postmaster.pid``.

        Backends notice postmaster death and exit by themselves; a new postmaster refuses to
        start while they still hold the old shared memory, and refuses a ``postmaster.pid`` or
        socket lock file naming a zombie (``kill -0`` succeeds on it).
        """
        pid = self.postmaster_pid()
        if pid is None or pid_alive(pid):
            return
        self._kill_leftovers(wait=3.0)
        self._remove_lock_files()

    def _remove_lock_files(self) -> None:
        """Drop ``postmaster.pid`` and the socket and its lock file (call only with no server alive)."""
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        # The socket's lock file names the dead (maybe zombie) postmaster too; the socket
        # directory is ours alone, so its leftovers can go.
        for leftover in self.socket_dir.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)

    def start(self) -> None:
        """Launch the postmaster and return without waiting (pair with :meth:`wait_ready`).

        Raises:
            SandboxError: Not initialised, or pg_ctl failed.
        """
        if not self.is_initialized():
            raise SandboxError(f"No PostgreSQL cluster in {self.data_dir}; run init() first.")
        self._clear_stale()
        self._port.claim("PostgreSQL")
        self._port.save()
        rotate_log(self.log_path)
        self.log_path.touch()
        grant_to_postgres(self.log_path)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        grant_to_postgres(self.socket_dir)
        self._run(
            [
                self.bin("pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.log_path),
                "-o", self._server_options(),
                "-W",  # don't wait: wait_ready() polls, so other stores start meanwhile
                "start",
            ],
            what="pg_ctl start",
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait until the server accepts connections; return the seconds waited.

        Raises:
            SandboxError: The postmaster died or timed out; the message quotes the server log.
        """
        started = time.monotonic()

        def failed() -> str | None:
            pid = self.postmaster_pid()
            if pid is None:
                # pg_ctl -W returns before postgres writes postmaster.pid: allow it a moment.
                return "exited before it was ready" if time.monotonic() - started > 5.0 else None
            return None if pid_alive(pid) else "exited before it was ready"

        return wait_until(
            self.is_running, timeout=timeout, what="PostgreSQL", log=self.log_path, failed=failed
        )

    def ensure_running(self, timeout: float = 30.0, **init_options: object) -> bool:
        """Initialise if needed and make sure the server accepts connections.

        Handles a crashed server (e.g. a SIGKILLed postmaster): leftover backends and the stale
        ``postmaster.pid`` are cleared before restarting; PostgreSQL then runs crash recovery.

        Args:
            timeout: Seconds to wait for readiness.
            **init_options: Passed to :meth:`init` when the cluster does not exist yet.

        Returns:
            True if the server was started, False if it was already running.
        """
        if self.is_running():
            return False
        self.init(**init_options)  # type: ignore[arg-type]
        pid = self.postmaster_pid()
        if pid is not None and pid_alive(pid):
            # Alive but not answering: maybe still starting or in crash recovery.
            try:
                self.wait_ready(timeout)
                return False
            except SandboxError:
                self.stop()
        self.start()
        self.wait_ready(timeout)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown) and make sure none of its processes remain.

        Falls back to SIGQUIT (immediate shutdown) when pg_ctl cannot stop it, then SIGKILLs any
        of the cluster's processes still alive after 5 s. Safe to call when nothing runs.
        """
        pid = self.postmaster_pid()
        if pid is not None and pid_alive(pid):
            try:
                argv = [self.bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-t", str(int(timeout))]
                self._run([*argv, "-w", "stop"], what="pg_ctl stop", timeout=timeout + 5)
            except SandboxError:
                try:
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                except ProcessLookupError:
                    pass
        # pg_ctl returns when postmaster.pid is gone; make sure no backend outlives it.
        self._kill_leftovers(wait=5.0)
        self._remove_lock_files()

    # -- databases -----------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its conninfo string."""
        import psycopg  # ~0.3 s to import: only when needed
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def restore_command(self) -> str:
        """A ``restore_command`` that reads segments back from :attr:`archive_dir` (for PITR)."""
        return f"cp {shlex.quote(str(self.archive_dir))}/%f %p"

    def __repr__(self) -> str:
        return f"PostgresCluster({str(self.base_dir)!r}, port={self._port.known})"


__all__ = [
    "PostgresCluster",
    "grant_to_postgres",
    "is_root",
    "pg_ping",
    "run_as_postgres_argv",
    "server_bin",
]
