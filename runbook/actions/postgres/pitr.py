"""``postgres.pitr_restore``: point-in-time recovery into a NEW data directory and a temporary server.

A ``pg_basebackup`` (tar format, gzip) is restored next to the base backups, replays the WAL
archive up to ``target_time`` and is promoted on a free port; the source cluster is not touched.
``postgres.stop_cluster`` stops the temporary server afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shlex
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.procs import free_port
from runbook.core.timestamps import parse_utc, stamp, utc_now
from runbook.stores.postgres import PostgresSettings

from .cluster import (
    configure_recovery,
    hand_over,
    log_fatal,
    newest_base_backup,
    pg_ctl_start,
    pg_ctl_stop,
    pitr_dir,
    recovery_summary,
    untar,
    wait_promoted,
)
from .common import chosen_tables, connect, count_rows, settings, unique_path
from .names import DbParams

_SOCKET_PATH_ROOM = 100  # a Unix socket path is limited to 107 bytes


def _target_time(value: str) -> datetime:
    """An ISO timestamp, UTC when it has no offset.

    Raises:
        ValueError: Not an ISO timestamp.
    """
    try:
        return parse_utc(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO timestamp such as 2025-11-23T10:30:00Z.") from None


def _check_target_time(value: str) -> str:
    _target_time(value)
    return value


class PitrParams(DbParams):
    target_time: Annotated[str, AfterValidator(_check_target_time)]
    """Recover up to this ISO time (UTC when it has no offset)."""
    backup: str | None = Field(None, description="Base backup directory (default: the newest base_* in pitr_dir).")
    wal_archive: str | None = Field(None, description="WAL archive directory (default: the store's wal_archive).")
    directory: str | None = Field(None, description="Parent of the new cluster directory (default: pitr_dir).")
    port: int | None = Field(None, ge=1, le=65535, description="Port of the temporary server (default: a free one).")
    database: str | None = Field(None, description="Database whose rows are counted (default: the store's).")
    tables: list[str] | None = Field(None, description="Tables to count (default: every user table).")
    wait_seconds: float = Field(600, gt=0, description="How long recovery may take.")


class PitrOutputs(ActionOutputs):
    data_dir: str
    """The new data directory."""
    port: int
    """Port of the temporary server (on 127.0.0.1)."""
    dsn: str
    """Its connection string (no password)."""
    counts: dict[str, int]
    """Rows per table after recovery."""
    recovered_to: str
    """What the server log says recovery stopped at."""
    target_time: str
    """The recovery target, as written to the configuration."""


def _describe(params: PitrParams) -> str:
    when = _target_time(params.target_time).isoformat(sep=" ")
    archive = shlex.quote(params.wal_archive) if params.wal_archive else "<wal_archive>"
    return (f"untar {params.backup or '<newest base backup>'} into {params.directory or '<pitr_dir>'}/pitr_<ts>/data; "
            f"recovery.signal; restore_command = 'cp {archive}/%f %p', recovery_target_time = "
            f"'{when}', recovery_target_action = 'promote' in postgresql.auto.conf; "
            f"pg_ctl start on 127.0.0.1:{params.port or '<free port>'}; wait until pg_is_in_recovery() is false")


@dataclasses.dataclass(frozen=True)
class _Sources:
    backup: Path  # the base backup directory
    base_tar: Path  # its base.tar(.gz)
    archive: Path  # the WAL archive


def _sources(st: PostgresSettings, params: PitrParams) -> _Sources:
    backup = Path(params.backup).absolute() if params.backup else newest_base_backup(pitr_dir(st, None, "base backups"))
    base_tar = next((backup / n for n in ("base.tar.gz", "base.tar") if (backup / n).is_file()), None)
    if base_tar is None:
        raise ActionError(f"No base.tar(.gz) in {backup}: it is not a pg_basebackup tar-format backup.")
    archive_value = params.wal_archive or st.wal_archive
    if not archive_value:
        raise ActionError("No WAL archive: pass wal_archive in the step or set wal_archive in the postgres store.")
    archive = Path(archive_value).absolute()
    if not archive.is_dir():
        raise ActionError(f"WAL archive directory not found: {archive}.")
    return _Sources(backup, base_tar, archive)


def _new_cluster_dirs(parent: Path) -> tuple[Path, Path, Path]:
    """(cluster directory, its data directory, its socket directory), created."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = unique_path(parent, f"pitr_{stamp()}")
    data = base / "data"
    run_dir = base / "run"
    if len(str(run_dir / ".s.PGSQL.65535.lock")) > _SOCKET_PATH_ROOM:
        # Deep directories get a short socket directory instead.
        run_dir = Path(tempfile.gettempdir()) / f"runbook-pitr-{hashlib.sha1(str(base).encode()).hexdigest()[:12]}"
    data.mkdir(parents=True, mode=0o700)
    run_dir.mkdir(parents=True, exist_ok=True)
    return base, data, run_dir


def _unpack(ctx: StepContext, src: _Sources, data: Path) -> None:
    ctx.log(f"unpacking {src.base_tar} into {data}")
    untar(src.base_tar, data)
    wal_tar = next((src.backup / n for n in ("pg_wal.tar.gz", "pg_wal.tar") if (src.backup / n).is_file()), None)
    if wal_tar is not None:
        untar(wal_tar, data / "pg_wal")
    extra = sorted(p.name for p in src.backup.glob("*.tar*") if not p.name.startswith(("base.", "pg_wal.")))
    if extra:
        raise ActionError(f"The base backup {src.backup} has tablespace archives ({', '.join(extra)}), "
                          "which pitr_restore does not support.")
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (data / stale).unlink(missing_ok=True)


def _prepare(ctx: StepContext, st: PostgresSettings, params: PitrParams, when: datetime) -> tuple[Path, int, str]:
    """Unpack and configure the new cluster, owned by the server's user: (data directory, port, database)."""
    parent = pitr_dir(st, params.directory, "the recovered cluster")
    src = _sources(st, params)
    db = st.pick_database(params.database)  # before anything is unpacked
    user = st.system_user()
    base, data, run_dir = _new_cluster_dirs(parent)
    _unpack(ctx, src, data)
    port = params.port or free_port()
    configure_recovery(ctx, data, run_dir, src.archive, when, port)
    os.chmod(data, 0o700)
    (base / "server.log").touch()
    (base / "port").write_text(f"{port}\n")  # same layout as the sandbox cluster: `sandbox down` stops it
    hand_over(base, user, ctx.log)
    if not run_dir.is_relative_to(base):
        hand_over(run_dir, user, ctx.log)
    return data, port, db


def _recover(
    ctx: StepContext, st: PostgresSettings, params: PitrParams, data: Path, port: int, db: str
) -> tuple[str, dict[str, int]]:
    """Start the server, wait for promotion, count rows: (what recovery stopped at, counts).

    On any failure the temporary server is stopped and the server log's FATAL line is added.
    """
    log_path = data.parent / "server.log"
    try:
        pg_ctl_start(ctx, st, data, log_path, params.wait_seconds)
        local = dataclasses.replace(st, host="127.0.0.1", port=port)
        wait_promoted(ctx, local, data, params.wait_seconds)
        recovered_to = recovery_summary(log_path)
        ctx.log(f"recovery finished: {recovered_to or 'promoted'}")
        with connect(local, db) as conn:
            counts = count_rows(conn, chosen_tables(conn, params.tables, db), ctx.log)
    except BaseException as exc:
        ctx.log("stopping the temporary server after the failure")
        with contextlib.suppress(Exception):
            pg_ctl_stop(ctx, st, data, "immediate", 30.0, quiet=True)
        if isinstance(exc, ActionError):
            detail = log_fatal(log_path)
            if detail and detail not in str(exc):
                raise ActionError(f"{str(exc).rstrip('.')} (server log: {detail}).") from None
        raise
    return recovered_to, counts


# What the operator must be sure of: the point in time the data goes back to.
@action("postgres.pitr_restore", Effect.DESTRUCTIVE,
        "Point-in-time recovery into a new data directory and a temporary server; counts rows.",
        target=lambda p: p.target_time, describe=_describe)
def pitr_restore(ctx: StepContext, params: PitrParams) -> PitrOutputs:
    st = settings(ctx)
    when = _target_time(params.target_time)
    if when > utc_now():
        raise ActionError(f"The recovery target {when.isoformat()} is in the future: "
                          "pick a time already in the WAL archive.")
    data, port, db = _prepare(ctx, st, params, when)
    ctx.log(f"starting a temporary server on 127.0.0.1:{port} to replay WAL up to {when.isoformat()}")
    recovered_to, counts = _recover(ctx, st, params, data, port, db)
    return PitrOutputs(data_dir=str(data), port=port, dsn=f"host=127.0.0.1 port={port} user={st.user} dbname={db}",
                       counts=counts, recovered_to=recovered_to, target_time=when.isoformat(sep=" "))
