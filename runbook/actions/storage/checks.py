"""Checks of the backups directory: the newest snapshot is recent (``storage.check_recent``) and of a
plausible size (``storage.check_size``)."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from pydantic import Field

from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.storage.layout import (
    LATEST,
    Pattern,
    SnapshotSpec,
    absolute,
    latest_target,
    resolve_snapshot,
    snapshot_dirs,
)
from runbook.actions.storage.manifest import find_manifest
from runbook.actions.support.fs import human_bytes, tree_size
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

# --- storage.check_recent ------------------------------------------------------------------


class CheckRecentParams(ActionParams):
    backups: str
    """Directory holding the snapshots."""
    max_age: Duration = Field("24h", description="Fail if the newest snapshot is older, e.g. 24h.")
    pattern: Pattern = Field("backup_*", description="Snapshots considered when `latest` is missing.")


class CheckRecentOutputs(ActionOutputs):
    path: str
    """The newest snapshot."""
    name: str
    """Its name."""
    age_seconds: float
    """Its age."""
    complete: bool
    """true when it has a manifest."""


def _newest(backups: str, pattern: str) -> str:
    """The newest snapshot: ``latest`` if it is valid, else the newest match (by mtime)."""
    snaps = snapshot_dirs(backups, pattern)
    name = latest_target(backups)
    if name is None:
        if not snaps:
            raise ActionError(f"No storage snapshot in {backups}: neither `latest` nor {pattern} exists.")
        name = snaps[-1][1]
    return name


def _describe_recent(params: CheckRecentParams) -> str:
    latest = shlex.quote(os.path.join(os.path.abspath(params.backups), LATEST))
    return f"find $(readlink -f {latest}) -maxdepth 0 -newermt '-{params.max_age}'"


@action("storage.check_recent", Effect.READ_ONLY, "Fail unless the newest storage snapshot is younger than max_age.",
        target=lambda p: os.path.abspath(p.backups), describe=_describe_recent)
def check_recent(ctx: StepContext, params: CheckRecentParams) -> CheckRecentOutputs:
    backups = os.path.realpath(absolute(params.backups, "backups"))
    name = _newest(backups, params.pattern)
    path = os.path.join(backups, name)
    age = max(0.0, time.time() - os.lstat(path).st_mtime)
    complete = find_manifest(path) is not None
    ctx.log(f"newest snapshot: {name}, {format_duration(age)} old (limit {params.max_age})")
    if not complete:
        ctx.log(f"WARNING: {name} has no manifest (.runbook-manifest.*); it cannot be verified")
    if age > seconds(params.max_age):
        raise ActionError(
            f"The newest storage snapshot {name} is {format_duration(age)} old, older than {params.max_age}."
        )
    return CheckRecentOutputs(path=path, name=name, age_seconds=round(age, 1), complete=complete)


# --- storage.check_size --------------------------------------------------------------------


class CheckSizeParams(ActionParams):
    backups: str
    """Directory holding the snapshots."""
    snapshot: SnapshotSpec = Field(LATEST, description="The snapshot to check (default: `latest`).")
    pattern: Pattern = Field("backup_*", description="Snapshots considered as the previous one.")
    min_bytes: int = Field(1, ge=0, description="Fail when smaller (an empty snapshot is always suspicious).")
    max_change: float = Field(
        0.5, gt=0, description="Fail when it differs from the previous snapshot by more than this fraction."
    )
    warn_only: bool = Field(False, description="Log a WARNING instead of failing.")


class CheckSizeOutputs(ActionOutputs):
    name: str
    """The snapshot checked."""
    size: int
    """Its bytes."""
    previous: str
    """The snapshot compared with ('' if none)."""
    previous_size: int
    """Its bytes (0 if none)."""
    change: float
    """Relative size change (0.1 = 10%)."""
    ok: bool
    """true when within bounds."""


def _size_target(params: CheckSizeParams) -> str:
    return os.path.join(os.path.abspath(params.backups), params.snapshot)


def _previous(backups: str, snap: str, pattern: str) -> str:
    """The newest other snapshot that completed no later than ``snap`` ('' when there is none)."""
    name, completed = os.path.basename(snap), os.lstat(snap).st_mtime
    others = [n for m, n in snapshot_dirs(backups, pattern) if n != name and m <= completed]
    return others[-1] if others else ""


@action("storage.check_size", Effect.READ_ONLY,
        "Size sanity of a snapshot: not empty, and not far from the previous snapshot's size.",
        target=_size_target, describe=lambda p: f"du -sb {shlex.quote(_size_target(p))} (and the previous snapshot)")
def check_size(ctx: StepContext, params: CheckSizeParams) -> CheckSizeOutputs:
    backups = os.path.realpath(absolute(params.backups, "backups"))
    snap = resolve_snapshot(backups, params.snapshot)
    name = os.path.basename(snap)
    size = tree_size(Path(snap))
    ctx.log(f"{name}: {human_bytes(size)} ({size} bytes)")
    previous = _previous(backups, snap, params.pattern)
    prev_size, change = 0, 0.0
    problems: list[str] = []
    if size < params.min_bytes:
        problems.append(
            f"Snapshot {name} is suspiciously small ({size} bytes, expected at least {params.min_bytes})"
        )
    if previous:
        prev_size = tree_size(Path(backups, previous))
        ctx.log(f"previous {previous}: {human_bytes(prev_size)} ({prev_size} bytes)")
        change = (size - prev_size) / prev_size if prev_size > 0 else 0.0
        if abs(change) > params.max_change:
            how = "shrank" if change < 0 else "grew"
            limit = f"limit {params.max_change:.0%}"
            problems.append(f"Snapshot {name} {how} by {abs(change):.0%} compared with {previous} ({limit})")
    else:
        ctx.log("no previous snapshot to compare with")
    for p in problems:
        ctx.log(f"WARNING: {p}")
    if problems and not params.warn_only:
        raise ActionError(problems[0] + ".")
    ok = not problems
    return CheckSizeOutputs(
        name=name, size=size, previous=previous, previous_size=prev_size, change=round(change, 4), ok=ok
    )
