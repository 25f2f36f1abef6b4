"""``storage.snapshot``: an incremental rsync snapshot (``--link-dest``) with its manifest.

A snapshot is copied into ``BACKUPS/.incomplete-NAME/`` and renamed to ``NAME`` only once rsync
succeeded and the manifest is written, so a killed run never leaves a ``backup_*`` that looks
complete. ``latest`` is replaced atomically (a new symlink renamed over the old one). Names are
``PREFIX_YYYYmmdd_HHMMSS`` in UTC.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.storage.copy import copy_into, snapshot_argv
from runbook.actions.storage.layout import (
    INCOMPLETE,
    LATEST,
    RECORDS,
    absolute,
    backups_lock,
    check_id,
    check_separate,
    latest_target,
    snapshot_dirs,
    unused_name,
)
from runbook.actions.storage.manifest import MANIFESTS, find_manifest
from runbook.actions.support.fs import human_bytes
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class SnapshotParams(ActionParams):
    root: str
    """The live storage tree, e.g. {{ env.storage.root }}."""
    backups: str = Field(
        description="Directory holding the snapshots and `latest`, e.g. {{ env.storage.backups }}."
    )
    tag: str | None = Field(
        None,
        description=(
            "Name prefix instead of 'backup', e.g. pre_deployment → pre_deployment_YYYYmmdd_HHMMSS."
        ),
    )
    name: str | None = Field(None, description="Exact snapshot name instead of PREFIX_YYYYmmdd_HHMMSS.")
    checksum: bool = Field(
        False, description="rsync --checksum: compare contents, not size and mtime, to decide what changed."
    )
    update_latest: bool = Field(True, description="Point `latest` at the new snapshot.")
    checksums: Literal["xxh128", "sha256"] = Field(
        "xxh128",
        description=(
            "Manifest digests: xxh128 (rsync's own whole-file checksum of each copied file, recorded "
            "at no extra cost) or sha256 (cryptographic; every copied file is read once more)."
        ),
    )

    @field_validator("tag", "name", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if v is None:
            return v
        text = check_id(v, "Snapshot")
        if text == LATEST:
            raise ValueError("a snapshot cannot be named 'latest'")
        return text

    @model_validator(mode="after")
    def _one_name(self) -> SnapshotParams:
        if self.tag and self.name:
            raise ValueError("give either tag or name, not both")
        return self


class SnapshotOutputs(ActionOutputs):
    path: str
    """The new snapshot directory."""
    name: str
    """Its name, e.g. backup_20251123_030000."""
    files: int
    """Regular files in it."""
    bytes: int
    """Their total size."""
    linked: int
    """Files hard-linked to (or copied from) the previous snapshot, unchanged."""
    new_files: int
    """Files copied from the live tree (new or changed)."""
    previous: str
    """The snapshot it was linked against ('' for the first)."""
    manifest: str
    """Path of its manifest (.runbook-manifest.xxh128 or .sha256)."""


def _previous(backups: str) -> str | None:
    """The snapshot to hard-link against: ``latest``, else the newest one that has a manifest."""
    name = latest_target(backups)
    if name:
        return name
    for _, candidate in reversed(snapshot_dirs(backups)):
        if find_manifest(os.path.join(backups, candidate)):
            return candidate
    return None


def _describe(params: SnapshotParams) -> str:
    backups = os.path.abspath(params.backups)
    prev = _previous(backups) if os.path.isdir(backups) else None
    name = params.name or f"{params.tag or 'backup'}_<YYYYmmdd_HHMMSS>"
    tmp = os.path.join(backups, INCOMPLETE + name)
    xxh128 = params.checksums == "xxh128"
    argv = snapshot_argv(
        os.path.abspath(params.root),
        tmp,
        os.path.join(backups, prev) if prev else None,
        params.checksum,
        xxh128,
    )
    then = f" > {shlex.quote(tmp + RECORDS)}" if xxh128 else ""
    then += f"; then write {MANIFESTS[params.checksums]}, rename to {name}"
    if params.update_latest:
        then += f" and point {os.path.join(backups, LATEST)} at it"
    return shlex.join(argv) + then


def _prepare(params: SnapshotParams) -> tuple[str, str]:
    """(root, backups) as absolute paths, once both are fit for a snapshot."""
    root = absolute(params.root, "storage root")
    backups = absolute(params.backups, "backups")
    if not os.path.isdir(root):
        raise ActionError(f"Storage root not found: {root} is not a directory.")
    check_separate(root, backups)
    try:
        os.makedirs(backups, exist_ok=True)
    except OSError as exc:
        raise ActionError(f"Cannot create the backups directory {backups}: {exc.strerror}.") from None
    link = os.path.join(backups, LATEST)
    if os.path.lexists(link) and not os.path.islink(link):
        raise ActionError(
            f"{link} is not a symlink; move it away so `latest` can point at the newest snapshot."
        )
    return root, backups


def _clean_incomplete(ctx: StepContext, backups: str) -> None:
    # We hold the lock, so any .incomplete-* left here is from a run that was killed.
    for entry in os.scandir(backups):
        if not entry.name.startswith(INCOMPLETE):
            continue
        if entry.is_dir(follow_symlinks=False):
            ctx.log(f"removing {entry.name}, left by an interrupted snapshot")
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name.endswith(RECORDS):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _new_name(params: SnapshotParams, backups: str) -> str:
    if params.name:
        if os.path.lexists(os.path.join(backups, params.name)):
            raise ActionError(f"Snapshot {params.name} already exists in {backups}; choose another name.")
        return params.name
    return os.path.basename(unused_name(os.path.join(backups, params.tag or "backup")))


def _point_latest(backups: str, name: str) -> None:
    link = os.path.join(backups, LATEST)
    tmp = os.path.join(backups, f".latest.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(name, tmp)  # relative: the backups directory can be moved or mounted elsewhere
    try:
        os.replace(tmp, link)
    except OSError as exc:
        os.unlink(tmp)
        raise ActionError(
            f"Snapshot {name} is complete but {link} could not be updated: {exc.strerror}."
        ) from None


@action(
    "storage.snapshot",
    Effect.MUTATING,
    "Incremental snapshot of the storage tree (rsync --link-dest), with a checksum manifest; "
    "repoints `latest`.",
    target=lambda p: p.backups,
    describe=_describe,
)
def take_snapshot(ctx: StepContext, params: SnapshotParams) -> SnapshotOutputs:
    root, backups = _prepare(params)
    with backups_lock(backups, "snapshot"):
        _clean_incomplete(ctx, backups)
        name = _new_name(params, backups)
        prev = _previous(backups)
        final = os.path.join(backups, name)
        tmp = os.path.join(backups, INCOMPLETE + name)
        how = f" (unchanged files hard-linked to {prev})" if prev else " (first snapshot: full copy)"
        ctx.log(f"snapshot {root} → {final}{how}")
        prev_path = os.path.join(backups, prev) if prev else None
        stats = copy_into(ctx, root, tmp, prev_path, checksum=params.checksum, checksums=params.checksums)
        os.rename(tmp, final)
        os.utime(final)  # rsync -a gave it the live root's mtime; its age is when it completed
        if params.update_latest:
            _point_latest(backups, name)
            ctx.log(f"{os.path.join(backups, LATEST)} → {name}")
    ctx.log(
        f"{name} complete: {stats.files:,} files, {human_bytes(stats.bytes)}; "
        f"{stats.linked:,} unchanged (hard-linked), {stats.new_files:,} new or changed"
    )
    manifest = os.path.join(final, MANIFESTS[stats.algo])
    return SnapshotOutputs(path=final, name=name, previous=prev or "", manifest=manifest, **stats.counts())
