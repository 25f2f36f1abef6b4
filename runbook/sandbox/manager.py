"""The local sandbox: start, seed, check and stop the real local stand-ins for every store.

Layout under ``$RUNBOOK_HOME/sandbox``::

    postgres/            PostgreSQL cluster (WAL archived to postgres/wal_archive for PITR)
    storage/datasets/    the live file storage, <tenant>/<dataset>/…
    backups/database/    database dumps        backups/storage/   rsync snapshots + latest
    backups/pitr/        base backups           backups/bigtable/  Bigtable exports
    bigquery/ pubsub/ bigtable-<region>/ dataflow/ slack/ config-repo/

Only what a playbook needs is started (``ensure(components)``), so a PostgreSQL drill does not pay
for the JVM of the Pub/Sub emulator. Starting is idempotent; a crashed store is detected (port
and protocol probe) and restarted; in-memory stores (Pub/Sub, Bigtable) are re-seeded after a
restart. ``down`` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.core.paths import home
from runbook.sandbox.endpoints import (  # noqa: F401 - PROJECT and the rest are read from here too
    PG_DATABASE,
    PG_STAGING,
    PROJECT,
    REGIONS,
    SLACK_TOKEN,
    SLACK_TOKEN_ENV,
    store_settings,
)
from runbook.sandbox.errors import SandboxError
from runbook.sandbox.ports import Probe
from runbook.sandbox.procs import ManagedProcess, start_all

# Which components an action needs, by its name prefix.
ACTION_COMPONENTS = {
    "postgres": ("postgres",),
    "storage": ("storage",),
    "bigquery": ("bigquery",),
    "bigtable": ("bigtable",),
    "dataflow": ("dataflow",),
    "pubsub": ("pubsub",),
    "notify": ("slack",),
    "git": ("git",),
}
ALL = ("postgres", "storage", "bigquery", "bigtable", "pubsub", "dataflow", "slack", "git")
GCP_COMPONENTS: tuple[str, ...] = ("bigquery", "pubsub", "bigtable", "dataflow")


@dataclass
class ComponentStatus:
    name: str
    running: bool
    port: int | None
    pid: int | None
    detail: str
    size: int


def _du(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class _PostgresStart:
    """Initialise and start PostgreSQL on a thread: initdb takes about a second, so it runs while
    the emulators start."""

    def __init__(self, pg: Any) -> None:
        self._pg = pg
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="sandbox-postgres", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pg.init(
                wal_archiving=True,
                archive_timeout=5,
                extra_settings={"fsync": "off", "full_page_writes": "on"},
            )
            self._pg.stop()  # clears a crashed server's leftovers
            self._pg.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            self._errors.append(exc)

    def join(self) -> None:
        """Wait for the start to finish."""
        self._thread.join()

    def raise_failure(self) -> None:
        """Raise what went wrong starting it, if anything."""
        if self._errors:
            raise self._errors[0]


class Sandbox:
    """The sandbox under ``base`` (default ``$RUNBOOK_HOME/sandbox``)."""

    def __init__(self, base: Path | None = None) -> None:
        # RUNBOOK_SANDBOX_DIR lets a drill run in a throwaway sandbox of its own.
        override = os.environ.get("RUNBOOK_SANDBOX_DIR")
        self.base = (base or (Path(override) if override else home() / "sandbox")).absolute()
        self.storage_root = self.base / "storage" / "datasets"
        self.backups = self.base / "backups"
        self.config_repo = self.base / "config-repo"
        self.marker_dir = self.base / "seeded"  # one file per component seeded

    # -- components ------------------------------------------------------------------------------

    def postgres(self) -> Any:
        from runbook.sandbox.postgres import PostgresCluster

        return PostgresCluster(self.base / "postgres")

    def bigquery(self) -> Any:
        from runbook.sandbox.emulators import BigQueryEmulator

        return BigQueryEmulator(self.base / "bigquery", project=PROJECT)

    def pubsub(self) -> Any:
        from runbook.sandbox.emulators import PubSubEmulator

        return PubSubEmulator(self.base / "pubsub", project=PROJECT)

    def bigtable_emulator(self, region: str) -> Any:
        from runbook.sandbox.emulators import BigtableEmulator

        return BigtableEmulator(self.base / f"bigtable-{region}", project=PROJECT)

    def _python_server(
        self,
        name: str,
        directory: Path,
        args: Sequence[str] = (),
        *,
        package: str | None = None,
        state: str = "state",
        upstream: ManagedProcess | None = None,
        probe: Probe | None = None,
    ) -> ManagedProcess:
        """A stand-in run as ``python -m runbook.sandbox.PACKAGE --port PORT --state-dir DIR ARGS…``.

        ``PACKAGE`` defaults to ``name``, ``DIR`` is ``directory/state``; ``--upstream`` names
        the ``upstream`` server's address as it is when this one starts.
        """
        module, state_dir = f"runbook.sandbox.{package or name}", str(directory / state)

        def argv(port: int) -> list[str]:
            more = ["--upstream", upstream.address] if upstream is not None else []
            return [sys.executable, "-m", module, "--port", str(port), "--state-dir", state_dir, *args] + more

        return ManagedProcess(name, directory, argv, probe=probe, ready_timeout=30.0)

    def bigtable_proxy(self, region: str) -> ManagedProcess:
        emulator = self.bigtable_emulator(region)
        # Its files go beside those of the emulator it fronts.
        return self._python_server(
            "bigtable-backup",
            emulator.directory,
            package="bigtable_backup",
            state="backups",
            upstream=emulator,
        )

    def dataflow(self) -> ManagedProcess:
        from runbook.sandbox.ports import http_probe

        directory, health = self.base / "dataflow", http_probe("/_control/health")
        return self._python_server("dataflow", directory, ["--transition-delay", "0.3"], probe=health)

    def slack(self) -> ManagedProcess:
        channels = ["--channel", "incidents", "--channel", "security"]
        return self._python_server("slack", self.base / "slack", ["--token", SLACK_TOKEN, *channels])

    def _servers(self, components: Iterable[str]) -> list[Any]:
        out: list[Any] = []
        for c in components:
            if c == "bigquery":
                out.append(self.bigquery())
            elif c == "pubsub":
                out.append(self.pubsub())
            elif c == "bigtable":
                out += [self.bigtable_emulator(r) for r in REGIONS]
            elif c == "dataflow":
                out.append(self.dataflow())
            elif c == "slack":
                out.append(self.slack())
        return out

    # -- lifecycle ---------------------------------------------------------------------------------

    def ensure(self, components: Iterable[str] = ALL) -> dict[str, float]:
        """Start (and seed on first start) the given components; return seconds per restarted one.

        Raises:
            SandboxError: A store could not be started or seeded (one sentence, with the log's tail).
        """
        try:
            return self._ensure(components)
        except OSError as exc:
            raise SandboxError(
                f"The sandbox under {self.base} could not be prepared: {exc.strerror or exc}."
            ) from None

    def _ensure(self, components: Iterable[str]) -> dict[str, float]:
        wanted = [c for c in ALL if c in set(components)]
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        begin = time.monotonic()
        pg = self.postgres() if "postgres" in wanted else None
        pg_start = _PostgresStart(pg) if pg is not None and not pg.is_running() else None
        try:
            started = start_all(self._servers(wanted))
        finally:
            if pg_start is not None:
                pg_start.join()
        if pg_start is not None:
            pg_start.raise_failure()
        took = dict(started)
        if "bigtable" in wanted:
            took.update(self._start_bigtable_proxies(restarted="bigtable" in started))
        if pg is not None:
            if pg_start is not None:
                pg.wait_ready(30)
                took["postgres"] = time.monotonic() - begin
            self._seed_postgres(pg)
        self._backup_dirs()
        if "storage" in wanted:
            self._seed_storage()
        if "git" in wanted:
            self._seed_git()
        self._seed_gcp(wanted, started)
        self._write_state()
        return took

    def _start_bigtable_proxies(self, *, restarted: bool) -> dict[str, float]:
        """Start the backup servers in front of the Bigtable emulators (they follow their emulator)."""
        proxies = [self.bigtable_proxy(r) for r in REGIONS]
        if restarted:
            for proxy in proxies:
                proxy.stop()
        return {f"bigtable-backup-{k}": v for k, v in start_all(proxies).items()}

    def _seed_gcp(self, wanted: list[str], started: dict[str, float]) -> None:
        """Seed the GCP stand-ins on first start, and in-memory ones again after a restart."""
        restarted = {c for c in GCP_COMPONENTS if c in wanted and c in started}
        if restarted or any(c in wanted and not (self.marker_dir / c).exists() for c in GCP_COMPONENTS):
            from runbook.sandbox import seed_gcp

            seed_gcp.seed(self, wanted, restarted=restarted)

    def down(self) -> list[str]:
        """Stop every component; return the names stopped."""
        stopped = []
        pg = self.postgres()
        if pg.is_running() or pg.postmaster_pid() is not None:
            pg.stop()
            stopped.append("postgres")
        for server in self._servers(ALL) + [self.bigtable_proxy(r) for r in REGIONS]:
            if server.pid is not None or server.pid_path.exists():
                server.stop()
                stopped.append(server.name)
        # Temporary PITR servers started by playbooks live under backups/pitr.
        from runbook.sandbox.postgres import PostgresCluster

        pitr = self.backups / "pitr"
        if pitr.exists():
            for d in pitr.iterdir():
                if (d / "data" / "postmaster.pid").exists():
                    PostgresCluster(d).stop()
                    stopped.append(f"pitr:{d.name}")
        return stopped

    def status(self) -> list[ComponentStatus]:
        out = []
        pg = self.postgres()
        out.append(
            ComponentStatus(
                "postgres",
                pg.is_running(),
                pg.port if pg.is_initialized() else None,
                pg.postmaster_pid(),
                f"databases {PG_DATABASE}, {PG_STAGING}; WAL archive {pg.archive_dir}",
                _du(pg.data_dir),
            )
        )
        out.append(
            ComponentStatus(
                "storage",
                self.storage_root.exists(),
                None,
                None,
                str(self.storage_root),
                _du(self.storage_root),
            )
        )
        out.append(
            ComponentStatus(
                "backups", self.backups.exists(), None, None, str(self.backups), _du(self.backups)
            )
        )
        for server in (
            self._servers(("bigquery", "pubsub"))
            + [s for r in REGIONS for s in (self.bigtable_emulator(r), self.bigtable_proxy(r))]
            + self._servers(("dataflow", "slack"))
        ):
            name = server.name
            if name in ("bigtable", "bigtable-backup"):
                name = f"{name} ({server.directory.name.removeprefix('bigtable-')})"
            running = server.is_healthy()
            out.append(
                ComponentStatus(
                    name,
                    running,
                    server.port if server.port_path.exists() else None,
                    server.pid,
                    "",
                    _du(server.directory),
                )
            )
        return out

    def summary(self) -> str:
        parts = self.status()
        running = [s.name for s in parts if s.running and s.port]
        pg = parts[0]
        if not pg.running and not running:
            return "down"
        return f"up ({', '.join(running)})" if running else "storage only"

    # -- seeding -----------------------------------------------------------------------------------

    def _seed_postgres(self, pg: Any) -> None:
        from runbook.sandbox.seed import seed_postgres

        marker = self.marker_dir / "postgres"
        if marker.exists():
            return
        for db in (PG_DATABASE, PG_STAGING):
            pg.create_database(db)
        counts = seed_postgres(pg.dsn(PG_DATABASE))
        marker.write_text(json.dumps(counts))

    def _backup_dirs(self) -> None:
        for d in ("database", "storage", "pitr", "bigtable", "pipeline", "evidence"):
            (self.backups / d).mkdir(parents=True, exist_ok=True)

    def _seed_storage(self) -> None:
        from runbook.sandbox.seed import seed_storage

        marker = self.marker_dir / "storage"
        if marker.exists() and self.storage_root.exists():
            return
        counts = seed_storage(self.storage_root)
        marker.write_text(json.dumps(counts))

    def _seed_git(self) -> None:
        from runbook.sandbox.seed import seed_git

        marker = self.marker_dir / "git"
        if marker.exists() and (self.config_repo / ".git").exists():
            return
        seed_git(self.config_repo, self.base / "config-remote.git")
        marker.write_text("ok")

    # -- environment -------------------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"updated": time.time()}
        (self.base / "state.json").write_text(json.dumps(state))

    def stores(self) -> dict[str, dict[str, Any]]:
        """Store settings for the sandbox environment (cheap: reads port files, starts nothing)."""
        return store_settings(self.base, self.storage_root, self.backups, self.config_repo)


def components_for(action_names: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for name in action_names:
        out.update(ACTION_COMPONENTS.get(name.split(".")[0], ()))
    return out


def playbook_components(playbook: Any) -> set[str]:
    """Components a playbook (its steps and drill scenario) needs."""
    if playbook is None:
        return set()
    names = [s.run for s in playbook.steps if s.run]
    if playbook.scenario is not None:
        sc = playbook.scenario
        names += [s.run for s in (*sc.setup, *sc.break_, *sc.verify) if s.run]
    return components_for(names)


def status_summary() -> str:
    """One line for the TUI header: which sandbox stores run."""
    try:
        return Sandbox().summary()
    except (OSError, SandboxError) as exc:
        return f"unknown ({exc})"
