"""The manifest of a new snapshot, from digests known already wherever possible.

Every file of a new snapshot was either copied by rsync (it named the file: its digest is rsync's
own xxh128 checksum, or the sha256 taken while rsync went on copying) or hard-linked to the
previous snapshot (same inode, same content: its digest is reused from the previous manifest).
Only what is left is read after the copy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from runbook.actions.spec import StepContext
from runbook.actions.storage.manifest import MANIFESTS, hash_file, walk_files, write_manifest
from runbook.actions.storage.rsync import RsyncOutput
from runbook.actions.support.fs import tree_size
from runbook.core.durations import format_duration
from runbook.core.errors import ActionError


@dataclass
class CopyStats:
    """What a snapshot's copy produced; ``algo`` is the kind of manifest written."""

    files: int
    bytes: int
    new_files: int
    linked: int
    algo: str

    def counts(self) -> dict[str, int]:
        """The numbers, named as the snapshot's outputs name them."""
        return {"files": self.files, "bytes": self.bytes, "new_files": self.new_files, "linked": self.linked}


def write_records_manifest(
    ctx: StepContext, tmp: str, text: bytes, files: int, out: RsyncOutput
) -> CopyStats:
    """A first snapshot whose rsync records are its manifest, written as they are."""
    path = os.path.join(tmp, MANIFESTS["xxh128"])
    with open(path, "wb") as f:
        f.write(text)
    ctx.log(f"{MANIFESTS['xxh128']}: {files:,} files, every one checksummed by rsync as it copied")
    size = out.total_size if out.total_size is not None else tree_size(Path(tmp))
    return CopyStats(files=files, bytes=size, new_files=files, linked=0, algo="xxh128")


def _walk(
    tmp: str, transferred: set[str], early: dict[str, str], prev_manifest: dict[str, str]
) -> dict[str, str | None]:
    """Every regular file of the new snapshot, with its digest when already known."""
    entries: dict[str, str | None] = {}
    early_get, prev_get = early.get, prev_manifest.get
    for rel in walk_files(tmp):
        # Hashed while rsync ran, else (not copied by rsync, so hard-linked to the previous
        # snapshot) reused from the previous manifest.
        digest = early_get(rel)
        if digest is None and rel not in transferred:
            digest = prev_get(rel)
        entries[rel] = digest
    return entries


def _candidates(
    tmp: str, out: RsyncOutput, early: dict[str, str], prev_manifest: dict[str, str]
) -> dict[str, str | None]:
    # Every file of the new snapshot was either copied (rsync named it) or hard-linked from the
    # previous one (in its manifest). When that candidate set has exactly as many files as
    # rsync counted, it *is* the snapshot's file list: the walk can be skipped (on a first
    # snapshot, when rsync named as many files as it counted).
    transferred = out.transferred
    if out.regular_files is not None and not out.redone:
        if len(prev_manifest.keys() | transferred) == out.regular_files:
            entries: dict[str, str | None] = {}
            entries.update(prev_manifest)  # C-level copies: 20,000 entries in a millisecond
            entries.update({rel: early.get(rel) for rel in transferred})
            return entries
    return _walk(tmp, transferred, early, prev_manifest)


def _same_inode(a: str, b: str) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _distrust_unshared(
    ctx: StepContext, entries: dict[str, str | None], early: dict[str, str], tmp: str, prev: str
) -> None:
    # A copied name we cannot find means we may have mis-read rsync's output: then keep a
    # reused hash only where the inode really is shared with the previous snapshot.
    ctx.log("WARNING: could not match every copied file name; unchanged files are checked by inode")
    for rel, digest in entries.items():
        if (
            digest is not None
            and rel not in early
            and not _same_inode(os.path.join(tmp, rel), os.path.join(prev, rel))
        ):
            entries[rel] = None


def _read_missing(ctx: StepContext, tmp: str, entries: dict[str, str | None], algo: str) -> int:
    """Hash the files whose digest is not known yet; returns how many were read."""
    missing = [rel for rel, digest in entries.items() if digest is None]
    cancelled = ctx.cancelled
    for rel in missing:
        if cancelled.is_set():
            raise ActionError("The snapshot was stopped by the operator.")
        try:
            entries[rel] = hash_file(os.path.join(tmp, rel), algo)[0]
        except OSError as exc:
            raise ActionError(
                f"Cannot read {os.path.join(tmp, rel)} to checksum it: {exc.strerror}."
            ) from None
    return len(missing)


def write_snapshot_manifest(
    ctx: StepContext,
    tmp: str,
    out: RsyncOutput,
    early: dict[str, str],
    prev_manifest: dict[str, str],
    prev: str | None,
    algo: str,
) -> CopyStats:
    """Write the manifest from the digests known already (rsync's, or hashed while it ran),
    reused ones (hard links to the previous snapshot) and, for anything else, a read now."""
    started = time.monotonic()
    transferred = out.transferred
    entries = _candidates(tmp, out, early, prev_manifest)
    if prev and not transferred <= entries.keys():
        _distrust_unshared(ctx, entries, early, tmp, prev)
    read_now = _read_missing(ctx, tmp, entries, algo)
    known = len(early.keys() & entries.keys())
    reused = len(entries) - read_now - known
    write_manifest(os.path.join(tmp, MANIFESTS[algo]), entries)  # type: ignore[arg-type]  # all filled now
    new = len(transferred & entries.keys())
    linked = max(0, len(entries) - new - out.copied) if prev else 0
    how = "checksummed by rsync as it copied" if algo == "xxh128" else "hashed as rsync copied"
    ctx.log(
        f"{MANIFESTS[algo]}: {len(entries):,} files; {known:,} {how}, {reused:,} reused from the previous "
        f"manifest, {read_now:,} read now ({format_duration(time.monotonic() - started)} after the copy)"
    )
    size = out.total_size if out.total_size is not None else tree_size(Path(tmp))
    return CopyStats(files=len(entries), bytes=size, new_files=new, linked=linked, algo=algo)
