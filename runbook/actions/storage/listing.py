"""``storage.list_snapshots``: the snapshots, oldest first (by when they completed), and `latest`."""

from __future__ import annotations

import os
import shlex
import time

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.storage.layout import Pattern, absolute, latest_target, snapshot_dirs
from runbook.actions.storage.manifest import find_manifest
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class ListSnapshotsParams(ActionParams):
    backups: str
    """Directory holding the snapshots."""
    pattern: Pattern = Field("*", description="Name glob, e.g. backup_* or pre_deployment_*.")


class ListSnapshotsOutputs(ActionOutputs):
    latest: str
    """Name `latest` points to ('' if none)."""
    newest: str
    """The newest snapshot's name ('' if none)."""
    count: int
    """How many snapshots."""
    names: list[str]
    """Their names, oldest first."""


@action(
    "storage.list_snapshots",
    Effect.READ_ONLY,
    "List the storage snapshots, oldest first, and which one `latest` is.",
    target=lambda p: os.path.abspath(p.backups),
    describe=lambda p: f"ls -ldtr {shlex.quote(os.path.join(os.path.abspath(p.backups), p.pattern))}",
)
def list_snapshots(ctx: StepContext, params: ListSnapshotsParams) -> ListSnapshotsOutputs:
    backups = os.path.realpath(absolute(params.backups, "backups"))
    if not os.path.isdir(backups):
        raise ActionError(f"Backups directory not found: {backups}.")
    snaps = snapshot_dirs(backups, params.pattern)
    latest = latest_target(backups) or ""
    now = time.time()
    for mtime, name in snaps:
        marks = []
        if name == latest:
            marks.append("latest")
        if find_manifest(os.path.join(backups, name)) is None:
            marks.append("no manifest")
        suffix = f"  ({', '.join(marks)})" if marks else ""
        ctx.log(f"{name}  {format_duration(now - mtime)} old{suffix}")
    ctx.log(
        f"{len(snaps)} snapshot(s) in {backups}" + (f"; latest → {latest}" if latest else "; no `latest`")
    )
    names = [n for _, n in snaps]
    return ListSnapshotsOutputs(
        latest=latest, newest=names[-1] if names else "", count=len(names), names=names
    )
