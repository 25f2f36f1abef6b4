"""A snapshot's copy: rsync the live tree into ``.incomplete-NAME`` and write its manifest there.

xxh128 manifests take rsync's own checksums: its stdout goes to a file read while rsync writes it.
sha256 manifests hash each file rsync names on its stdout pipe while it copies the next ones. On
any failure the incomplete copy is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import BinaryIO

from runbook.actions.spec import StepContext
from runbook.actions.storage import rsync
from runbook.actions.storage.background import Background, LiveHasher
from runbook.actions.storage.digests import CopyStats, write_records_manifest, write_snapshot_manifest
from runbook.actions.storage.layout import RECORDS
from runbook.actions.storage.manifest import find_manifest, read_manifest
from runbook.actions.storage.rsync import RecordsReader, RsyncOutput, rsync_failed, run_rsync, serialized
from runbook.core.errors import ActionError

_RECORDS_OPEN = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def snapshot_argv(root: str, dest: str, link_dest: str | None, checksum: bool, xxh128: bool) -> list[str]:
    # Per-file records (only for files rsync copies) say which files are new; the others are hard
    # links whose digests are reused. For an xxh128 manifest each record carries the checksum rsync
    # computed while copying (xxh128 named, whatever RSYNC_CHECKSUM_LIST says); for sha256 the files
    # are hashed as their records arrive.
    argv = ["rsync", "-a", "--delete", "--stats", "--no-human-readable"]
    if xxh128:
        argv += [f"--out-format={rsync.SUMMED_FORMAT}", "--checksum-choice=xxh128"]
    else:
        argv.append(f"--out-format={rsync.NAMED_FORMAT}")
    argv.append("--exclude=/.runbook-manifest.*")
    if checksum:
        argv.append("--checksum")
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    argv += [root.rstrip("/") + "/", dest.rstrip("/") + "/"]
    return argv


def _manifest_kind(ctx: StepContext, wanted: str) -> str:
    if wanted == "xxh128" and not rsync.rsync_has_xxh128():
        ctx.log(
            "WARNING: this rsync has no xxh128 checksum (rsync 3.2.3 or later has): the manifest is sha256"
        )
        return "sha256"
    return wanted


def _previous_manifest(ctx: StepContext, prev: str | None, algo: str) -> Background | None:
    """The previous snapshot's manifest, to be parsed on the side while rsync copies (its digests
    of unchanged files are reused), when it is of the same kind."""
    found = find_manifest(prev) if prev else None
    if found and found[1] == algo:
        return Background(read_manifest, *found)
    if found:
        ctx.log(
            f"{os.path.basename(prev or '')} has a {found[1]} manifest, not {algo}: every file will be hashed"
        )
    elif prev:
        ctx.log(f"WARNING: {os.path.basename(prev)} has no manifest; every file will be hashed")
    return None


@dataclass
class _Run:
    """One rsync run into ``tmp`` and what listens to it."""

    ctx: StepContext
    tmp: str
    out: RsyncOutput
    loader: Background | None
    hasher: LiveHasher | None
    records: str | None  # where rsync's stdout goes (xxh128), beside .incomplete-NAME
    reader: RecordsReader | None = None
    stdout_to: BinaryIO | None = None

    @classmethod
    def open(cls, ctx: StepContext, tmp: str, algo: str, loader: Background | None) -> _Run:
        records = tmp + RECORDS if algo == "xxh128" else None
        hasher = LiveHasher(tmp, ctx.cancelled) if records is None else None
        out = RsyncOutput(serialized(ctx.log), on_transfer=hasher.add if hasher else None)
        if loader is not None:
            # Parsed from rsync's first line on, so that it does not delay rsync's start.
            out.on_start = loader.start
        return cls(ctx, tmp, out, loader, hasher, records)

    def start_records(self) -> None:
        """rsync's stdout goes to a fresh file that the reader preads while rsync writes it."""
        assert self.records is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.records)
        fd = os.open(self.records, _RECORDS_OPEN, 0o600)
        self.stdout_to = os.fdopen(fd, "r+b", buffering=0)  # rsync writes; the reader preads
        self.reader = RecordsReader(fd, self.out.log)
        if self.loader is not None:
            self.loader.start()  # rsync's stdout is not ours to watch for its first line

    def rsync(self, argv: list[str]) -> None:
        """Run rsync and collect what it reported; a vanished file (code 24) is only a warning."""
        result = run_rsync(self.ctx, argv, self.out, stdout_to=self.stdout_to)
        vanished = result.exit_code == 24 and not (result.cancelled or result.timed_out)
        if self.reader is not None:
            try:
                self.reader.finish()
            except ActionError:
                if result.ok or vanished:
                    raise
            for line in self.reader.other:  # stats and notices, as if they had come on the pipe
                self.out(line)
        if self.hasher is not None:
            self.hasher.finish()
        if self.ctx.cancelled.is_set() and result.ok:
            result.cancelled = True
        if vanished:
            self.ctx.log(
                "WARNING: some files vanished from the live tree while it was copied (rsync code 24)"
            )
            self.out.regular_files = None  # rsync counted files it then did not copy: walk the snapshot
        elif not result.ok:
            raise rsync_failed(result, "snapshot")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        if self.stdout_to is not None:
            self.stdout_to.close()
        if self.hasher is not None:
            self.hasher.finish()
        if self.records is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.records)


def _write_manifest(run: _Run, checksum_option: bool, prev: str | None, algo: str) -> CopyStats:
    ctx, out, reader = run.ctx, run.out, run.reader
    if reader is not None:
        # With --checksum, rsync's %C is the checksum it took when it listed the files,
        # not of what it copied (a file can change in between): those files are read.
        checksums = not checksum_option
        if prev is None and checksums and not out.redone and out.regular_files == reader.sent:
            text = reader.manifest()
            if text is not None:  # the common first snapshot: rsync's records are the manifest
                return write_records_manifest(ctx, run.tmp, text, reader.sent, out)
        reader.apply(out, checksums=checksums)
    prev_manifest: dict[str, str] = {}
    if run.loader is not None:
        try:
            prev_manifest = run.loader.result()
        except ActionError as exc:
            ctx.log(f"WARNING: {exc} Every file will be hashed.")
    # A file rsync had to send twice: its digests are not trusted, every copied file is read.
    early = {} if out.redone else (run.hasher.hashed if run.hasher is not None else out.digests)
    return write_snapshot_manifest(ctx, run.tmp, out, early, prev_manifest, prev, algo)


def copy_into(
    ctx: StepContext, root: str, tmp: str, prev: str | None, *, checksum: bool, checksums: str
) -> CopyStats:
    """rsync ``root`` into ``tmp`` (hard-linking unchanged files to ``prev``) and write its manifest.

    On any failure ``tmp`` is removed.
    """
    algo = _manifest_kind(ctx, checksums)
    run = _Run.open(ctx, tmp, algo, _previous_manifest(ctx, prev, algo))
    kept = False
    try:
        if run.records is not None:
            run.start_records()
        run.rsync(snapshot_argv(root, tmp, prev, checksum, run.records is not None))
        stats = _write_manifest(run, checksum, prev, algo)
        kept = True
        return stats
    finally:
        run.close()
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            ctx.log("no snapshot was kept: the incomplete copy was removed")
