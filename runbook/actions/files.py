"""File checks that need no server: checksums, the newest backup, age and size sanity.

These are the building blocks of the seed's backup-verification script (newest backup from the
last 24 hours, checksum file verified, sizes not suspiciously small).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.core.durations import check_duration, format_duration, parse_duration
from runbook.core.errors import ActionError

CHUNK = 1 << 20


def sha256_file(path: Path, cancelled: Any = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            if cancelled is not None and cancelled.is_set():
                raise ActionError(f"checksum of {path} was stopped by the operator.")
    return h.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes under ``path`` (like ``du -sb``, hard links counted once)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _exists(path: Path, what: str = "file") -> Path:
    if not path.exists():
        raise ActionError(f"{what.capitalize()} not found: {path}.")
    return path


class _Duration(ActionParams):
    @field_validator("max_age", "min_age", check_fields=False)
    @classmethod
    def _dur(cls, v: Any) -> Any:
        return check_duration(v)


# --- sha256 --------------------------------------------------------------------------------


class Sha256Params(ActionParams):
    path: str
    write: bool = Field(False, description="Also write PATH.sha256 in sha256sum format.")


class Sha256Action(BaseAction):
    name: ClassVar[str] = "file.sha256"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Checksum of a file (sha256); optionally write a .sha256 file beside it."
    Params = Sha256Params
    outputs: ClassVar[dict[str, str]] = {"sha256": "Hex digest.", "size": "Bytes.", "checksum_file": "Written file."}

    def target(self, params: Sha256Params) -> str:
        return params.path

    def describe(self, params: Sha256Params) -> str:
        return f"sha256sum {params.path}" + (f" > {params.path}.sha256" if params.write else "")

    def run(self, ctx: StepContext, params: Sha256Params) -> dict[str, Any]:
        path = _exists(Path(params.path))
        if not path.is_file():
            raise ActionError(f"Not a regular file: {path}.")
        digest = sha256_file(path, ctx.cancelled)
        ctx.log(f"{digest}  {path}")
        out: dict[str, Any] = {"sha256": digest, "size": path.stat().st_size, "checksum_file": ""}
        if params.write:
            sidecar = Path(f"{path}.sha256")
            tmp = sidecar.with_name(sidecar.name + ".tmp")
            tmp.write_text(f"{digest}  {path.name}\n")
            os.replace(tmp, sidecar)
            out["checksum_file"] = str(sidecar)
            ctx.log(f"wrote {sidecar}")
        return out


# --- verify .sha256 ------------------------------------------------------------------------


class VerifyParams(ActionParams):
    path: str = Field(description="The data file; its checksum file is PATH.sha256 unless given.")
    checksum_file: str | None = None
    required: bool = Field(True, description="Fail when there is no checksum file (else warn).")


class VerifySha256Action(BaseAction):
    name: ClassVar[str] = "file.verify_sha256"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Verify a file against its .sha256 file (sha256sum -c)."
    Params = VerifyParams
    outputs: ClassVar[dict[str, str]] = {"sha256": "Actual digest.", "verified": "true when it matched."}

    def target(self, params: VerifyParams) -> str:
        return params.path

    def describe(self, params: VerifyParams) -> str:
        return f"sha256sum -c {params.checksum_file or params.path + '.sha256'}"

    def run(self, ctx: StepContext, params: VerifyParams) -> dict[str, Any]:
        path = _exists(Path(params.path))
        sidecar = Path(params.checksum_file or f"{path}.sha256")
        if not sidecar.exists():
            if params.required:
                raise ActionError(f"No checksum file for {path}: expected {sidecar}.")
            ctx.log(f"WARNING: no checksum file found for {path}")
            return {"sha256": sha256_file(path, ctx.cancelled), "verified": False}
        try:
            first = sidecar.read_text(encoding="utf-8", errors="replace").split()
        except OSError as exc:
            raise ActionError(f"Cannot read checksum file {sidecar}: {exc.strerror}.") from None
        expected = first[0].lower() if first else ""
        if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
            raise ActionError(f"Checksum file {sidecar} does not hold a sha256 digest.")
        actual = sha256_file(path, ctx.cancelled)
        if actual != expected:
            ctx.log(f"{path}: FAILED (expected {expected}, got {actual})")
            raise ActionError(f"Checksum mismatch for {path}: the file does not match {sidecar.name}.")
        ctx.log(f"{path}: OK")
        return {"sha256": actual, "verified": True}


# --- newest / age / size -------------------------------------------------------------------


class NewestParams(_Duration):
    directory: str
    pattern: str = Field("*", description="Glob on the entry name, e.g. varlor_db_*.dump.")
    kind: str = Field("file", pattern="^(file|dir|any)$")
    max_age: str | int | None = Field(None, description="Fail if the newest is older (e.g. 24h).")
    exclude: list[str] = Field(default_factory=lambda: ["*.sha256", "*.tmp"])


class NewestAction(BaseAction):
    name: ClassVar[str] = "file.newest"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Find the newest file (or directory) matching a pattern; optionally check its age."
    Params = NewestParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "Newest entry.",
        "name": "Its name.",
        "age_seconds": "Age in seconds.",
        "size": "Bytes.",
        "count": "How many entries matched.",
    }

    def target(self, params: NewestParams) -> str:
        return params.directory

    def describe(self, params: NewestParams) -> str:
        age = f" -mmin -{int(parse_duration(params.max_age) // 60)}" if params.max_age else ""
        return f"find {params.directory} -maxdepth 1 -name '{params.pattern}'{age} | newest"

    def run(self, ctx: StepContext, params: NewestParams) -> dict[str, Any]:
        directory = _exists(Path(params.directory), "directory")
        entries = []
        for entry in os.scandir(directory):
            if not fnmatch.fnmatch(entry.name, params.pattern):
                continue
            if any(fnmatch.fnmatch(entry.name, ex) for ex in params.exclude):
                continue
            if entry.is_symlink():
                continue
            if params.kind == "file" and not entry.is_file():
                continue
            if params.kind == "dir" and not entry.is_dir():
                continue
            entries.append((entry.stat().st_mtime, entry.name, entry.path))
        if not entries:
            raise ActionError(f"No backup matching {params.pattern!r} in {directory}.")
        entries.sort()
        mtime, name, path = entries[-1]
        age = max(0.0, time.time() - mtime)
        size = tree_size(Path(path))
        ctx.log(f"newest: {path} ({format_duration(age)} old, {human_bytes(size)}; {len(entries)} matching)")
        if params.max_age is not None and age > parse_duration(params.max_age):
            raise ActionError(
                f"The newest backup {name} is {format_duration(age)} old, older than {params.max_age}."
            )
        return {"path": path, "name": name, "age_seconds": round(age, 1), "size": size, "count": len(entries)}


class AgeParams(_Duration):
    path: str
    max_age: str | int = Field(description="e.g. 24h")


class CheckAgeAction(BaseAction):
    name: ClassVar[str] = "file.check_age"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Fail if a file or directory (a symlink is followed) is older than max_age."
    Params = AgeParams
    outputs: ClassVar[dict[str, str]] = {"age_seconds": "Age in seconds.", "resolved": "Path after symlinks."}

    def target(self, params: AgeParams) -> str:
        return params.path

    def describe(self, params: AgeParams) -> str:
        return f"find $(readlink -f {params.path}) -maxdepth 0 -mtime -{params.max_age}"

    def run(self, ctx: StepContext, params: AgeParams) -> dict[str, Any]:
        path = Path(params.path)
        if not path.exists():
            raise ActionError(f"Not found: {path}.")
        resolved = path.resolve()
        age = max(0.0, time.time() - resolved.stat().st_mtime)
        ctx.log(f"{resolved}: {format_duration(age)} old (limit {params.max_age})")
        if age > parse_duration(params.max_age):
            raise ActionError(f"{resolved} is {format_duration(age)} old, older than {params.max_age}.")
        return {"age_seconds": round(age, 1), "resolved": str(resolved)}


class SizeParams(ActionParams):
    path: str
    min_bytes: int = Field(1, ge=0, description="Fail when smaller (0 bytes is always suspicious).")
    max_bytes: int | None = Field(None, ge=0)
    compare_to: str | None = Field(None, description="A previous backup to compare with.")
    max_change: float = Field(0.5, gt=0, description="Fail when the size differs from compare_to by more than this fraction.")
    warn_only: bool = Field(False, description="Log a WARNING instead of failing.")


class CheckSizeAction(BaseAction):
    name: ClassVar[str] = "file.check_size"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Size sanity of a file or tree: not empty, within bounds, not far from the previous backup."
    Params = SizeParams
    outputs: ClassVar[dict[str, str]] = {"size": "Bytes.", "human": "Human size.", "ok": "true when within bounds."}

    def target(self, params: SizeParams) -> str:
        return params.path

    def describe(self, params: SizeParams) -> str:
        return f"du -sb {params.path}"

    def run(self, ctx: StepContext, params: SizeParams) -> dict[str, Any]:
        path = _exists(Path(params.path))
        size = tree_size(path)
        ctx.log(f"{path}: {human_bytes(size)} ({size} bytes)")
        problems: list[str] = []
        if size < params.min_bytes:
            problems.append(f"{path} is suspiciously small ({size} bytes, expected at least {params.min_bytes})")
        if params.max_bytes is not None and size > params.max_bytes:
            problems.append(f"{path} is larger than expected ({size} bytes, at most {params.max_bytes})")
        if params.compare_to:
            prev = Path(params.compare_to)
            if prev.exists():
                prev_size = tree_size(prev)
                if prev_size > 0:
                    change = abs(size - prev_size) / prev_size
                    ctx.log(f"previous {prev}: {human_bytes(prev_size)} (change {change:.0%})")
                    if change > params.max_change:
                        problems.append(
                            f"{path} is {change:.0%} different in size from the previous backup {prev.name}"
                        )
        for p in problems:
            ctx.log(f"WARNING: {p}")
        if problems and not params.warn_only:
            raise ActionError(problems[0][0].upper() + problems[0][1:] + ".")
        return {"size": size, "human": human_bytes(size), "ok": not problems}


ACTIONS = [Sha256Action, VerifySha256Action, NewestAction, CheckAgeAction, CheckSizeAction]
