"""``storage.prune``: delete old snapshots, never the newest ones and never ``latest``'s.

Ages come from each snapshot directory's mtime (when it completed), not from its name, so
snapshots named in local time by older versions are pruned by their true age.
"""

from __future__ import annotations

import os
import shlex
import shutil

from pydantic import Field

from runbook.actions.params import Retention, seconds
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.storage.layout import (
    Pattern,
    absolute,
    backups_lock,
    latest_target,
    snapshot_dirs,
    taken,
)
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import utc_now


class PruneParams(Retention):
    backups: str
    """Directory holding the snapshots."""
    pattern: Pattern = Field("backup_*", description="Which snapshots may be deleted (a name glob).")


class PruneOutputs(ActionOutputs):
    deleted: list[str]
    """Names deleted (with dry_run: names that would be)."""
    kept: list[str]
    """Names of the matching snapshots kept."""
    dry_run: bool
    """true when nothing was deleted on purpose."""


def _describe(params: PruneParams) -> str:
    backups = shlex.quote(os.path.abspath(params.backups))
    deletes = "-print" if params.dry_run else "-exec rm -rf {} +"
    minutes = int(seconds(params.older_than) // 60)
    return (
        f"find {backups} -maxdepth 1 -type d -name {shlex.quote(params.pattern)} -mmin +{minutes} "
        f"{deletes} (never `latest`'s target, keeping the newest {params.keep_latest})"
    )


def _delete(ctx: StepContext, backups: str, name: str, age: str) -> None:
    path = os.path.join(backups, name)
    if os.path.dirname(os.path.realpath(path)) != backups or os.path.islink(path):
        raise ActionError(f"{path} is not a snapshot directory inside {backups}; refusing to delete it.")
    ctx.log(f"delete {name}  {age} old")
    try:
        shutil.rmtree(path)  # does not follow symlinks inside the snapshot
    except OSError as exc:
        raise ActionError(f"Cannot delete {path}: {exc.strerror}.") from None


@action("storage.prune", Effect.DESTRUCTIVE, "Delete snapshots older than the retention period (never `latest`'s).",
        target=lambda p: os.path.abspath(p.backups), describe=_describe)
def prune_snapshots(ctx: StepContext, params: PruneParams) -> PruneOutputs:
    backups = os.path.realpath(absolute(params.backups, "backups"))
    if not os.path.isdir(backups):
        raise ActionError(f"Backups directory not found: {backups}.")
    now = utc_now()
    cutoff = params.cutoff(now)
    deleted: list[str] = []
    kept: list[str] = []
    with backups_lock(backups, "prune"):
        snaps = snapshot_dirs(backups, params.pattern)
        latest = latest_target(backups)
        doomed = {snap for snap in params.split(snaps, taken=taken, now=now)[0] if snap[1] != latest}
        for snap in snaps:  # oldest first
            name, age = snap[1], format_duration(now.timestamp() - snap[0])
            if snap not in doomed:
                kept.append(name)
                why = " (latest)" if name == latest else " (newest)" if taken(snap) < cutoff else ""
                ctx.log(f"keep   {name}  {age} old{why}")
            elif params.dry_run:
                deleted.append(name)
                ctx.log(f"would delete {name}  {age} old")
            else:
                _delete(ctx, backups, name, age)
                deleted.append(name)
    verb = "would delete" if params.dry_run else "deleted"
    ctx.log(f"{verb} {len(deleted)} snapshot(s) older than {params.older_than}; kept {len(kept)}")
    return PruneOutputs(deleted=deleted, kept=kept, dry_run=params.dry_run)
