"""File checks that need no server: checksums, the newest backup, age and size sanity.

These are the building blocks of the seed's backup-verification script (newest backup from the
last 24 hours, checksum file verified, sizes not suspiciously small).
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.fs import human_bytes, read_sha256_file, sha256_file, tree_size
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


def _exists(path: Path, what: str = "file") -> Path:
    if not path.exists():
        raise ActionError(f"{what.capitalize()} not found: {path}.")
    return path


# --- sha256 --------------------------------------------------------------------------------


class Sha256Params(ActionParams):
    path: str
    write: bool = False
    """Also write PATH.sha256 in sha256sum format."""


class Sha256Outputs(ActionOutputs):
    sha256: str
    """Hex digest."""
    size: int
    """Bytes."""
    checksum_file: str
    """The .sha256 file written, or empty."""


@action("file.sha256", Effect.READ_ONLY, "Checksum of a file (sha256); optionally write a .sha256 file beside it.",
        target=lambda p: p.path, describe=lambda p: f"sha256sum {p.path}" + (f" > {p.path}.sha256" if p.write else ""))
def sha256(ctx: StepContext, params: Sha256Params) -> Sha256Outputs:
    path = _exists(Path(params.path))
    if not path.is_file():
        raise ActionError(f"Not a regular file: {path}.")
    digest = sha256_file(path, ctx.cancelled)
    ctx.log(f"{digest}  {path}")
    written = ""
    if params.write:
        sidecar = Path(f"{path}.sha256")
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, sidecar)
        written = str(sidecar)
        ctx.log(f"wrote {sidecar}")
    return Sha256Outputs(sha256=digest, size=path.stat().st_size, checksum_file=written)


# --- verify .sha256 ------------------------------------------------------------------------


class VerifyParams(ActionParams):
    path: str
    """The data file; its checksum file is PATH.sha256 unless given."""
    checksum_file: str | None = None
    required: bool = True
    """Fail when there is no checksum file (else warn)."""


class VerifyOutputs(ActionOutputs):
    sha256: str
    """Actual digest."""
    verified: bool
    """true when it matched."""


@action("file.verify_sha256", Effect.READ_ONLY, "Verify a file against its .sha256 file (sha256sum -c).",
        target=lambda p: p.path, describe=lambda p: f"sha256sum -c {p.checksum_file or p.path + '.sha256'}")
def verify_sha256(ctx: StepContext, params: VerifyParams) -> VerifyOutputs:
    path = _exists(Path(params.path))
    sidecar = Path(params.checksum_file or f"{path}.sha256")
    if not sidecar.exists():
        if params.required:
            raise ActionError(f"No checksum file for {path}: expected {sidecar}.")
        ctx.log(f"WARNING: no checksum file found for {path}")
        return VerifyOutputs(sha256=sha256_file(path, ctx.cancelled), verified=False)
    expected = read_sha256_file(sidecar)
    actual = sha256_file(path, ctx.cancelled)
    if actual != expected:
        ctx.log(f"{path}: FAILED (expected {expected}, got {actual})")
        raise ActionError(f"Checksum mismatch for {path}: the file does not match {sidecar.name}.")
    ctx.log(f"{path}: OK")
    return VerifyOutputs(sha256=actual, verified=True)


# --- newest / age / size -------------------------------------------------------------------


class NewestParams(ActionParams):
    directory: str
    pattern: str = "*"
    """Glob on the entry name, e.g. varlor_db_*.dump."""
    kind: Literal["file", "dir", "any"] = "file"
    max_age: Duration | None = None
    """Fail if the newest is older (e.g. 24h)."""
    exclude: list[str] = Field(default_factory=lambda: ["*.sha256", "*.tmp"])


class NewestOutputs(ActionOutputs):
    path: str
    """Newest entry."""
    name: str
    """Its name."""
    age_seconds: float
    """Age in seconds."""
    size: int
    """Bytes."""
    count: int
    """How many entries matched."""


def _describe_newest(p: NewestParams) -> str:
    age = f" -mmin -{int(seconds(p.max_age) // 60)}" if p.max_age is not None else ""
    return f"find {p.directory} -maxdepth 1 -name '{p.pattern}'{age} | newest"


def _matching(directory: Path, params: NewestParams) -> list[tuple[float, str, str]]:
    entries = []
    for entry in os.scandir(directory):
        if not fnmatch.fnmatch(entry.name, params.pattern) or entry.is_symlink():
            continue
        if any(fnmatch.fnmatch(entry.name, ex) for ex in params.exclude):
            continue
        if (params.kind == "file" and not entry.is_file()) or (params.kind == "dir" and not entry.is_dir()):
            continue
        entries.append((entry.stat().st_mtime, entry.name, entry.path))
    return sorted(entries)


@action("file.newest", Effect.READ_ONLY,
        "Find the newest file (or directory) matching a pattern; optionally check its age.",
        target=lambda p: p.directory, describe=_describe_newest)
def newest(ctx: StepContext, params: NewestParams) -> NewestOutputs:
    directory = _exists(Path(params.directory), "directory")
    entries = _matching(directory, params)
    if not entries:
        raise ActionError(f"No backup matching {params.pattern!r} in {directory}.")
    mtime, name, path = entries[-1]
    age = max(0.0, time.time() - mtime)
    size = tree_size(Path(path))
    ctx.log(f"newest: {path} ({format_duration(age)} old, {human_bytes(size)}; {len(entries)} matching)")
    if params.max_age is not None and age > seconds(params.max_age):
        raise ActionError(f"The newest backup {name} is {format_duration(age)} old, older than {params.max_age}.")
    return NewestOutputs(path=path, name=name, age_seconds=round(age, 1), size=size, count=len(entries))


class AgeParams(ActionParams):
    path: str
    max_age: Duration
    """e.g. 24h"""


class AgeOutputs(ActionOutputs):
    age_seconds: float
    """Age in seconds."""
    resolved: str
    """Path after symlinks."""


@action("file.check_age", Effect.READ_ONLY,
        "Fail if a file or directory (a symlink is followed) is older than max_age.",
        target=lambda p: p.path, describe=lambda p: f"find $(readlink -f {p.path}) -maxdepth 0 -mtime -{p.max_age}")
def check_age(ctx: StepContext, params: AgeParams) -> AgeOutputs:
    path = Path(params.path)
    if not path.exists():
        raise ActionError(f"Not found: {path}.")
    resolved = path.resolve()
    age = max(0.0, time.time() - resolved.stat().st_mtime)
    ctx.log(f"{resolved}: {format_duration(age)} old (limit {params.max_age})")
    if age > seconds(params.max_age):
        raise ActionError(f"{resolved} is {format_duration(age)} old, older than {params.max_age}.")
    return AgeOutputs(age_seconds=round(age, 1), resolved=str(resolved))


class SizeParams(ActionParams):
    path: str
    min_bytes: int = Field(1, ge=0)
    """Fail when smaller (0 bytes is always suspicious)."""
    max_bytes: int | None = Field(None, ge=0)
    compare_to: str | None = None
    """A previous backup to compare with."""
    max_change: float = Field(0.5, gt=0)
    """Fail when the size differs from compare_to by more than this fraction."""
    warn_only: bool = False
    """Log a WARNING instead of failing."""


class SizeOutputs(ActionOutputs):
    size: int
    """Bytes."""
    human: str
    """Human size."""
    ok: bool
    """true when within bounds."""


def _size_problems(ctx: StepContext, path: Path, size: int, params: SizeParams) -> list[str]:
    problems: list[str] = []
    if size < params.min_bytes:
        problems.append(f"{path} is suspiciously small ({size} bytes, expected at least {params.min_bytes})")
    if params.max_bytes is not None and size > params.max_bytes:
        problems.append(f"{path} is larger than expected ({size} bytes, at most {params.max_bytes})")
    prev = Path(params.compare_to) if params.compare_to else None
    if prev is not None and prev.exists():
        prev_size = tree_size(prev)
        if prev_size > 0:
            change = abs(size - prev_size) / prev_size
            ctx.log(f"previous {prev}: {human_bytes(prev_size)} (change {change:.0%})")
            if change > params.max_change:
                problems.append(f"{path} is {change:.0%} different in size from the previous backup {prev.name}")
    return problems


@action("file.check_size", Effect.READ_ONLY,
        "Size sanity of a file or tree: not empty, within bounds, not far from the previous backup.",
        target=lambda p: p.path, describe=lambda p: f"du -sb {p.path}")
def check_size(ctx: StepContext, params: SizeParams) -> SizeOutputs:
    path = _exists(Path(params.path))
    size = tree_size(path)
    ctx.log(f"{path}: {human_bytes(size)} ({size} bytes)")
    problems = _size_problems(ctx, path, size, params)
    for p in problems:
        ctx.log(f"WARNING: {p}")
    if problems and not params.warn_only:
        raise ActionError(problems[0][0].upper() + problems[0][1:] + ".")
    return SizeOutputs(size=size, human=human_bytes(size), ok=not problems)


SPECS = [sha256, verify_sha256, newest, check_age, check_size]
