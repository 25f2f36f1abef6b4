"""Running rsync and reading what it prints: per-file records, ``--stats``, notices.

Per-file records on rsync's stdout are marked ``::`` apart from rsync's own messages:
``::%i %n`` (11 itemize characters, the name) on a pipe read line by line (restores, sha256
snapshots), and ``::%i %C  %n`` (then the 32-character xxh128 whole-file checksum or blanks, two
spaces, the name: from the checksum on, a manifest line) in a file for xxh128 snapshots.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from runbook.actions.spec import StepContext
from runbook.actions.support.poll import WaitCancelled, wait_until
from runbook.actions.support.process import ProcessResult, describe_failure, run_process
from runbook.core.errors import ActionError

PROGRESS_EVERY = 2.0  # seconds between "N files copied so far" lines
NAMED_FORMAT = "::%i %n"
SUMMED_FORMAT = "::%i %C  %n"

_SUMMED = re.compile(rb"^::>f.{9} ([0-9a-f]{32}  .+)$", re.MULTILINE)
_NOT_RECORD = re.compile(rb"\n(?!::)")  # the start of a line that is not a record: found in C
_RSYNC_ESCAPE = re.compile(r"\\#([0-7]{3})")
# rsync --stats lines worth showing an operator; the rest (timings, literal/matched data) is noise.
_STATS_SHOWN = (
    "Number of files",
    "Number of created files",
    "Number of deleted files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
)
_STATS_HIDDEN = ("File list", "Literal data", "Matched data", "Total bytes", "Number of", "Total ")


def rsync_name(text: str) -> str:
    """A file name as rsync printed it under LC_ALL=C (``\\#ooo`` octal escapes) back to a str."""
    if "\\#" not in text:
        return text
    raw = bytearray()
    pos = 0
    for m in _RSYNC_ESCAPE.finditer(text):
        raw += text[pos : m.start()].encode("utf-8", "surrogateescape")
        raw.append(int(m.group(1), 8))
        pos = m.end()
    raw += text[pos:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(raw))


class RsyncOutput:
    """Receives rsync's lines: per-file records become counts, names and checksums, and a progress
    line every few seconds (20,000 log lines help nobody); everything else (stats, warnings,
    errors) is logged."""

    def __init__(self, log: Callable[[str], None], on_transfer: Callable[[str], None] | None = None) -> None:
        self.log = log
        self.on_transfer = on_transfer
        self.transferred: set[str] = set()
        self.digests: dict[str, str] = {}  # rsync's whole-file checksum of each copied file, when it gave one
        self.copied = 0
        self.total_size: int | None = None
        self.regular_files: int | None = None  # from --stats: "Number of files: N (reg: R, dir: D)"
        self.redone = False  # rsync re-sent a file that failed its transfer check
        self.on_start: Callable[[], None] | None = None
        self._last = time.monotonic()

    def __call__(self, line: str) -> None:
        if self.on_start is not None:
            self.on_start()
            self.on_start = None
        if line.startswith("::") and len(line) > 14:  # a NAMED_FORMAT record
            self._record(line)
            return
        if "failed verification" in line:
            self.redone = True
        self._stats(line)
        if not line.strip():
            return
        if line.startswith(_STATS_HIDDEN) and not line.startswith(_STATS_SHOWN):
            return
        if line.startswith(("sent ", "total size is ")):
            return
        self.log(line)

    def _record(self, line: str) -> None:
        code = line[2:13]
        if code.startswith(">f"):
            rel = rsync_name(line[14:])
            self.transferred.add(rel)
            if self.on_transfer is not None:
                self.on_transfer(rel)
        elif code.startswith("cf"):
            self.copied += 1
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self.log(f"… {len(self.transferred):,} files copied so far")

    def _stats(self, line: str) -> None:
        if line.startswith("Number of files:"):
            m = re.search(r"reg: ([0-9,.]+)", line)
            if m:
                self.regular_files = int(re.sub(r"[^0-9]", "", m.group(1)))
        if line.startswith("Total file size:"):
            digits = re.sub(r"[^0-9]", "", line.split(":", 1)[1].split("bytes")[0])
            self.total_size = int(digits) if digits else None


class RecordsReader:
    """Reads rsync's stdout from the file it goes to: ``SUMMED_FORMAT`` records, stats, notices.

    rsync writes 20,000 records in a few milliseconds to a file, where a pipe read line by line
    would cost more than rsync's own copy of 20,000 small files. The file is read (through the
    descriptor it was created with, never reopened by name) while rsync writes it: the records
    are parsed as they come, and every few seconds a progress line says how many files were
    copied. :meth:`finish` reads the rest.
    """

    POLL = 0.25
    CHUNK = 8 << 20

    def __init__(self, fd: int, log: Callable[[str], None]) -> None:
        self.fd = fd
        self.log = log
        self.lines: list[bytes] = []  # "CHECKSUM  NAME" of each file sent, names as rsync wrote them
        self.unsummed: list[bytes] = []  # names of files sent without a checksum (none, normally)
        self.copied = 0  # files copied locally from the --link-dest snapshot (attributes changed)
        self.escaped = False  # some name holds a backslash: rsync's \#ooo escapes or a real one
        self.malformed = False  # a record not in the expected shape: its checksums are not used
        self.other: list[str] = []  # the lines that are not records: stats, notices
        self._offset = 0
        self._last_progress = time.monotonic()
        self._error: Exception | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, name="runbook-rsync-records", daemon=True)
        self._thread.start()

    def _take(self, data: bytes) -> None:
        # C-level passes (a regex, counts) over the chunk; Python looks at single lines only when
        # a record is not the usual "::>f+++++++++ CHECKSUM  NAME".
        summed = _SUMMED.findall(data)
        self.lines += summed
        text = b"\n" + data
        if text.count(b"\n::>f") > len(summed):
            for line in data.split(b"\n"):
                if line[:4] == b"::>f" and _SUMMED.fullmatch(line) is None:
                    if line[14:48] == b" " * 34 and len(line) > 48:
                        self.unsummed.append(line[48:])
                    else:
                        self.malformed = True
        self.copied += text.count(b"\n::cf")
        if b"\\" in data:
            self.escaped = True
        for m in _NOT_RECORD.finditer(text):
            end = text.find(b"\n", m.end())
            line = text[m.end() : end if end >= 0 else len(text)]
            if line:
                self.other.append(line.decode("utf-8", "replace"))

    def _read(self, final: bool) -> None:
        # A tight read loop, not a poll: it drains what rsync has written so far (pread at the
        # growing offset until it returns nothing) and returns at once; the waiting between
        # drains is the poll in _work.
        chunk = b""
        while part := os.pread(self.fd, self.CHUNK, self._offset + len(chunk)):
            chunk += part
        end = len(chunk) if final else chunk.rfind(b"\n") + 1  # whole lines only while rsync writes
        if end:
            self._offset += end
            self._take(chunk[:end])

    def _poll(self) -> None:
        try:
            self._read(final=False)
        except OSError:
            return  # read again on the next poll; finish() reports a lasting error
        if time.monotonic() - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = time.monotonic()
            self.log(f"… {self.sent:,} files copied so far")

    def _work(self) -> None:
        try:  # until stop(): "cancelled" is this reader's own stop signal
            wait_until(self._poll, lambda _: False, timeout=None, every=self.POLL, cancelled=self._done)
        except WaitCancelled:
            return
        except Exception as exc:  # noqa: BLE001 - the step's log failed (a full disk): finish() raises it
            self._error = exc

    @property
    def sent(self) -> int:
        """Files rsync sent (new or changed)."""
        return len(self.lines) + len(self.unsummed)

    def stop(self) -> None:
        """Stop reading while rsync runs (idempotent)."""
        self._done.set()
        self._thread.join()

    def finish(self) -> None:
        """After rsync exited: read the records not read yet.

        Raises:
            ActionError: The file could not be read.
        """
        self.stop()
        if self._error is not None:
            raise self._error
        try:
            self._read(final=True)
        except OSError as exc:
            raise ActionError(f"Cannot read rsync's list of copied files: {exc.strerror}.") from None

    def manifest(self) -> bytes | None:
        """The manifest straight from the records (in the order rsync copied the files), when
        every file has its checksum and no name needs unescaping; else None."""
        if self.escaped or self.copied or self.unsummed or self.malformed:
            return None
        return b"\n".join(self.lines) + b"\n" if self.lines else b""

    def apply(self, out: RsyncOutput, *, checksums: bool) -> None:
        """Hand the records to ``out`` as names and (when ``checksums``) rsync's checksums."""

        def name(raw: bytes) -> str:
            return rsync_name(raw.decode("utf-8", "surrogateescape"))

        summed = [name(line[34:]) for line in self.lines]
        names = summed + [name(raw) for raw in self.unsummed]
        out.transferred.update(names)
        if len(out.transferred) < len(names):
            out.redone = True  # a file sent twice: rsync re-sent it after a failed transfer check
        if checksums and not self.malformed:
            out.digests.update(zip(summed, (line[:32].decode() for line in self.lines), strict=True))
        out.copied += self.copied


@functools.cache
def rsync_has_xxh128() -> bool:
    """Whether the installed rsync can use xxh128 checksums (3.2.3+ built with xxhash 0.8)."""
    try:
        result = run_process(["rsync", "--version"], log=lambda _line: None, capture=True, timeout=10)
    except ActionError:  # not installed
        return False
    text = result.captured or ""
    listed = text.split("Checksum list:", 1)[1].split("\n", 2)[1] if "Checksum list:" in text else ""
    return "xxh128" in listed.split()


def serialized(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` for two threads (rsync's stderr and the records reader): one line at a time."""
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            log(line)

    return locked


def run_rsync(
    ctx: StepContext, argv: list[str], out: RsyncOutput, stdout_to: BinaryIO | None = None
) -> ProcessResult:
    # Same context (cancel event, timeout), but rsync's lines go through the filter first.
    filtered = dataclasses.replace(ctx, log=out)
    return filtered.run_process(argv, env={"LC_ALL": "C"}, stdout_to=stdout_to)


def rsync_failed(result: ProcessResult, what: str) -> ActionError:
    if result.cancelled:
        return ActionError(f"The {what} was stopped by the operator.")
    if result.timed_out:
        return ActionError(f"The {what} was stopped: it exceeded the step's timeout.")
    return ActionError(describe_failure(result))


def perm_options(mode: str | None, owner: str | None, log: Callable[[str], None] | None = None) -> list[str]:
    opts = []
    if mode:
        opts.append(f"--chmod=D{mode},F{mode}")
    if owner:
        if os.geteuid() == 0:
            opts.append(f"--chown={owner}")
        elif log is not None:
            log(f"WARNING: not running as root: ownership is left as it is (wanted {owner})")
    return opts
