"""Restores from a snapshot: the whole tree (``storage.restore_full``), one tenant, one dataset.

Tenant and dataset ids are single path components, checked before any path is joined, and the
joined paths must not run through a symlink or leave the snapshot or the storage root. A full
restore moves the current tree aside (``<root>_old_<UTC YYYYmmdd_HHMMSS>``) and never deletes it.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.storage.layout import (
    SnapshotRef,
    absolute,
    check_id,
    check_separate,
    describe_snapshot,
    inside,
    require_id,
    resolve_snapshot,
    unused_name,
)
from runbook.actions.storage.manifest import load_manifest, log_problems, problem_sentence, verify_tree
from runbook.actions.storage.rsync import NAMED_FORMAT, RsyncOutput, perm_options, rsync_failed, run_rsync
from runbook.actions.support.fs import human_bytes
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_MODE = re.compile(r"[0-7]{3,4}")


def _octal_mode(value: Any) -> Any:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _MODE.fullmatch(text):
        raise ValueError(f"mode {value!r} is not an octal mode like 750")
    return text


def _owner(value: Any) -> Any:
    if not isinstance(value, str) or not _OWNER.fullmatch(value):
        raise ValueError(f"owner {value!r} must look like user or user:group")
    return value


def _id_of(what: str) -> BeforeValidator:
    return BeforeValidator(lambda value: check_id(value, what))


OctalMode = Annotated[str, BeforeValidator(_octal_mode)]
"""Permissions like ``750`` (a YAML number is read as its digits)."""
Owner = Annotated[str, BeforeValidator(_owner)]
"""``user`` or ``user:group``."""
TenantId = Annotated[str, _id_of("Tenant")]
DatasetId = Annotated[str, _id_of("Dataset")]


class RestoreParams(SnapshotRef):
    root: str
    """The live storage tree, e.g. {{ env.storage.root }}."""
    mode: OctalMode | None = None
    """Octal permissions for restored dirs and files, e.g. 750 (like chmod -R 750)."""
    owner: Owner | None = None
    """user:group for restored files (like chown -R); applied only when running as root."""
    verify: bool = True
    """Check the restored files against the snapshot's manifest."""


def _verify_restore(
    ctx: StepContext, params: RestoreParams, snap: str, tree: str, sub: str, extras: bool, what: str
) -> tuple[int, int, bool]:
    if not params.verify:
        ctx.log("verification skipped (verify: false)")
        return 0, 0, False
    manifest, algo = load_manifest(snap)
    started = time.monotonic()
    files, total, problems = verify_tree(ctx, tree, manifest, algo=algo, sub=sub, extras=extras)
    log_problems(ctx, problems)
    if problems:
        raise ActionError(problem_sentence(f"The restored {what}", problems))
    elapsed = format_duration(time.monotonic() - started)
    ctx.log(f"verified {files:,} files ({human_bytes(total)}) against the manifest in {elapsed}")
    return files, total, True


# --- storage.restore_full ------------------------------------------------------------------


class RestoreFullParams(RestoreParams):
    pass


class RestoreFullOutputs(ActionOutputs):
    path: str
    """The restored storage root."""
    snapshot: str
    """The snapshot restored."""
    moved_aside: str
    """Where the previous tree was moved ('' if there was none)."""
    files: int
    """Files verified."""
    bytes: int
    """Bytes verified."""
    verified: bool
    """true when the restored tree matched the manifest."""


def _full_argv(
    snap: str, root: str, params: RestoreParams, log: Callable[[str], None] | None = None
) -> list[str]:
    return [
        "rsync",
        "-a",
        "--stats",
        "--no-human-readable",
        f"--out-format={NAMED_FORMAT}",
        "--exclude=/.runbook-manifest.*",
        *perm_options(params.mode, params.owner, log),
        snap + "/",
        root + "/",
    ]


def _describe_full(params: RestoreFullParams) -> str:
    root = os.path.abspath(params.root)
    argv = _full_argv(describe_snapshot(params), root, params)
    check = f"; verify {root} against the snapshot's manifest" if params.verify else ""
    return f"mv {shlex.quote(root)} {shlex.quote(root + '_old_<YYYYmmdd_HHMMSS>')}; {shlex.join(argv)}{check}"


def _full_paths(params: RestoreFullParams) -> tuple[str, str]:
    """(snapshot, root), refused before anything is touched when they cannot be restored safely."""
    snap = resolve_snapshot(params.backups, params.snapshot)
    root = absolute(params.root, "storage root")
    if os.path.realpath(root) == "/":
        raise ActionError("Refusing to restore over / : the storage root must be a data directory.")
    if params.backups:
        check_separate(root, absolute(params.backups, "backups"))
    if inside(snap, os.path.realpath(root)):
        raise ActionError(f"The snapshot {snap} is inside the storage root {root}; keep them apart.")
    if params.verify:
        load_manifest(snap)  # fail before touching anything if it cannot be verified afterwards
    return snap, root


def _move_aside(ctx: StepContext, root: str) -> str:
    """Rename the current tree to ``<root>_old_<stamp>``; returns that path ('' when there was none)."""
    if not os.path.lexists(root):
        ctx.log(f"{root} does not exist: nothing to move aside")
        return ""
    if not os.path.isdir(root) or os.path.islink(root):
        raise ActionError(f"The storage root {root} is not a directory; refusing to move it aside.")
    moved = unused_name(f"{root}_old")
    try:
        os.rename(root, moved)
    except OSError as exc:
        raise ActionError(f"Cannot move the current tree {root} aside: {exc.strerror}.") from None
    ctx.log(f"moved the current tree aside: {root} → {moved}")
    return moved


@action("storage.restore_full", Effect.DESTRUCTIVE,
        "Replace the whole storage tree with a snapshot: the current tree is moved aside first.",
        target=lambda p: os.path.abspath(p.root), describe=_describe_full)
def restore_full(ctx: StepContext, params: RestoreFullParams) -> RestoreFullOutputs:
    snap, root = _full_paths(params)
    moved = _move_aside(ctx, root)
    try:
        os.makedirs(root)
    except OSError as exc:
        raise ActionError(f"Cannot create {root}: {exc.strerror}.") from None
    argv = _full_argv(snap, root, params, ctx.log)
    ctx.log(f"restoring {snap} → {root}")
    try:
        result = run_rsync(ctx, argv, RsyncOutput(ctx.log))
        if not result.ok:
            raise rsync_failed(result, "restore")
        files, total, verified = _verify_restore(ctx, params, snap, root, "", True, f"tree {root}")
    except ActionError as exc:
        if not moved:
            raise
        # The operator's first question: where is the tree I had before?
        raise ActionError(f"{str(exc).rstrip('.')}; the previous tree is kept in {moved}.") from None
    kept = f"; the previous tree is in {moved}" if moved else ""
    ctx.log(f"storage restored from {os.path.basename(snap)}{kept}")
    return RestoreFullOutputs(
        path=root, snapshot=snap, moved_aside=moved, files=files, bytes=total, verified=verified
    )


# --- storage.restore_tenant / storage.restore_dataset --------------------------------------


class RestoreTenantParams(RestoreParams):
    tenant: TenantId
    """Tenant id: one directory name under the root."""
    checksum: bool = True
    """rsync --checksum: also fix files whose size and mtime look unchanged."""
    delete: bool = False
    """Also delete files the snapshot does not have (rsync --delete)."""


class RestoreDatasetParams(RestoreTenantParams):
    dataset: DatasetId
    """Dataset id: one directory name under the tenant."""


class RestorePartOutputs(ActionOutputs):
    path: str
    """The restored directory."""
    snapshot: str
    """The snapshot restored from."""
    files: int
    """Files verified."""
    bytes: int
    """Bytes verified."""
    verified: bool
    """true when the restored files matched the manifest."""


def _parts(params: RestoreTenantParams) -> list[str]:
    # Re-checked here, not only by the model: params may have been built without validation.
    parts = [require_id(params.tenant, "Tenant")]
    if isinstance(params, RestoreDatasetParams):
        parts.append(require_id(params.dataset, "Dataset"))
    return parts


def _part_target(params: RestoreTenantParams) -> str:
    return "/".join(_parts(params))


def _part_argv(
    src: str, dst: str, params: RestoreTenantParams, log: Callable[[str], None] | None = None
) -> list[str]:
    argv = ["rsync", "-a", "--stats", "--no-human-readable", f"--out-format={NAMED_FORMAT}"]
    if params.checksum:
        argv.append("--checksum")
    if params.delete:
        argv.append("--delete")
    return [*argv, *perm_options(params.mode, params.owner, log), src + "/", dst + "/"]


def _describe_part(params: RestoreTenantParams) -> str:
    rel = _part_target(params)
    src = os.path.join(describe_snapshot(params), rel)
    dst = os.path.join(os.path.abspath(params.root), rel)
    check = f"; verify {dst} against the snapshot's manifest" if params.verify else ""
    return shlex.join(_part_argv(src, dst, params)) + check


def _safe_join(base: str, parts: list[str], where: str, *, must_exist: bool) -> str:
    """``base/part/…`` after checking each part is a plain component and no step is a symlink.

    ``base`` is a real path. The result must stay inside it even after resolving (defence in depth).
    """
    path = base
    for part in parts:
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise ActionError(f"{path} in the {where} is a symlink; refusing to restore through it.")
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ActionError(f"{path} in the {where} is not a directory.")
        if must_exist and not os.path.lexists(path):
            break
    real = os.path.realpath(path)
    if not inside(real, base) or real == base:
        raise ActionError(f"{path} resolves outside the {where} {base}; refusing to restore.")
    return path


def _part_paths(params: RestoreTenantParams, parts: list[str], what: str) -> tuple[str, str, str, str]:
    """(snapshot, root, source, destination), checked; the destination's parent is created."""
    rel = "/".join(parts)
    snap = resolve_snapshot(params.backups, params.snapshot)
    root = os.path.realpath(absolute(params.root, "storage root"))
    if not os.path.isdir(root):
        raise ActionError(f"Storage root not found: {root} is not a directory.")
    if root == "/":
        raise ActionError("Refusing to restore into / : the storage root must be a data directory.")
    src = _safe_join(snap, parts, f"snapshot {os.path.basename(snap)}", must_exist=True)
    if not os.path.isdir(src):
        raise ActionError(f"The {what} {rel!r} is not in snapshot {os.path.basename(snap)}.")
    dst = _safe_join(root, parts, "storage root", must_exist=False)
    if params.verify:
        load_manifest(snap)
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
    except OSError as exc:
        raise ActionError(f"Cannot create {os.path.dirname(dst)}: {exc.strerror}.") from None
    # Nothing may have become a symlink in between (the parent was just created).
    return snap, root, src, _safe_join(root, parts, "storage root", must_exist=False)


def _restore_part(ctx: StepContext, params: RestoreTenantParams) -> RestorePartOutputs:
    parts = _parts(params)
    rel = "/".join(parts)
    what = "dataset" if len(parts) > 1 else "tenant"
    snap, root, src, dst = _part_paths(params, parts, what)
    ctx.log(f"restoring {what} {rel} from {os.path.basename(snap)}: {src}/ → {dst}/")
    if not params.delete:
        clear_cut_copies(ctx, src, dst)
    result = run_rsync(ctx, _part_argv(src, dst, params, ctx.log), RsyncOutput(ctx.log))
    if not result.ok:
        raise rsync_failed(result, f"{what} restore")
    files, total, verified = _verify_restore(ctx, params, snap, root, rel, params.delete, f"{what} {rel}")
    ctx.log(f"{what} {rel} restored from {os.path.basename(snap)}")
    return RestorePartOutputs(path=dst, snapshot=snap, files=files, bytes=total, verified=verified)


# rsync writes each file as ``.<name>.<6 random characters>`` beside it, then renames it.
_RSYNC_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9]{6}$")


def clear_cut_copies(ctx: StepContext, src: str, dst: str) -> None:
    """Remove what an rsync cut short left in ``dst``: its half-written temporary files.

    An rsync killed without its cleanup (SIGKILL, or SIGPIPE once the runner that read its output
    died) leaves ``.<name>.XXXXXX`` files. A restore without ``--delete`` would keep them, and the
    tree would hold files the snapshot never had. Only names whose ``<name>`` the snapshot has in
    the same directory are removed: an operator's own dot files stay.
    """
    for dirpath, _dirs, files in os.walk(dst):
        source_dir = os.path.join(src, os.path.relpath(dirpath, dst))
        for name in files:
            m = _RSYNC_TEMP.match(name)
            if m and os.path.isfile(os.path.join(source_dir, m.group(1))):
                path = os.path.join(dirpath, name)
                try:
                    os.unlink(path)
                except OSError as exc:
                    raise ActionError(f"Cannot remove {path}, left by an earlier cut copy: {exc.strerror}.") from None
                ctx.log(f"removed {path}: a half-written copy left by an earlier restore that was cut short")


@action("storage.restore_tenant", Effect.DESTRUCTIVE,
        "Restore one tenant's directory from a snapshot into the live tree (overwrites its files).",
        target=_part_target, describe=_describe_part)
def restore_tenant(ctx: StepContext, params: RestoreTenantParams) -> RestorePartOutputs:
    return _restore_part(ctx, params)


@action("storage.restore_dataset", Effect.DESTRUCTIVE,
        "Restore one dataset (tenant/dataset) from a snapshot into the live tree (overwrites its files).",
        target=_part_target, describe=_describe_part)
def restore_dataset(ctx: StepContext, params: RestoreDatasetParams) -> RestorePartOutputs:
    return _restore_part(ctx, params)
