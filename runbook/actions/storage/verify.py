"""``storage.verify_snapshot``: a snapshot against its manifest, no file missing, changed or extra."""

from __future__ import annotations

import os
import shlex
import time

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.storage.layout import SnapshotRef, describe_snapshot, resolve_snapshot
from runbook.actions.storage.manifest import (
    CHECK_BY_HAND,
    CHECKSUMS,
    MANIFESTS,
    find_manifest,
    load_manifest,
    log_problems,
    problem_sentence,
    verify_tree,
)
from runbook.actions.support.fs import human_bytes
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class VerifySnapshotParams(SnapshotRef):
    warn_only: bool = False
    """Report problems as warnings and output ok=false instead of failing."""


class VerifySnapshotOutputs(ActionOutputs):
    path: str
    """The snapshot checked."""
    files: int
    """Files checked."""
    bytes: int
    """Bytes read."""
    ok: bool
    """true when every file matched."""
    problems: int
    """How many files were missing, changed or extra."""
    first_problem: str
    """The first problem ('' when ok)."""


def _describe(params: VerifySnapshotParams) -> str:
    path = describe_snapshot(params)
    found = find_manifest(path)
    algo = found[1] if found else CHECKSUMS[0]
    snap, manifest = shlex.quote(path), MANIFESTS[algo]
    compared = f"{algo} of every file in {snap} compared with its {manifest}, no file missing or extra"
    return f"{compared} (like: cd {snap} && {CHECK_BY_HAND[algo]} --quiet {manifest})"


@action("storage.verify_snapshot", Effect.READ_ONLY,
        "Check a snapshot against its checksum manifest: no file missing, changed or extra.",
        target=describe_snapshot, describe=_describe)
def verify_snapshot(ctx: StepContext, params: VerifySnapshotParams) -> VerifySnapshotOutputs:
    snap = resolve_snapshot(params.backups, params.snapshot)
    manifest, algo = load_manifest(snap)
    ctx.log(f"verifying {snap} against {MANIFESTS[algo]} ({len(manifest):,} files)")
    started = time.monotonic()
    files, total, problems = verify_tree(ctx, snap, manifest, algo=algo)
    log_problems(ctx, problems)
    if len(problems) > 20:
        ctx.log(f"… and {len(problems) - 20} more problems")
    ctx.log(f"{files:,} files, {human_bytes(total)} checked in {format_duration(time.monotonic() - started)}")
    if problems and not params.warn_only:
        raise ActionError(problem_sentence(f"Snapshot {os.path.basename(snap)}", problems))
    if not problems:
        ctx.log(f"{os.path.basename(snap)}: OK")
    return VerifySnapshotOutputs(
        path=snap,
        files=files,
        bytes=total,
        ok=not problems,
        problems=len(problems),
        first_problem=problems[0] if problems else "",
    )
