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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.core.paths import home
from runbook.sandbox.procs import ManagedProcess, SandboxError, start_all

PROJECT = "runbook-sandbox"
REGIONS = ("us-central1", "europe-west1")
SLACK_TOKEN_ENV = "RUNBOOK_SANDBOX_SLACK_TOKEN"
SLACK_TOKEN = "xoxb-sandbox-0000-runbook"  # a fake token for the local Slack server only
PG_DATABASE = "varlor"
PG_STAGING = "varlor_staging"

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

    def bigtable_proxy(self, region: str) -> ManagedProcess:
        emulator = self.bigtable_emulator(region)
        directory = self.base / f"bigtable-{region}"
        return ManagedProcess(
            "bigtable-backup",
            directory,
            lambda p: [
                sys.executable, "-m", "runbook.sandbox.bigtable_backup",
                "--upstream", emulator.address, "--port", str(p), "--state-dir", str(directory / "backups"),
            ],  # fmt: skip
            ready_timeout=30.0,
        )

    def dataflow(self) -> ManagedProcess:
        from runbook.sandbox.procs import http_probe

        directory = self.base / "dataflow"
        return ManagedProcess(
            "dataflow",
            directory,
            lambda p: [
                sys.executable, "-m", "runbook.sandbox.dataflow",
                "--port", str(p), "--state-dir", str(directory / "state"), "--transition-delay", "0.3",
            ],  # fmt: skip
            probe=http_probe("/_control/health"),
            ready_timeout=30.0,
        )

    def slack(self) -> ManagedProcess:
        directory = self.base / "slack"
        return ManagedProcess(
            "slack",
            directory,
            lambda p: [
                sys.executable, "-m", "runbook.sandbox.slack",
                "--port", str(p), "--state-dir", str(directory / "state"),
                "--token", SLACK_TOKEN, "--channel", "incidents", "--channel", "security",
            ],  # fmt: skip
            ready_timeout=30.0,
        )

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
            raise SandboxError(f"The sandbox under {self.base} could not be prepared: {exc.strerror or exc}.") from None

    def _ensure(self, components: Iterable[str]) -> dict[str, float]:
        wanted = [c for c in ALL if c in set(components)]
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        begin = time.monotonic()
        took: dict[str, float] = {}
        pg = self.postgres() if "postgres" in wanted else None
        pg_started = False
        pg_errors: list[BaseException] = []
        pg_thread = None
        if pg is not None and not pg.is_running():

            def start_postgres() -> None:
                # initdb takes about a second: run it while the emulators start.
                try:
                    pg.init(wal_archiving=True, archive_timeout=5, extra_settings={"fsync": "off", "full_page_writes": "on"})
                    pg.stop()  # clears a crashed server's leftovers
                    pg.start()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    pg_errors.append(exc)

            pg_thread = threading.Thread(target=start_postgres, name="sandbox-postgres", daemon=True)
            pg_thread.start()
            pg_started = True
        servers = self._servers(wanted)
        try:
            started = start_all(servers)
        finally:
            if pg_thread is not None:
                pg_thread.join()
        if pg_errors:
            raise pg_errors[0]
        took.update(started)
        if "bigtable" in wanted:
            proxies = [self.bigtable_proxy(r) for r in REGIONS]
            restarted_emulators = any(k == "bigtable" for k in started)
            if restarted_emulators:
                for p in proxies:
                    p.stop()  # proxies follow their emulator
            took.update({f"bigtable-backup-{k}": v for k, v in start_all(proxies).items()})
        if pg is not None:
            if pg_started:
                pg.wait_ready(30)
                took["postgres"] = time.monotonic() - begin
            self._seed_postgres(pg)
        self._backup_dirs()
        if "storage" in wanted:
            self._seed_storage()
        if "git" in wanted:
            self._seed_git()
        # In-memory emulators lose their data when restarted: seed them again.
        gcp_restarted = {c for c in ("bigquery", "pubsub", "bigtable", "dataflow") if c in wanted and (c in started or (c == "bigtable" and "bigtable" in started))}
        if gcp_restarted or any(c in wanted and not (self.marker_dir / c).exists() for c in ("bigquery", "pubsub", "bigtable", "dataflow")):
            from runbook.sandbox import seed_gcp

            seed_gcp.seed(self, wanted, restarted=gcp_restarted)
        self._write_state()
        return took

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
        out.append(ComponentStatus("storage", self.storage_root.exists(), None, None, str(self.storage_root), _du(self.storage_root)))
        out.append(ComponentStatus("backups", self.backups.exists(), None, None, str(self.backups), _du(self.backups)))
        for server in self._servers(("bigquery", "pubsub")) + [
            s for r in REGIONS for s in (self.bigtable_emulator(r), self.bigtable_proxy(r))
        ] + self._servers(("dataflow", "slack")):
            name = server.name
            if name in ("bigtable", "bigtable-backup"):
                name = f"{name} ({server.directory.name.removeprefix('bigtable-')})"
            running = server.is_healthy()
            out.append(ComponentStatus(name, running, server.port if server.port_path.exists() else None, server.pid, "", _du(server.directory)))
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
        import subprocess

        marker = self.marker_dir / "git"
        if marker.exists() and (self.config_repo / ".git").exists():
            return
        remote = self.base / "config-remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
        self.config_repo.mkdir(parents=True, exist_ok=True)
        git = ["git", "-C", str(self.config_repo), "-c", "user.name=runbook sandbox", "-c", "user.email=sandbox@runbook.invalid"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        (self.config_repo / "pipeline.yaml").write_text("pipeline: ecommerce\nregion: us-central1\nworkers: 3\n")
        (self.config_repo / "deploy.env").write_text("DATASET=ecommerce\nBIGTABLE_INSTANCE=ecommerce\n")
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "Initial configuration"], check=True)
        subprocess.run([*git, "remote", "add", "origin", str(remote)], check=False)
        subprocess.run([*git, "push", "-q", "origin", "main"], check=True)
        marker.write_text("ok")

    # -- environment -------------------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"updated": time.time()}
        (self.base / "state.json").write_text(json.dumps(state))

    def stores(self) -> dict[str, dict[str, Any]]:
        """Store settings for the sandbox environment (cheap: reads port files, starts nothing)."""
        from runbook.sandbox.postgres import PostgresCluster, is_root

        pg = PostgresCluster(self.base / "postgres")
        stores: dict[str, dict[str, Any]] = {
            "postgres": {
                "host": pg.host,
                "port": pg.port,
                "user": "postgres",
                "database": PG_DATABASE,
                "staging_database": PG_STAGING,
                "data_dir": str(pg.data_dir),
                "wal_archive": str(pg.archive_dir),
                "pitr_dir": str(self.backups / "pitr"),
                **({"run_as": "postgres"} if is_root() else {}),
            },
            "storage": {"root": str(self.storage_root), "backups": str(self.backups / "storage")},
            "files": {"backups": str(self.backups), "db_backups": str(self.backups / "database"), "pipeline": str(self.backups / "pipeline"), "bigtable": str(self.backups / "bigtable")},
            "git": {"repo": str(self.config_repo), "remote": "origin"},
        }
        gcp: dict[str, Any] = {
            "project": PROJECT,
            "region": REGIONS[0],
            "secondary_region": REGIONS[1],
            "dataset": "ecommerce",
            "bigtable_instance": "ecommerce",
            "bigtable_cluster": "ecommerce-c1",
            "bigtable_table": "product_stats",
            "pubsub_topic": "ecommerce-events",
            "pubsub_subscription": "ecommerce-events-dataflow",
            "dataflow_job_name": "ecommerce-streaming",
            "template": "gs://runbook-sandbox-templates/ecommerce-streaming.json",
        }
        port = _port_of(self.base / "bigquery" / "bigquery.port")
        if port:
            gcp["bigquery_endpoint"] = f"http://127.0.0.1:{port}"
        port = _port_of(self.base / "pubsub" / "pubsub.port")
        if port:
            gcp["pubsub_host"] = f"127.0.0.1:{port}"
        for region in REGIONS:
            port = _port_of(self.base / f"bigtable-{region}" / "bigtable-backup.port")
            if port:
                gcp[f"bigtable_host_{region.replace('-', '_')}"] = f"127.0.0.1:{port}"
        port = _port_of(self.base / "dataflow" / "dataflow.port")
        if port:
            gcp["dataflow_endpoint"] = f"http://127.0.0.1:{port}"
        stores["gcp"] = gcp
        port = _port_of(self.base / "slack" / "slack.port")
        if port:
            os.environ.setdefault(SLACK_TOKEN_ENV, SLACK_TOKEN)
            stores["slack"] = {"base_url": f"http://127.0.0.1:{port}/api/", "channel": "#incidents", "security_channel": "#security", "token_env": SLACK_TOKEN_ENV}
        return stores


def _port_of(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


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
