"""``postgres.prune_dumps``: the dump directory's retention (never the newest dump)."""

from __future__ import annotations

import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from runbook.actions.params import Retention, seconds
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

from .names import DumpPrefix


class PruneDumpsParams(Retention):
    directory: str
    """The dump directory."""
    prefix: DumpPrefix = Field("varlor_db_", description="Only files whose name starts with this.")


class PruneDumpsOutputs(ActionOutputs):
    deleted: list[str]
    """Names deleted (with dry_run: names that would be)."""
    kept: int
    """How many dumps remain."""


def _describe(params: PruneDumpsParams) -> str:
    age = seconds(params.older_than)
    older = f"-mtime +{age / 86400:g}" if age % 86400 == 0 else f"-mmin +{age / 60:g}"
    verb = "-print" if params.dry_run else "-delete"
    return (f"find {shlex.quote(os.path.abspath(params.directory))} -maxdepth 1 -type f -name "
            f"'{params.prefix}*' ! -name '*.sha256' {older} {verb} "
            f"(and each NAME.sha256), keeping the newest {params.keep_latest} dump(s)")


def _dumps(directory: Path, prefix: str) -> list[tuple[float, str]]:
    """(mtime, name) of every dump with ``prefix`` (not checksum files, temporary files or symlinks)."""
    dumps = []
    for entry in os.scandir(directory):
        if (entry.name.startswith(prefix) and not entry.name.endswith((".sha256", ".tmp"))
                and entry.is_file(follow_symlinks=False)):
            dumps.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    return dumps


@action("postgres.prune_dumps", Effect.DESTRUCTIVE,
        "Delete dumps (and their .sha256) older than the retention; never the newest.",
        target=lambda p: os.path.abspath(p.directory), describe=_describe)
def prune_dumps(ctx: StepContext, params: PruneDumpsParams) -> PruneDumpsOutputs:
    directory = Path(params.directory)
    if not directory.is_dir():
        raise ActionError(f"Dump directory not found: {directory}.")
    dumps = _dumps(directory, params.prefix)
    delete, keep = params.split(dumps, taken=lambda d: datetime.fromtimestamp(d[0], UTC))
    deleted = []
    for mtime, name in reversed(delete):  # oldest first
        age = format_duration(time.time() - mtime)
        if params.dry_run:
            ctx.log(f"would delete {name} ({age} old) and its .sha256")
        else:
            (directory / name).unlink(missing_ok=True)
            (directory / f"{name}.sha256").unlink(missing_ok=True)
            ctx.log(f"deleted {name} ({age} old) and its .sha256")
        deleted.append(name)
    if params.dry_run:
        ctx.log(f"would delete {len(deleted)} dump(s) older than {params.older_than}; would keep {len(keep)}")
        return PruneDumpsOutputs(deleted=deleted, kept=len(dumps))
    ctx.log(f"deleted {len(deleted)} dump(s) older than {params.older_than}; kept {len(keep)}")
    return PruneDumpsOutputs(deleted=deleted, kept=len(keep))
