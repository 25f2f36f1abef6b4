"""Managers for the emulators that stand in for Pub/Sub, Bigtable and BigQuery in the sandbox.

Each is a :class:`~runbook.sandbox.procs.ManagedProcess`: ``start()`` + ``wait_ready()`` (or
``ensure_running()``), ``is_healthy()``, ``stop()``; plus ``endpoint`` (what a client's
``api_endpoint`` or emulator variable wants) and ``env()`` (the variables the Google client
libraries read to find an emulator).

- Pub/Sub: Google's Java emulator from the Cloud SDK. In memory only: state is lost on restart.
- Bigtable: Google's ``cbtemulator`` from the Cloud SDK. In memory only. Its backup RPCs crash it
  (see STANDINS.md): never point backup code at it directly.
- BigQuery: ``bqemulator`` (DuckDB). Persistent by default: ``--persistent --data-dir`` keeps
  ``bqemulator.duckdb`` (+ its WAL) under the sandbox, and datasets, tables and rows survive a
  restart, including a SIGKILL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

from runbook.core.procs import LOCALHOST
from runbook.sandbox.ports import RememberedPort, http_probe
from runbook.sandbox.procs import ManagedProcess

SDK_PLATFORM = Path("/usr/lib/google-cloud-sdk/platform")
PUBSUB_BIN = SDK_PLATFORM / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
BIGTABLE_BIN = SDK_PLATFORM / "bigtable-emulator" / "cbtemulator"
DEFAULT_PROJECT = "runbook-sandbox"

# Runs in the bqemulator child the first time only: installs DuckDB's spatial and avro extensions
# from the local wheels into $HOME/.duckdb (bqemulator's INSTALL would otherwise try the
# internet), writes the marker, then becomes the emulator. Doing it in the child keeps start()
# non-blocking; its output lands in the emulator's log.
_BOOTSTRAP = """\
import os, sys
from pathlib import Path
import duckdb
from duckdb_extensions import import_extension
con = duckdb.connect()
for name in ("spatial", "avro"):
    import_extension(name, con=con)
con.close()
marker = Path(sys.argv[1])
marker.parent.mkdir(parents=True, exist_ok=True)
marker.write_text("spatial avro\\n")
os.execv(sys.executable, [sys.executable, "-m", "bqemulator", *sys.argv[2:]])
"""


def _installed_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class _CloudSdkEmulator(ManagedProcess):
    """An emulator shipped with the Cloud SDK: one executable, clients told ``host:port``.

    Args:
        base_dir: Directory for its log, pid and port files.
        port: Fixed port, or ``None`` to reuse the remembered one or pick a free one.
        project: The project id clients should use (only exported in :meth:`env`).
        binary: The emulator's executable (default: where the Cloud SDK installs it).
    """

    NAME: ClassVar[str]
    BINARY: ClassVar[Path]
    READY_TIMEOUT: ClassVar[float]
    PROBE_PATH: ClassVar[str | None] = None  # ready when GET PROBE_PATH answers (else: the port accepts)

    def __init__(
        self,
        base_dir: Path | str,
        port: int | None = None,
        *,
        project: str = DEFAULT_PROJECT,
        binary: Path | str | None = None,
    ) -> None:
        self.project = project
        self.binary = str(binary or self.BINARY)
        probe = http_probe(self.PROBE_PATH) if self.PROBE_PATH else None
        super().__init__(
            self.NAME, base_dir, self._argv, port=port, probe=probe, ready_timeout=self.READY_TIMEOUT
        )

    def _argv(self, port: int) -> list[str]:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """``host:port``: what the emulator variable in :meth:`env` holds and what
        ``ClientOptions(api_endpoint=...)`` takes."""
        return self.address


class PubSubEmulator(_CloudSdkEmulator):
    """Google's Pub/Sub emulator (Java; ready in ~0.6-1.5 s, ~120 MB RSS).

    Ready when ``GET /`` answers. Resource names shorter than 3 characters are rejected.
    """

    NAME = "pubsub"
    BINARY = PUBSUB_BIN
    READY_TIMEOUT = 60.0  # a cold JVM on a busy 2-core machine
    PROBE_PATH = "/"

    def _argv(self, port: int) -> list[str]:
        return [self.binary, f"--host={LOCALHOST}", f"--port={port}"]

    def env(self) -> dict[str, str]:
        """Variables the Pub/Sub client reads: it then uses an insecure channel and no credentials."""
        return {"PUBSUB_EMULATOR_HOST": self.endpoint, "PUBSUB_PROJECT_ID": self.project}


class BigtableEmulator(_CloudSdkEmulator):
    """Google's Bigtable emulator ``cbtemulator`` (Go; ready in ~0.03 s).

    Health is a port connect: it speaks only gRPC. A crashed emulator can linger as a zombie,
    which :meth:`is_healthy` reports as down.
    """

    NAME = "bigtable"
    BINARY = BIGTABLE_BIN
    READY_TIMEOUT = 15.0

    def _argv(self, port: int) -> list[str]:
        return [self.binary, "-host", LOCALHOST, "-port", str(port)]

    def env(self) -> dict[str, str]:
        """``BIGTABLE_EMULATOR_HOST``: ``bigtable.Client(project=..., admin=True)`` then needs no
        credentials."""
        return {"BIGTABLE_EMULATOR_HOST": self.endpoint}


class BigQueryEmulator(ManagedProcess):
    """``bqemulator`` (DuckDB-backed BigQuery REST + gRPC emulator; ready in ~1.5 s, ~250 MB RSS).

    Runs with ``sys.executable`` and a private ``HOME`` under ``base_dir`` holding the DuckDB
    extensions, installed offline from the ``duckdb-extension-*`` wheels on first start (a
    marker file, keyed by the DuckDB version, records it). Its working directory is
    ``base_dir``, so a stray ``.bqemu.toml`` in the user's directory is not picked up.

    With ``persistent=True`` (the default) the data lives in ``base_dir/data/bqemulator.duckdb``
    and survives restarts and crashes (DuckDB replays its WAL). ``gs://`` URIs in load/extract
    jobs resolve under ``base_dir/gcs`` unless ``BQEMU_GCS_LOCAL_ROOT`` is already set.

    Args:
        base_dir: Directory for data, private HOME, log, pid and port files.
        port: REST port (``None``: remembered or free).
        grpc_port: gRPC port (Storage Read/Write API) (``None``: remembered or free).
        project: Default project id for requests that omit one.
        persistent: Keep data on disk (else in memory, lost on stop).
        log_level: bqemulator's log level.
    """

    def __init__(
        self,
        base_dir: Path | str,
        port: int | None = None,
        *,
        grpc_port: int | None = None,
        project: str = DEFAULT_PROJECT,
        persistent: bool = True,
        log_level: str = "info",
    ) -> None:
        base = Path(base_dir)
        self.project = project
        self.persistent = persistent
        self.log_level = log_level
        self._grpc_port = RememberedPort(base / "bigquery.grpc.port", grpc_port)
        env = {"HOME": str(base / "home")}
        if "BQEMU_GCS_LOCAL_ROOT" not in os.environ:
            env["BQEMU_GCS_LOCAL_ROOT"] = str(base / "gcs")
        super().__init__(
            "bigquery",
            base,
            self._argv,
            port=port,
            env=env,
            probe=http_probe("/readyz"),
            ready_timeout=60.0,
        )
        #: The private HOME whose ``.duckdb/extensions`` bqemulator loads.
        self.home = base / "home"
        #: Where the persistent DuckDB database lives.
        self.data_dir = base / "data"
        #: Local directory ``gs://BUCKET/...`` resolves under (when set by us).
        self.gcs_root = Path(env.get("BQEMU_GCS_LOCAL_ROOT", base / "gcs"))

    @property
    def extensions_marker(self) -> Path:
        """Exists once the DuckDB extensions are installed into :attr:`home`."""
        return self.home / ".duckdb" / f"runbook-extensions-{_installed_version('duckdb')}"

    @property
    def grpc_port(self) -> int:
        """The gRPC port (remembered across restarts like the REST port)."""
        return self._grpc_port.number

    def _argv(self, port: int) -> list[str]:
        args = [
            "start",
            "--rest-host", self.host,
            "--rest-port", str(port),
            "--grpc-host", self.host,
            "--grpc-port", str(self.grpc_port),
            "--project", self.project,
            "--log-level", self.log_level,
        ]  # fmt: skip
        if self.persistent:
            args += ["--persistent", "--data-dir", str(self.data_dir)]
        else:
            args.append("--ephemeral")
        marker = self.extensions_marker
        if marker.exists():
            return [sys.executable, "-m", "bqemulator", *args]
        return [sys.executable, "-c", _BOOTSTRAP, str(marker), *args]

    def start(self) -> None:
        """Spawn bqemulator (installing the DuckDB extensions first, in the child, if needed)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.persistent:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if "BQEMU_GCS_LOCAL_ROOT" in self.server_env:
            self.gcs_root.mkdir(parents=True, exist_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        # A fixed gRPC port is bqemulator's to fail on; a remembered one that was taken moves.
        moved = self._grpc_port.claim("bigquery (gRPC)") if self._grpc_port.fixed is None else ""
        if moved:
            with self.log_path.open("a") as log:
                log.write(f"--- gRPC {moved}\n")
        self._grpc_port.save()
        super().start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop bqemulator (SIGTERM lets DuckDB checkpoint; SIGKILL after ``grace`` seconds)."""
        super().stop(grace)
        self._grpc_port.forget()

    @property
    def endpoint(self) -> str:
        """``http://host:port`` for ``ClientOptions(api_endpoint=...)``."""
        return f"http://{self.address}"

    @property
    def grpc_endpoint(self) -> str:
        """``host:port`` of the gRPC (Storage API) server."""
        return f"{self.host}:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        """``BIGQUERY_EMULATOR_HOST``: google-cloud-bigquery then sends requests there.

        Credentials are still required by the client: pass ``AnonymousCredentials()``.
        """
        return {"BIGQUERY_EMULATOR_HOST": self.endpoint}

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``bigquery.Client(**kwargs)`` aimed at this emulator."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return {
            "project": self.project,
            "credentials": AnonymousCredentials(),
            "client_options": ClientOptions(api_endpoint=self.endpoint),
        }


__all__ = ["BigQueryEmulator", "BigtableEmulator", "DEFAULT_PROJECT", "PubSubEmulator"]
