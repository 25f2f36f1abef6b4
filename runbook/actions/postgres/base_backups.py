"""``postgres.base_backup``: the starting point of point-in-time recovery (pg_basebackup, tar format)."""

from __future__ import annotations

import os
import shlex
import shutil

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.fs import human_bytes
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.timestamps import stamp, utc_now

from .cluster import pitr_dir
from .common import run, settings, unique_path
from .names import BackupLabel


class BaseBackupParams(ActionParams):
    directory: str | None = Field(None, description="Where base backups go (default: the store's pitr_dir).")
    label: BackupLabel | None = Field(None, description="Backup label (default runbook_<UTC timestamp>).")
    compress: bool = Field(True, description="gzip the tar files (pg_basebackup --gzip).")


class BaseBackupOutputs(ActionOutputs):
    path: str
    """The base backup directory (base.tar.gz, pg_wal.tar.gz, backup_manifest)."""
    label: str
    """Its label."""
    start_time: str
    """UTC ISO time the backup started."""
    end_time: str
    """UTC ISO time it finished (recover to a time after this)."""
    size: int
    """Bytes."""


def _argv(program: str, dest: str, label: str, compress: bool) -> list[str]:
    argv = [program, f"--pgdata={dest}", "--format=tar", "--wal-method=stream", "--checkpoint=fast",
            f"--label={label}", "--no-password", "--verbose"]
    return [*argv, "--gzip"] if compress else argv


def _describe(params: BaseBackupParams) -> str:
    base = os.path.join(params.directory or "<pitr_dir>", "base_<UTC YYYYmmdd_HHMMSS>")
    argv = _argv("pg_basebackup", base + ".tmp", params.label or "runbook_<UTC YYYYmmdd_HHMMSS>", params.compress)
    return f"{shlex.join(argv)}; rename → {base}"


@action("postgres.base_backup", Effect.MUTATING,
        "Take a base backup (pg_basebackup, tar format, WAL streamed) for point-in-time recovery.",
        target=lambda p: p.directory or "pitr_dir", describe=_describe)
def base_backup(ctx: StepContext, params: BaseBackupParams) -> BaseBackupOutputs:
    st = settings(ctx)
    parent = pitr_dir(st, params.directory, "base backups")
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = utc_now()
    final = unique_path(parent, f"base_{stamp(start)}")
    tmp = parent / f".{final.name}.tmp"
    label = params.label or f"runbook_{stamp(start)}"
    # pg_basebackup is a client: tar format means the files' ownership does not matter, so it
    # runs as us; pitr_restore hands the unpacked data directory to the server's user.
    argv = _argv(st.program("pg_basebackup"), str(tmp), label, params.compress)
    ctx.log(f"base backup of {st.address} into {final} (label {label})")
    try:
        run(ctx, st, argv, what="pg_basebackup", database=st.maintenance_database)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    end = utc_now()
    size = sum(p.stat().st_size for p in final.iterdir() if p.is_file())
    ctx.log(f"base backup {final} done: {human_bytes(size)} in {format_duration((end - start).total_seconds())}")
    return BaseBackupOutputs(path=str(final), label=label, start_time=start.isoformat(), end_time=end.isoformat(),
                             size=size)
