"""File storage: rsync snapshots with hard links, checksum manifests, restores, pruning and checks.

The seed's storage backup (``rsync -a --delete --link-dest=BACKUPS/latest ROOT/ BACKUPS/backup_DATE/``
then repoint ``latest``), its full, tenant and dataset restores, and its verification, made safe
to run at 3 a.m.:

* A snapshot is copied into ``BACKUPS/.incomplete-NAME/`` and renamed to ``NAME`` only once rsync
  succeeded and the manifest is written, so a killed run never leaves a ``backup_*`` that looks
  complete. ``latest`` is replaced atomically (a new symlink renamed over the old one).
* Every snapshot holds a manifest: one ``<digest>  <path relative to the snapshot>`` line per
  regular file (sorted by path; on a first snapshot, in the order rsync copied them), with GNU
  escaping (a leading backslash, ``\\\\``, ``\\n``, ``\\r``) for names holding a backslash or
  a line break. Symlinks are kept by rsync but not listed. Its name starts with a dot, which no
  tenant id can, so it never collides with the data; snapshots and restores exclude it. Two kinds:

  - ``.runbook-manifest.xxh128`` (the default): XXH3-128 digests, the whole-file checksum rsync
    already computes to check every file it copies. rsync reports it per file (``%C`` in its log
    file), so the manifest costs no extra read of the data. ``xxh128sum -c`` checks it by hand.
  - ``.runbook-manifest.sha256`` (``checksums: sha256``): cryptographic digests, computed by
    reading each copied file once more while rsync goes on copying the next ones.
    ``sha256sum -c`` checks it by hand.

  Verification and restores read whichever manifest a snapshot has.
* The digest of every unchanged file (hard-linked to the previous snapshot: same inode, same
  content) is reused from the previous snapshot's manifest instead of being read again.
* Tenant and dataset ids are single path components, checked before any path is joined, and the
  joined paths must not run through a symlink or leave the snapshot or the storage root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.actions.support.fs import human_bytes, tree_size
from runbook.actions.support.process import ProcessResult, describe_failure
from runbook.core.durations import format_duration, parse_duration
from runbook.core.errors import ActionError

CHECKSUMS = ("xxh128", "sha256")  # manifest kinds, the default first
MANIFESTS = {algo: f".runbook-manifest.{algo}" for algo in CHECKSUMS}
MANIFEST = MANIFESTS["xxh128"]  # what a new snapshot holds by default
_HEXLEN = {"xxh128": 32, "sha256": 64}
_CHECK_BY_HAND = {"xxh128": "xxh128sum -c", "sha256": "sha256sum -c"}
INCOMPLETE = ".incomplete-"
RECORDS = ".files"  # rsync's stdout (the files it copied), beside .incomplete-NAME while it runs
LOCK = ".runbook.lock"
LATEST = "latest"
CHUNK = 1 << 20
PROGRESS_EVERY = 2.0  # seconds between "N files copied so far" lines

_MANIFEST_NAMES = frozenset(MANIFESTS.values())
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_MODE = re.compile(r"[0-7]{3,4}")
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


# --- validation -----------------------------------------------------------------------------


def check_id(value: Any, what: str) -> str:
    """``value`` if it is one safe path component (a tenant, dataset or snapshot name).

    Raises:
        ValueError: One sentence naming the bad id.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} id {value!r} is not a valid id: use letters, digits, '.', '_' or '-'.")
    text = str(value)
    if not _ID.fullmatch(text) or text in (".", ".."):
        raise ValueError(f"{what} id {text!r} is not a valid id: use letters, digits, '.', '_' or '-'.")
    return text


def require_id(value: Any, what: str) -> str:
    """:func:`check_id` at run time: the same sentence as an :class:`ActionError`."""
    try:
        return check_id(value, what)
    except ValueError as exc:
        raise ActionError(str(exc)) from None


def _check_pattern(value: str) -> str:
    if not value or "/" in value or "\x00" in value or value.startswith("."):
        raise ValueError(
            f"pattern {value!r} must be a name glob like backup_* (no '/', not starting with '.')"
        )
    return value


def _check_snapshot_ref(value: str) -> str:
    """``latest``, a snapshot name, or an absolute path to a snapshot directory."""
    if "\x00" in value:
        raise ValueError("snapshot contains a NUL byte")
    if "/" in value:
        if not value.startswith("/"):
            raise ValueError(
                f"snapshot {value!r} must be a name in the backups directory or an absolute path"
            )
        return value
    return check_id(value, "Snapshot")


def _abs(path: str, what: str) -> str:
    if not path or "\x00" in path:
        raise ActionError(f"The {what} path is empty or contains a NUL byte.")
    return os.path.abspath(os.path.expanduser(path))


def _inside(child: str, parent: str) -> bool:
    """True when real path ``child`` is ``parent`` or below it."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def _printable(rel: str) -> str:
    return rel if rel.isprintable() else ascii(rel)


# --- files, manifests -----------------------------------------------------------------------


def walk_files(top: str, sub: str = "") -> list[str]:
    """Relative ``/``-joined paths of the regular files under ``top/sub``; symlinks are not followed.

    The manifest at the top level is left out. Uses ``os.scandir`` file types only (no stat).
    """
    out: list[str] = []
    stack = [sub]
    while stack:
        rel = stack.pop()
        here = os.path.join(top, rel) if rel else top
        try:
            it = os.scandir(here)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ActionError(f"Cannot read directory {here}: {exc.strerror}.") from None
        with it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif entry.is_file(follow_symlinks=False) and name not in _MANIFEST_NAMES:
                    out.append(name)
    return out


def _hasher(algo: str) -> Any:
    if algo == "xxh128":
        import xxhash  # small C extension; only storage needs it

        return xxhash.xxh3_128()
    return hashlib.sha256()


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def hash_file(path: str, algo: str = "sha256") -> tuple[str, int]:
    """Hex digest (``sha256`` or ``xxh128``) and bytes read of a regular file; a symlink is refused (O_NOFOLLOW)."""
    fd = os.open(path, _OPEN)
    try:
        h = _hasher(algo)
        n = 0
        # os.read into fresh bytes beats readinto for the many small files a tree usually holds.
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
            n += len(chunk)
        return h.hexdigest(), n
    finally:
        os.close(fd)


def _quick_hasher(algo: str) -> Callable[[str], tuple[str, int]]:
    """:func:`hash_file` for trees of many small files: one read, and a file shorter than the
    read is taken as complete (one syscall and no hash object fewer per file). Any mismatch it
    reports must be confirmed with :func:`hash_file`."""
    if algo == "xxh128":
        import xxhash

        digest: Callable[[bytes], str] = xxhash.xxh3_128_hexdigest
    else:
        digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    read, open_, close = os.read, os.open, os.close

    def quick(path: str) -> tuple[str, int]:
        fd = open_(path, _OPEN)
        try:
            data = read(fd, CHUNK)
            if len(data) < CHUNK:
                return digest(data), len(data)
            h = _hasher(algo)
            h.update(data)
            n = len(data)
            while chunk := read(fd, CHUNK):
                h.update(chunk)
                n += len(chunk)
            return h.hexdigest(), n
        finally:
            close(fd)

    return quick


def find_manifest(snap: str) -> tuple[str, str] | None:
    """(path, algorithm) of the manifest in snapshot ``snap``, or None when it has none."""
    for algo in CHECKSUMS:
        path = os.path.join(snap, MANIFESTS[algo])
        if os.path.isfile(path):
            return path, algo
    return None


def manifest_line(rel: str, digest: str) -> str:
    """One ``sha256sum``/``xxh128sum`` line, escaped the GNU way when the name holds a backslash or line break."""
    if "\\" in rel or "\n" in rel or "\r" in rel:
        name = rel.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {name}\n"
    return f"{digest}  {rel}\n"


def write_manifest(path: str, entries: dict[str, str]) -> None:
    """Write ``entries`` (relative path → hex digest) sorted by path, names as the filesystem has them."""
    names = sorted(entries)
    if any(c in "".join(names) for c in "\\\n\r"):
        text = "".join([manifest_line(rel, entries[rel]) for rel in names])
    else:  # the usual case: no name needs escaping, so skip the per-name checks
        text = "".join([f"{entries[rel]}  {rel}\n" for rel in names])
    with open(path, "wb") as f:
        f.write(text.encode("utf-8", "surrogateescape"))


_HEX = re.compile(r"[0-9a-fA-F]*")


def read_manifest(path: str, algo: str | None = None) -> dict[str, str]:
    """Relative path → hex digest from a ``sha256sum``- or ``xxh128sum``-format file.

    Args:
        path: The manifest.
        algo: ``sha256`` or ``xxh128``; by default taken from the file name.

    Raises:
        ActionError: The file cannot be read or a line is not a checksum line.
    """
    if algo is None:
        algo = "xxh128" if path.endswith(".xxh128") else "sha256"
    width = _HEXLEN[algo]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ActionError(f"Cannot read the manifest {path}: {exc.strerror}.") from None
    # Decoded once like the filesystem decodes names, so keys equal what os.scandir returns.
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    plain = [line for line in lines if line[:1] != "\\"]
    start = width + 2
    if len(plain) == len(lines) and all(line[width:start] in ("  ", " *") and len(line) > start for line in lines):
        out = {line[start:]: line[:width] for line in lines}
    else:
        out = {}
        for number, line in enumerate(lines, 1):
            escaped = line[:1] == "\\"
            body = line[1:] if escaped else line
            if len(body) <= start or body[width:start] not in ("  ", " *"):
                raise ActionError(f"The manifest {path} is damaged at line {number}.")
            name = body[start:]
            if escaped:
                name = re.sub(
                    r"\\(.)", lambda m: {"\\": "\\", "n": "\n", "r": "\r"}.get(m.group(1), m.group(0)), name
                )
            out[name] = body[:width]
    digests = "".join(out.values())
    if _HEX.fullmatch(digests) is None:  # one C-level pass over every digest
        bad = next(n for n, d in enumerate(out.values(), 1) if _HEX.fullmatch(d) is None)
        raise ActionError(f"The manifest {path} is damaged: entry {bad} is not a valid {algo} digest.")
    if not digests.islower() and any(c in digests for c in "ABCDEF"):
        out = {k: v.lower() for k, v in out.items()}
    return out


def verify_tree(
    ctx: StepContext,
    tree: str,
    expected: dict[str, str],
    *,
    algo: str = "sha256",
    sub: str = "",
    extras: bool = True,
) -> tuple[int, int, list[str]]:
    """Hash the files under ``tree/sub`` listed in ``expected`` and compare.

    Only files the walk saw as regular files are opened, so a hostile manifest entry
    (``../../etc/passwd``) or a symlink in the tree is reported, never read.

    Returns:
        (files checked, bytes read, problems as sentences fragments sorted by path).
    """
    prefix = f"{sub}/" if sub else ""
    wanted = {k: v for k, v in expected.items() if k.startswith(prefix)} if prefix else expected
    present = set(walk_files(tree, sub))
    problems: list[tuple[str, str]] = []
    files = total = 0
    quick, cancelled, top = _quick_hasher(algo), ctx.cancelled, tree.rstrip("/") + "/"
    for rel, digest in wanted.items():
        if cancelled.is_set():
            raise ActionError("Verification was stopped by the operator.")
        if rel not in present:
            problems.append((rel, f"{_printable(rel)} is missing"))
            continue
        try:
            actual, n = quick(top + rel)
            if actual != digest:  # confirmed the strict way before it is reported
                actual, n = hash_file(top + rel, algo)
        except OSError as exc:
            problems.append((rel, f"{_printable(rel)} cannot be read ({exc.strerror})"))
            continue
        files += 1
        total += n
        if actual != digest:
            problems.append((rel, f"{_printable(rel)} does not match its manifest checksum"))
    if extras:
        problems.extend((rel, f"{_printable(rel)} is not in the manifest") for rel in present - wanted.keys())
    problems.sort()
    return files, total, [text for _, text in problems]


def _problem_sentence(what: str, problems: list[str]) -> str:
    more = len(problems) - 1
    tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
    return f"{what} failed verification: {problems[0]}{tail}."


# --- snapshots in a backups directory ------------------------------------------------------


def snapshot_dirs(backups: str, pattern: str = "*") -> list[tuple[float, str]]:
    """(mtime, name) of the snapshot directories, oldest first; symlinks and dot-names are skipped."""
    out = []
    try:
        entries = list(os.scandir(backups))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ActionError(f"Cannot read the backups directory {backups}: {exc.strerror}.") from None
    for entry in entries:
        if entry.name.startswith(".") or entry.name == LATEST or not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        out.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    out.sort()
    return out


def latest_target(backups: str) -> str | None:
    """Name of the snapshot ``latest`` points to, if it is a symlink to a directory inside ``backups``."""
    link = os.path.join(backups, LATEST)
    if not os.path.islink(link):
        return None
    real = os.path.realpath(link)
    if not os.path.isdir(real) or os.path.dirname(real) != os.path.realpath(backups):
        return None
    return os.path.basename(real)


def resolve_snapshot(backups: str | None, snapshot: str) -> str:
    """Real path of ``snapshot`` (``latest``, a name in ``backups`` or an absolute path).

    Raises:
        ActionError: It does not exist, is not a directory, or (by name) resolves outside ``backups``.
    """
    if "/" in snapshot:
        path = os.path.realpath(snapshot)
        if not os.path.isdir(path):
            raise ActionError(f"Snapshot not found: {snapshot} is not a directory.")
        return path
    if not backups:
        raise ActionError(f"Snapshot {snapshot!r} is a name, so the backups directory must be given.")
    base = os.path.realpath(_abs(backups, "backups"))
    candidate = os.path.join(base, snapshot)
    if not os.path.lexists(candidate):
        raise ActionError(f"Snapshot {snapshot} not found in {base}.")
    path = os.path.realpath(candidate)
    if not os.path.isdir(path):
        raise ActionError(f"Snapshot {snapshot} in {base} is not a directory.")
    if not _inside(path, base) or path == base:
        raise ActionError(
            f"Snapshot {snapshot} points outside the backups directory {base}; refusing to use it."
        )
    return path


@contextlib.contextmanager
def _backups_lock(backups: str, what: str) -> Iterator[None]:
    """One snapshot or prune at a time per backups directory (an advisory flock)."""
    fd = os.open(os.path.join(backups, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ActionError(
                f"Another snapshot or prune is running in {backups}; wait for it before the {what}."
            ) from None
        yield
    finally:
        os.close(fd)


def _check_separate(root: str, backups: str) -> None:
    r, b = os.path.realpath(root), os.path.realpath(backups)
    if _inside(b, r):
        raise ActionError(
            f"The backups directory {backups} is inside the storage root {root}; keep them apart."
        )
    if _inside(r, b):
        raise ActionError(
            f"The storage root {root} is inside the backups directory {backups}; keep them apart."
        )


# --- rsync ---------------------------------------------------------------------------------


def _rsync_name(text: str) -> str:
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


# Per-file records on rsync's stdout, "::" marking them apart from rsync's own messages:
# "::%i %n" (11 itemize characters, the name) on a pipe read line by line (restores, sha256
# snapshots), and "::%i %C  %n" (then the 32-character xxh128 whole-file checksum or blanks, two
# spaces, the name: from the checksum on, a manifest line) in a file for xxh128 snapshots.
_NAMED_FORMAT = "::%i %n"
_SUMMED_FORMAT = "::%i %C  %n"
_SUMMED = re.compile(rb"^::>f.{9} ([0-9a-f]{32}  .+)$", re.MULTILINE)
_NOT_RECORD = re.compile(rb"\n(?!::)")  # the start of a line that is not a record: found in C


class _RsyncOutput:
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
        if line.startswith("::") and len(line) > 14:  # a _NAMED_FORMAT record
            code = line[2:13]
            if code.startswith(">f"):
                rel = _rsync_name(line[14:])
                self.transferred.add(rel)
                if self.on_transfer is not None:
                    self.on_transfer(rel)
            elif code.startswith("cf"):
                self.copied += 1
            now = time.monotonic()
            if now - self._last >= PROGRESS_EVERY:
                self._last = now
                self.log(f"… {len(self.transferred):,} files copied so far")
            return
        if "failed verification" in line:
            self.redone = True
        if line.startswith("Number of files:"):
            m = re.search(r"reg: ([0-9,.]+)", line)
            if m:
                self.regular_files = int(re.sub(r"[^0-9]", "", m.group(1)))
        if line.startswith("Total file size:"):
            digits = re.sub(r"[^0-9]", "", line.split(":", 1)[1].split("bytes")[0])
            self.total_size = int(digits) if digits else None
        if not line.strip():
            return
        if line.startswith(_STATS_HIDDEN) and not line.startswith(_STATS_SHOWN):
            return
        if line.startswith(("sent ", "total size is ")):
            return
        self.log(line)


class _RecordsReader:
    """Reads rsync's stdout from the file it goes to: ``_SUMMED_FORMAT`` records, stats, notices.

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
        chunk = b""
        while part := os.pread(self.fd, self.CHUNK, self._offset + len(chunk)):
            chunk += part
        end = len(chunk) if final else chunk.rfind(b"\n") + 1  # whole lines only while rsync writes
        if end:
            self._offset += end
            self._take(chunk[:end])

    def _work(self) -> None:
        last = time.monotonic()
        while not self._done.wait(self.POLL):
            try:
                self._read(final=False)
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    self.log(f"… {self.sent:,} files copied so far")
            except OSError:
                continue  # read again on the next poll; finish() reports a lasting error
            except Exception as exc:  # noqa: BLE001 - the step's log failed (a full disk): finish() raises it
                self._error = exc
                return

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

    def apply(self, out: _RsyncOutput, *, checksums: bool) -> None:
        """Hand the records to ``out`` as names and (when ``checksums``) rsync's checksums."""
        def name(raw: bytes) -> str:
            return _rsync_name(raw.decode("utf-8", "surrogateescape"))

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
        text = subprocess.run(
            ["rsync", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    listed = text.split("Checksum list:", 1)[1].split("\n", 2)[1] if "Checksum list:" in text else ""
    return "xxh128" in listed.split()


def _serialized(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` for two threads (rsync's stderr and the records reader): one line at a time."""
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            log(line)

    return locked


def _run_rsync(
    ctx: StepContext, argv: list[str], out: _RsyncOutput, stdout_to: BinaryIO | None = None
) -> ProcessResult:
    # Same context (cancel event, timeout), but rsync's lines go through the filter first.
    filtered = dataclasses.replace(ctx, log=out)
    return filtered.run_process(argv, env={"LC_ALL": "C"}, stdout_to=stdout_to)


def _rsync_failed(result: ProcessResult, what: str) -> ActionError:
    if result.cancelled:
        return ActionError(f"The {what} was stopped by the operator.")
    if result.timed_out:
        return ActionError(f"The {what} was stopped: it exceeded the step's timeout.")
    return ActionError(describe_failure(result))


def _perm_options(mode: str | None, owner: str | None, log: Callable[[str], None] | None = None) -> list[str]:
    opts = []
    if mode:
        opts.append(f"--chmod=D{mode},F{mode}")
    if owner:
        if os.geteuid() == 0:
            opts.append(f"--chown={owner}")
        elif log is not None:
            log(f"WARNING: not running as root: ownership is left as it is (wanted {owner})")
    return opts


class _Background:
    """Runs one function in a thread once started; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller
            self._error = exc

    def result(self) -> Any:
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class _LiveHasher:
    """Hashes the files rsync reports as copied while rsync is still copying the next ones.

    rsync names a file before sending it and renames its temporary file to the final name only
    when the file is complete, so a final name that exists in the (fresh) destination is done.
    Files are hashed in rsync's order; one that never appears is left to the final pass.
    """

    def __init__(self, top: str, cancelled: threading.Event) -> None:
        self.top = top
        self.cancelled = cancelled
        self.hashed: dict[str, str] = {}
        self._pending: deque[str] = deque()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, name="runbook-hasher", daemon=True)
        self._thread.start()

    def add(self, rel: str) -> None:
        self._pending.append(rel)

    def finish(self) -> None:
        self._done.set()
        self._thread.join()

    def _work(self) -> None:
        pending, done = self._pending, self._done
        while not self.cancelled.is_set():
            if not pending:
                if done.is_set():
                    return
                done.wait(0.005)
                continue
            rel = pending[0]
            try:
                self.hashed[rel] = hash_file(os.path.join(self.top, rel))[0]
            except FileNotFoundError:
                if not done.is_set():
                    done.wait(0.002)  # still being copied
                    continue
            except OSError:
                pass  # the final pass reports it
            pending.popleft()


# --- storage.snapshot ----------------------------------------------------------------------


class SnapshotParams(ActionParams):
    root: str = Field(description="The live storage tree, e.g. {{ env.storage.root }}.")
    backups: str = Field(
        description="Directory holding the snapshots and `latest`, e.g. {{ env.storage.backups }}."
    )
    tag: str | None = Field(
        None,
        description="Name prefix instead of 'backup', e.g. pre_deployment → pre_deployment_YYYYmmdd_HHMMSS.",
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


def _previous(backups: str) -> str | None:
    """The snapshot to hard-link against: ``latest``, else the newest one that has a manifest."""
    name = latest_target(backups)
    if name:
        return name
    for _, candidate in reversed(snapshot_dirs(backups)):
        if find_manifest(os.path.join(backups, candidate)):
            return candidate
    return None


def _snapshot_argv(root: str, dest: str, link_dest: str | None, checksum: bool, xxh128: bool) -> list[str]:
    # Per-file records (only for files rsync copies) say which files are new; the others are hard
    # links whose digests are reused. For an xxh128 manifest each record carries the checksum rsync
    # computed while copying (xxh128 named, whatever RSYNC_CHECKSUM_LIST says); for sha256 the files
    # are hashed as their records arrive.
    argv = ["rsync", "-a", "--delete", "--stats", "--no-human-readable"]
    if xxh128:
        argv += [f"--out-format={_SUMMED_FORMAT}", "--checksum-choice=xxh128"]
    else:
        argv.append(f"--out-format={_NAMED_FORMAT}")
    argv.append("--exclude=/.runbook-manifest.*")
    if checksum:
        argv.append("--checksum")
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    argv += [root.rstrip("/") + "/", dest.rstrip("/") + "/"]
    return argv


class SnapshotAction(BaseAction):
    name: ClassVar[str] = "storage.snapshot"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = (
        "Incremental snapshot of the storage tree (rsync --link-dest), with a checksum manifest; repoints `latest`."
    )
    Params = SnapshotParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The new snapshot directory.",
        "name": "Its name, e.g. backup_20251123_030000.",
        "files": "Regular files in it.",
        "bytes": "Their total size.",
        "linked": "Files hard-linked to (or copied from) the previous snapshot, unchanged.",
        "new_files": "Files copied from the live tree (new or changed).",
        "previous": "The snapshot it was linked against ('' for the first).",
        "manifest": "Path of its manifest (.runbook-manifest.xxh128 or .sha256).",
    }

    def target(self, params: SnapshotParams) -> str:
        return params.backups

    def describe(self, params: SnapshotParams) -> str:
        backups = os.path.abspath(params.backups)
        prev = _previous(backups) if os.path.isdir(backups) else None
        name = params.name or f"{params.tag or 'backup'}_<YYYYmmdd_HHMMSS>"
        tmp = os.path.join(backups, INCOMPLETE + name)
        xxh128 = params.checksums == "xxh128"
        argv = _snapshot_argv(
            os.path.abspath(params.root), tmp, os.path.join(backups, prev) if prev else None, params.checksum, xxh128
        )
        then = f" > {shlex.quote(tmp + RECORDS)}" if xxh128 else ""
        then += f"; then write {MANIFESTS[params.checksums]}, rename to {name}"
        if params.update_latest:
            then += f" and point {os.path.join(backups, LATEST)} at it"
        return shlex.join(argv) + then

    def run(self, ctx: StepContext, params: SnapshotParams) -> dict[str, Any]:
        root = _abs(params.root, "storage root")
        backups = _abs(params.backups, "backups")
        if not os.path.isdir(root):
            raise ActionError(f"Storage root not found: {root} is not a directory.")
        _check_separate(root, backups)
        try:
            os.makedirs(backups, exist_ok=True)
        except OSError as exc:
            raise ActionError(f"Cannot create the backups directory {backups}: {exc.strerror}.") from None
        link = os.path.join(backups, LATEST)
        if os.path.lexists(link) and not os.path.islink(link):
            raise ActionError(
                f"{link} is not a symlink; move it away so `latest` can point at the newest snapshot."
            )
        with _backups_lock(backups, "snapshot"):
            self._clean_incomplete(ctx, backups)
            name = self._new_name(params, backups)
            prev = _previous(backups)
            prev_path = os.path.join(backups, prev) if prev else None
            final = os.path.join(backups, name)
            tmp = os.path.join(backups, INCOMPLETE + name)
            ctx.log(
                f"snapshot {root} → {final}"
                + (f" (unchanged files hard-linked to {prev})" if prev else " (first snapshot: full copy)")
            )
            stats = self._copy(ctx, params, root, tmp, prev_path)
            os.rename(tmp, final)
            os.utime(final)  # rsync -a gave it the live root's mtime; its age is when it completed
            if params.update_latest:
                self._point_latest(backups, name)
                ctx.log(f"{link} → {name}")
        stats.update(
            path=final, name=name, previous=prev or "", manifest=os.path.join(final, MANIFESTS[stats.pop("algo")])
        )
        ctx.log(
            f"{name} complete: {stats['files']:,} files, {human_bytes(stats['bytes'])}; "
            f"{stats['linked']:,} unchanged (hard-linked), {stats['new_files']:,} new or changed"
        )
        return stats

    @staticmethod
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

    @staticmethod
    def _new_name(params: SnapshotParams, backups: str) -> str:
        if params.name:
            if os.path.lexists(os.path.join(backups, params.name)):
                raise ActionError(f"Snapshot {params.name} already exists in {backups}; choose another name.")
            return params.name
        base = f"{params.tag or 'backup'}_{time.strftime('%Y%m%d_%H%M%S')}"
        name, n = base, 1
        while os.path.lexists(os.path.join(backups, name)):  # two snapshots in the same second
            n += 1
            name = f"{base}-{n}"
        return name

    def _copy(
        self, ctx: StepContext, params: SnapshotParams, root: str, tmp: str, prev: str | None
    ) -> dict[str, Any]:
        """rsync into ``tmp`` and write its manifest; on any failure ``tmp`` is removed.

        Returns the stats, with ``algo`` the kind of manifest written.
        """
        algo = params.checksums
        if algo == "xxh128" and not rsync_has_xxh128():
            ctx.log("WARNING: this rsync has no xxh128 checksum (rsync 3.2.3 or later has): the manifest is sha256")
            algo = "sha256"
        prev_manifest: dict[str, str] = {}
        loader = None
        found = find_manifest(prev) if prev else None
        if found and found[1] == algo:
            # Parsed on the side while rsync copies, from rsync's first line on so that it does
            # not delay rsync's start.
            loader = _Background(read_manifest, *found)
        elif found:
            ctx.log(f"{os.path.basename(prev or '')} has a {found[1]} manifest, not {algo}: every file will be hashed")
        elif prev:
            ctx.log(f"WARNING: {os.path.basename(prev)} has no manifest; every file will be hashed")
        # xxh128: rsync's own checksums, its stdout kept in a file. sha256: files hashed as rsync
        # names them on a pipe.
        records = tmp + RECORDS if algo == "xxh128" else None
        hasher = _LiveHasher(tmp, ctx.cancelled) if records is None else None
        log = _serialized(ctx.log)
        out = _RsyncOutput(log, on_transfer=hasher.add if hasher else None)
        reader = None
        if loader is not None:
            out.on_start = loader.start
        kept = False
        stdout_to = None
        try:
            if records is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(records)
                fd = os.open(records, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                stdout_to = os.fdopen(fd, "r+b", buffering=0)  # rsync writes; the reader preads
                reader = _RecordsReader(fd, log)
                if loader is not None:
                    loader.start()
            argv = _snapshot_argv(root, tmp, prev, params.checksum, records is not None)
            result = _run_rsync(ctx, argv, out, stdout_to=stdout_to)
            vanished = result.exit_code == 24 and not (result.cancelled or result.timed_out)
            if reader is not None:
                try:
                    reader.finish()
                except ActionError:
                    if result.ok or vanished:
                        raise
                for line in reader.other:  # stats and notices, as if they had come on the pipe
                    out(line)
            if hasher is not None:
                hasher.finish()
            if ctx.cancelled.is_set() and result.ok:
                result.cancelled = True
            if vanished:
                ctx.log("WARNING: some files vanished from the live tree while it was copied (rsync code 24)")
                out.regular_files = None  # rsync counted files it then did not copy: walk the snapshot
            elif not result.ok:
                raise _rsync_failed(result, "snapshot")
            if reader is not None:
                # With --checksum, rsync's %C is the checksum it took when it listed the files,
                # not of what it copied (a file can change in between): those files are read.
                checksums = not params.checksum
                if prev is None and checksums and not out.redone and out.regular_files == reader.sent:
                    text = reader.manifest()
                    if text is not None:  # the common first snapshot: rsync's records are the manifest
                        stats = self._write_records_manifest(ctx, tmp, text, reader.sent, out)
                        kept = True
                        return stats
                reader.apply(out, checksums=checksums)
            if loader is not None:
                try:
                    prev_manifest = loader.result()
                except ActionError as exc:
                    ctx.log(f"WARNING: {exc} Every file will be hashed.")
            # A file rsync had to send twice: its digests are not trusted, every copied file is read.
            early = {} if out.redone else (hasher.hashed if hasher is not None else out.digests)
            stats = self._write_manifest(ctx, tmp, out, early, prev_manifest, prev, algo)
            if stats["bytes"] is None:
                stats["bytes"] = tree_size(Path(tmp))
            kept = True
            return stats
        finally:
            if reader is not None:
                reader.stop()
            if stdout_to is not None:
                stdout_to.close()
            if hasher is not None:
                hasher.finish()
            if records is not None:
                with contextlib.suppress(OSError):
                    os.unlink(records)
            if not kept:
                shutil.rmtree(tmp, ignore_errors=True)
                ctx.log("no snapshot was kept: the incomplete copy was removed")

    @staticmethod
    def _write_records_manifest(
        ctx: StepContext, tmp: str, text: bytes, files: int, out: _RsyncOutput
    ) -> dict[str, Any]:
        path = os.path.join(tmp, MANIFESTS["xxh128"])
        with open(path, "wb") as f:
            f.write(text)
        ctx.log(f"{MANIFESTS['xxh128']}: {files:,} files, every one checksummed by rsync as it copied")
        size = out.total_size if out.total_size is not None else tree_size(Path(tmp))
        return {"files": files, "bytes": size, "new_files": files, "linked": 0, "algo": "xxh128"}

    @staticmethod
    def _write_manifest(
        ctx: StepContext,
        tmp: str,
        out: _RsyncOutput,
        early: dict[str, str],
        prev_manifest: dict[str, str],
        prev: str | None,
        algo: str,
    ) -> dict[str, Any]:
        """Write the manifest from the digests known already (rsync's, or hashed while it ran),
        reused ones (hard links to the previous snapshot) and, for anything else, a read now."""
        started = time.monotonic()
        transferred = out.transferred
        entries: dict[str, str | None] = {}
        # One walk that also picks each file's hash: hashed while rsync ran, else (not copied by
        # rsync, so hard-linked to the previous snapshot) reused from the previous manifest.
        early_get, prev_get, scandir, join = early.get, prev_manifest.get, os.scandir, os.path.join
        stack = [""]
        # Every file of the new snapshot was either copied (rsync named it) or hard-linked from the
        # previous one (in its manifest). When that candidate set has exactly as many files as
        # rsync counted, it *is* the snapshot's file list: the walk can be skipped (on a first
        # snapshot, when rsync named as many files as it counted).
        if out.regular_files is not None and not out.redone:
            if len(prev_manifest.keys() | transferred) == out.regular_files:
                stack = []
                entries.update(prev_manifest)  # C-level copies: 20,000 entries in a millisecond
                entries.update({rel: early_get(rel) for rel in transferred})
        while stack:
            rel_dir = stack.pop()
            try:
                it = scandir(join(tmp, rel_dir) if rel_dir else tmp)
            except OSError as exc:
                raise ActionError(
                    f"Cannot read {join(tmp, rel_dir)} in the new snapshot: {exc.strerror}."
                ) from None
            with it:
                for entry in it:
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
                    elif entry.is_file(follow_symlinks=False) and rel not in _MANIFEST_NAMES:
                        digest = early_get(rel)
                        if digest is None and rel not in transferred:
                            digest = prev_get(rel)
                        entries[rel] = digest
        # A copied name we cannot find means we may have mis-read rsync's output: then keep a
        # reused hash only where the inode really is shared with the previous snapshot.
        if prev and not transferred <= entries.keys():
            ctx.log("WARNING: could not match every copied file name; unchanged files are checked by inode")
            for rel, digest in entries.items():
                if (
                    digest is not None
                    and rel not in early
                    and not _same_inode(os.path.join(tmp, rel), os.path.join(prev, rel))
                ):
                    entries[rel] = None
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
        known = len(early.keys() & entries.keys())
        reused = len(entries) - len(missing) - known
        write_manifest(os.path.join(tmp, MANIFESTS[algo]), entries)  # type: ignore[arg-type]  # all filled now
        files = entries
        present = entries.keys()
        new = len(transferred & present)
        linked = max(0, len(files) - new - out.copied) if prev else 0
        how = "checksummed by rsync as it copied" if algo == "xxh128" else "hashed as rsync copied"
        ctx.log(
            f"{MANIFESTS[algo]}: {len(files):,} files; {known:,} {how}, {reused:,} reused from the previous "
            f"manifest, {len(missing):,} read now ({format_duration(time.monotonic() - started)} after the copy)"
        )
        return {"files": len(files), "bytes": out.total_size, "new_files": new, "linked": linked, "algo": algo}

    @staticmethod
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


def _same_inode(a: str, b: str) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# --- storage.verify_snapshot ---------------------------------------------------------------


class _SnapshotRef(ActionParams):
    backups: str | None = Field(
        None, description="Directory holding the snapshots (needed when snapshot is a name)."
    )
    snapshot: str = Field(LATEST, description="`latest`, a snapshot name, or an absolute path to a snapshot.")

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snap(cls, v: Any) -> Any:
        return _check_snapshot_ref(v) if isinstance(v, str) else v


def _describe_snapshot(params: _SnapshotRef) -> str:
    """The snapshot path as it resolves now (so the plan shows which backup), or as written."""
    try:
        return resolve_snapshot(params.backups, params.snapshot)
    except ActionError:
        if "/" in params.snapshot:
            return params.snapshot
        return os.path.join(os.path.abspath(params.backups or "."), params.snapshot)


def _load_manifest(snap: str) -> tuple[dict[str, str], str]:
    """(relative path → digest, algorithm) of ``snap``'s manifest."""
    found = find_manifest(snap)
    if found is None:
        raise ActionError(f"Snapshot {snap} has no manifest (.runbook-manifest.xxh128 or .sha256), so it cannot be verified.")
    return read_manifest(*found), found[1]


class VerifySnapshotParams(_SnapshotRef):
    warn_only: bool = Field(
        False, description="Report problems as warnings and output ok=false instead of failing."
    )


class VerifySnapshotAction(BaseAction):
    name: ClassVar[str] = "storage.verify_snapshot"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "Check a snapshot against its checksum manifest: no file missing, changed or extra."
    )
    Params = VerifySnapshotParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The snapshot checked.",
        "files": "Files checked.",
        "bytes": "Bytes read.",
        "ok": "true when every file matched.",
        "problems": "How many files were missing, changed or extra.",
        "first_problem": "The first problem ('' when ok).",
    }

    def target(self, params: VerifySnapshotParams) -> str:
        return _describe_snapshot(params)

    def describe(self, params: VerifySnapshotParams) -> str:
        path = _describe_snapshot(params)
        found = find_manifest(path)
        algo = found[1] if found else CHECKSUMS[0]
        snap = shlex.quote(path)
        return (
            f"{algo} of every file in {snap} compared with its {MANIFESTS[algo]}, no file missing or extra "
            f"(like: cd {snap} && {_CHECK_BY_HAND[algo]} --quiet {MANIFESTS[algo]})"
        )

    def run(self, ctx: StepContext, params: VerifySnapshotParams) -> dict[str, Any]:
        snap = resolve_snapshot(params.backups, params.snapshot)
        manifest, algo = _load_manifest(snap)
        ctx.log(f"verifying {snap} against {MANIFESTS[algo]} ({len(manifest):,} files)")
        started = time.monotonic()
        files, total, problems = verify_tree(ctx, snap, manifest, algo=algo)
        for text in problems[:20]:
            ctx.log(f"FAILED: {text}")
        if len(problems) > 20:
            ctx.log(f"… and {len(problems) - 20} more problems")
        ctx.log(
            f"{files:,} files, {human_bytes(total)} checked in {format_duration(time.monotonic() - started)}"
        )
        if problems and not params.warn_only:
            raise ActionError(_problem_sentence(f"Snapshot {os.path.basename(snap)}", problems))
        if not problems:
            ctx.log(f"{os.path.basename(snap)}: OK")
        return {
            "path": snap,
            "files": files,
            "bytes": total,
            "ok": not problems,
            "problems": len(problems),
            "first_problem": problems[0] if problems else "",
        }


# --- restores ------------------------------------------------------------------------------


class _RestoreParams(_SnapshotRef):
    root: str = Field(description="The live storage tree, e.g. {{ env.storage.root }}.")
    mode: str | None = Field(
        None, description="Octal permissions for restored dirs and files, e.g. 750 (like chmod -R 750)."
    )
    owner: str | None = Field(
        None, description="user:group for restored files (like chown -R); applied only when running as root."
    )
    verify: bool = Field(True, description="Check the restored files against the snapshot's manifest.")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        if v is None:
            return v
        text = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(text, str) or not _MODE.fullmatch(text):
            raise ValueError(f"mode {v!r} is not an octal mode like 750")
        return text

    @field_validator("owner", mode="before")
    @classmethod
    def _owner(cls, v: Any) -> Any:
        if v is not None and (not isinstance(v, str) or not _OWNER.fullmatch(v)):
            raise ValueError(f"owner {v!r} must look like user or user:group")
        return v


def _verify_restore(
    ctx: StepContext, params: _RestoreParams, snap: str, tree: str, sub: str, extras: bool, what: str
) -> tuple[int, int, bool]:
    if not params.verify:
        ctx.log("verification skipped (verify: false)")
        return 0, 0, False
    manifest, algo = _load_manifest(snap)
    started = time.monotonic()
    files, total, problems = verify_tree(ctx, tree, manifest, algo=algo, sub=sub, extras=extras)
    for text in problems[:20]:
        ctx.log(f"FAILED: {text}")
    if problems:
        raise ActionError(_problem_sentence(f"The restored {what}", problems))
    ctx.log(
        f"verified {files:,} files ({human_bytes(total)}) against the manifest in {format_duration(time.monotonic() - started)}"
    )
    return files, total, True


class RestoreFullParams(_RestoreParams):
    pass


class RestoreFullAction(BaseAction):
    name: ClassVar[str] = "storage.restore_full"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = (
        "Replace the whole storage tree with a snapshot: the current tree is moved aside first."
    )
    Params = RestoreFullParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The restored storage root.",
        "snapshot": "The snapshot restored.",
        "moved_aside": "Where the previous tree was moved ('' if there was none).",
        "files": "Files verified.",
        "bytes": "Bytes verified.",
        "verified": "true when the restored tree matched the manifest.",
    }

    def target(self, params: RestoreFullParams) -> str:
        return os.path.abspath(params.root)

    def _argv(
        self, snap: str, root: str, params: RestoreFullParams, log: Callable[[str], None] | None = None
    ) -> list[str]:
        return [
            "rsync",
            "-a",
            "--stats",
            "--no-human-readable",
            f"--out-format={_NAMED_FORMAT}",
            "--exclude=/.runbook-manifest.*",
            *_perm_options(params.mode, params.owner, log),
            snap + "/",
            root + "/",
        ]

    def describe(self, params: RestoreFullParams) -> str:
        root = os.path.abspath(params.root)
        argv = self._argv(_describe_snapshot(params), root, params)
        check = f"; verify {root} against the snapshot's manifest" if params.verify else ""
        return f"mv {shlex.quote(root)} {shlex.quote(root + '_old_<YYYYmmdd_HHMMSS>')}; {shlex.join(argv)}{check}"

    def run(self, ctx: StepContext, params: RestoreFullParams) -> dict[str, Any]:
        snap = resolve_snapshot(params.backups, params.snapshot)
        root = _abs(params.root, "storage root")
        if os.path.realpath(root) == "/":
            raise ActionError("Refusing to restore over / : the storage root must be a data directory.")
        if params.backups:
            _check_separate(root, _abs(params.backups, "backups"))
        if _inside(snap, os.path.realpath(root)):
            raise ActionError(f"The snapshot {snap} is inside the storage root {root}; keep them apart.")
        if params.verify:
            _load_manifest(snap)  # fail before touching anything if it cannot be verified afterwards
        moved = ""
        if os.path.lexists(root):
            if not os.path.isdir(root) or os.path.islink(root):
                raise ActionError(f"The storage root {root} is not a directory; refusing to move it aside.")
            moved = f"{root}_old_{time.strftime('%Y%m%d_%H%M%S')}"
            n = 1
            while os.path.lexists(moved):
                n += 1
                moved = f"{root}_old_{time.strftime('%Y%m%d_%H%M%S')}-{n}"
            try:
                os.rename(root, moved)
            except OSError as exc:
                raise ActionError(f"Cannot move the current tree {root} aside: {exc.strerror}.") from None
            ctx.log(f"moved the current tree aside: {root} → {moved}")
        else:
            ctx.log(f"{root} does not exist: nothing to move aside")
        try:
            os.makedirs(root)
        except OSError as exc:
            raise ActionError(f"Cannot create {root}: {exc.strerror}.") from None
        argv = self._argv(snap, root, params, ctx.log)
        ctx.log(f"restoring {snap} → {root}")
        try:
            result = _run_rsync(ctx, argv, _RsyncOutput(ctx.log))
            if not result.ok:
                raise _rsync_failed(result, "restore")
            files, total, verified = _verify_restore(ctx, params, snap, root, "", True, f"tree {root}")
        except ActionError as exc:
            if not moved:
                raise
            # The operator's first question: where is the tree I had before?
            raise ActionError(f"{str(exc).rstrip('.')}; the previous tree is kept in {moved}.") from None
        ctx.log(
            f"storage restored from {os.path.basename(snap)}"
            + (f"; the previous tree is in {moved}" if moved else "")
        )
        return {
            "path": root,
            "snapshot": snap,
            "moved_aside": moved,
            "files": files,
            "bytes": total,
            "verified": verified,
        }


class RestoreTenantParams(_RestoreParams):
    tenant: str = Field(description="Tenant id: one directory name under the root.")
    checksum: bool = Field(
        True, description="rsync --checksum: also fix files whose size and mtime look unchanged."
    )
    delete: bool = Field(False, description="Also delete files the snapshot does not have (rsync --delete).")

    @field_validator("tenant", mode="before")
    @classmethod
    def _tenant(cls, v: Any) -> str:
        return check_id(v, "Tenant")


class RestoreDatasetParams(RestoreTenantParams):
    dataset: str = Field(description="Dataset id: one directory name under the tenant.")

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset(cls, v: Any) -> str:
        return check_id(v, "Dataset")


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
    if not _inside(real, base) or real == base:
        raise ActionError(f"{path} resolves outside the {where} {base}; refusing to restore.")
    return path


class RestoreTenantAction(BaseAction):
    name: ClassVar[str] = "storage.restore_tenant"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = (
        "Restore one tenant's directory from a snapshot into the live tree (overwrites its files)."
    )
    Params = RestoreTenantParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The restored directory.",
        "snapshot": "The snapshot restored from.",
        "files": "Files verified.",
        "bytes": "Bytes verified.",
        "verified": "true when the restored files matched the manifest.",
    }

    def _parts(self, params: RestoreTenantParams) -> list[str]:
        return [require_id(params.tenant, "Tenant")]

    def target(self, params: RestoreTenantParams) -> str:
        return "/".join(self._parts(params))

    def _argv(
        self, src: str, dst: str, params: RestoreTenantParams, log: Callable[[str], None] | None = None
    ) -> list[str]:
        argv = ["rsync", "-a", "--stats", "--no-human-readable", f"--out-format={_NAMED_FORMAT}"]
        if params.checksum:
            argv.append("--checksum")
        if params.delete:
            argv.append("--delete")
        return [*argv, *_perm_options(params.mode, params.owner, log), src + "/", dst + "/"]

    def describe(self, params: RestoreTenantParams) -> str:
        rel = self.target(params)
        src = os.path.join(_describe_snapshot(params), rel)
        dst = os.path.join(os.path.abspath(params.root), rel)
        check = f"; verify {dst} against the snapshot's manifest" if params.verify else ""
        return shlex.join(self._argv(src, dst, params)) + check

    def run(self, ctx: StepContext, params: RestoreTenantParams) -> dict[str, Any]:
        # Re-checked here, not only by the model: params may have been built without validation.
        parts = self._parts(params)
        rel = "/".join(parts)
        what = "dataset" if len(parts) > 1 else "tenant"
        snap = resolve_snapshot(params.backups, params.snapshot)
        root = os.path.realpath(_abs(params.root, "storage root"))
        if not os.path.isdir(root):
            raise ActionError(f"Storage root not found: {root} is not a directory.")
        if root == "/":
            raise ActionError("Refusing to restore into / : the storage root must be a data directory.")
        src = _safe_join(snap, parts, f"snapshot {os.path.basename(snap)}", must_exist=True)
        if not os.path.isdir(src):
            raise ActionError(f"The {what} {rel!r} is not in snapshot {os.path.basename(snap)}.")
        dst = _safe_join(root, parts, "storage root", must_exist=False)
        if params.verify:
            _load_manifest(snap)
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
        except OSError as exc:
            raise ActionError(f"Cannot create {os.path.dirname(dst)}: {exc.strerror}.") from None
        # Nothing may have become a symlink in between (the parent was just created).
        dst = _safe_join(root, parts, "storage root", must_exist=False)
        ctx.log(f"restoring {what} {rel} from {os.path.basename(snap)}: {src}/ → {dst}/")
        result = _run_rsync(ctx, self._argv(src, dst, params, ctx.log), _RsyncOutput(ctx.log))
        if not result.ok:
            raise _rsync_failed(result, f"{what} restore")
        files, total, verified = _verify_restore(ctx, params, snap, root, rel, params.delete, f"{what} {rel}")
        ctx.log(f"{what} {rel} restored from {os.path.basename(snap)}")
        return {"path": dst, "snapshot": snap, "files": files, "bytes": total, "verified": verified}


class RestoreDatasetAction(RestoreTenantAction):
    name: ClassVar[str] = "storage.restore_dataset"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = (
        "Restore one dataset (tenant/dataset) from a snapshot into the live tree (overwrites its files)."
    )
    Params = RestoreDatasetParams

    def _parts(self, params: RestoreTenantParams) -> list[str]:
        assert isinstance(params, RestoreDatasetParams)
        return [require_id(params.tenant, "Tenant"), require_id(params.dataset, "Dataset")]


# --- storage.prune -------------------------------------------------------------------------


class PruneParams(ActionParams):
    backups: str = Field(description="Directory holding the snapshots.")
    retention_days: int = Field(30, ge=0, description="Delete snapshots older than this many days.")
    pattern: str = Field("backup_*", description="Which snapshots may be deleted (a name glob).")
    keep_min: int = Field(
        1, ge=0, description="Always keep at least this many of the newest matching snapshots."
    )
    dry_run: bool = Field(False, description="Only list what would be deleted.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)


class PruneAction(BaseAction):
    name: ClassVar[str] = "storage.prune"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Delete snapshots older than the retention period (never `latest`'s)."
    Params = PruneParams
    outputs: ClassVar[dict[str, str]] = {
        "deleted": "Names deleted (with dry_run: names that would be).",
        "kept": "Names of the matching snapshots kept.",
        "dry_run": "true when nothing was deleted on purpose.",
    }

    def target(self, params: PruneParams) -> str:
        return os.path.abspath(params.backups)

    def describe(self, params: PruneParams) -> str:
        backups = shlex.quote(os.path.abspath(params.backups))
        action = "-print" if params.dry_run else "-exec rm -rf {} +"
        return (
            f"find {backups} -maxdepth 1 -type d -name {shlex.quote(params.pattern)} -mtime +{params.retention_days} "
            f"{action} (never `latest`'s target, keeping the newest {params.keep_min})"
        )

    def run(self, ctx: StepContext, params: PruneParams) -> dict[str, Any]:
        backups = os.path.realpath(_abs(params.backups, "backups"))
        if not os.path.isdir(backups):
            raise ActionError(f"Backups directory not found: {backups}.")
        with _backups_lock(backups, "prune"):
            snaps = snapshot_dirs(backups, params.pattern)
            protected = (
                {name for _, name in snaps[len(snaps) - params.keep_min :]} if params.keep_min else set()
            )
            latest = latest_target(backups)
            if latest:
                protected.add(latest)
            cutoff = time.time() - params.retention_days * 86400
            deleted: list[str] = []
            kept: list[str] = []
            for mtime, name in snaps:
                age = format_duration(time.time() - mtime)
                if mtime >= cutoff or name in protected:
                    kept.append(name)
                    why = " (latest)" if name == latest else " (newest)" if mtime < cutoff else ""
                    ctx.log(f"keep   {name}  {age} old{why}")
                    continue
                path = os.path.join(backups, name)
                if params.dry_run:
                    ctx.log(f"would delete {name}  {age} old")
                else:
                    if os.path.dirname(os.path.realpath(path)) != backups or os.path.islink(path):
                        raise ActionError(
                            f"{path} is not a snapshot directory inside {backups}; refusing to delete it."
                        )
                    ctx.log(f"delete {name}  {age} old")
                    try:
                        shutil.rmtree(path)  # does not follow symlinks inside the snapshot
                    except OSError as exc:
                        raise ActionError(f"Cannot delete {path}: {exc.strerror}.") from None
                deleted.append(name)
        verb = "would delete" if params.dry_run else "deleted"
        ctx.log(
            f"{verb} {len(deleted)} snapshot(s) older than {params.retention_days} days; kept {len(kept)}"
        )
        return {"deleted": deleted, "kept": kept, "dry_run": params.dry_run}


# --- checks --------------------------------------------------------------------------------


def _newest(backups: str, pattern: str) -> tuple[str, list[tuple[float, str]]]:
    """The newest snapshot (``latest`` if it is valid, else the newest match) and all matches."""
    snaps = snapshot_dirs(backups, pattern)
    name = latest_target(backups)
    if name is None:
        if not snaps:
            raise ActionError(f"No storage snapshot in {backups}: neither `latest` nor {pattern} exists.")
        name = snaps[-1][1]
    return name, snaps


class CheckRecentParams(ActionParams):
    backups: str = Field(description="Directory holding the snapshots.")
    max_age: str | int = Field("24h", description="Fail if the newest snapshot is older, e.g. 24h.")
    pattern: str = Field("backup_*", description="Snapshots considered when `latest` is missing.")

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: Any) -> Any:
        parse_duration(v)
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)


class CheckRecentAction(BaseAction):
    name: ClassVar[str] = "storage.check_recent"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Fail unless the newest storage snapshot is younger than max_age."
    Params = CheckRecentParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The newest snapshot.",
        "name": "Its name.",
        "age_seconds": "Its age.",
        "complete": "true when it has a manifest.",
    }

    def target(self, params: CheckRecentParams) -> str:
        return os.path.abspath(params.backups)

    def describe(self, params: CheckRecentParams) -> str:
        latest = shlex.quote(os.path.join(os.path.abspath(params.backups), LATEST))
        return f"find $(readlink -f {latest}) -maxdepth 0 -newermt '-{params.max_age}'"

    def run(self, ctx: StepContext, params: CheckRecentParams) -> dict[str, Any]:
        backups = os.path.realpath(_abs(params.backups, "backups"))
        name, _ = _newest(backups, params.pattern)
        path = os.path.join(backups, name)
        age = max(0.0, time.time() - os.lstat(path).st_mtime)
        complete = find_manifest(path) is not None
        ctx.log(f"newest snapshot: {name}, {format_duration(age)} old (limit {params.max_age})")
        if not complete:
            ctx.log(f"WARNING: {name} has no manifest (.runbook-manifest.*); it cannot be verified")
        if age > parse_duration(params.max_age):
            raise ActionError(
                f"The newest storage snapshot {name} is {format_duration(age)} old, older than {params.max_age}."
            )
        return {"path": path, "name": name, "age_seconds": round(age, 1), "complete": complete}


class CheckSizeParams(ActionParams):
    backups: str = Field(description="Directory holding the snapshots.")
    snapshot: str = Field(LATEST, description="The snapshot to check (default: `latest`).")
    pattern: str = Field("backup_*", description="Snapshots considered as the previous one.")
    min_bytes: int = Field(1, ge=0, description="Fail when smaller (an empty snapshot is always suspicious).")
    max_change: float = Field(
        0.5, gt=0, description="Fail when it differs from the previous snapshot by more than this fraction."
    )
    warn_only: bool = Field(False, description="Log a WARNING instead of failing.")

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snap(cls, v: Any) -> Any:
        return _check_snapshot_ref(v) if isinstance(v, str) else v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)


class CheckSizeAction(BaseAction):
    name: ClassVar[str] = "storage.check_size"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "Size sanity of a snapshot: not empty, and not far from the previous snapshot's size."
    )
    Params = CheckSizeParams
    outputs: ClassVar[dict[str, str]] = {
        "name": "The snapshot checked.",
        "size": "Its bytes.",
        "previous": "The snapshot compared with ('' if none).",
        "previous_size": "Its bytes (0 if none).",
        "change": "Relative size change (0.1 = 10%).",
        "ok": "true when within bounds.",
    }

    def target(self, params: CheckSizeParams) -> str:
        return os.path.join(os.path.abspath(params.backups), params.snapshot)

    def describe(self, params: CheckSizeParams) -> str:
        return f"du -sb {shlex.quote(self.target(params))} (and the previous snapshot)"

    def run(self, ctx: StepContext, params: CheckSizeParams) -> dict[str, Any]:
        backups = os.path.realpath(_abs(params.backups, "backups"))
        snap = resolve_snapshot(backups, params.snapshot)
        name = os.path.basename(snap)
        size = tree_size(Path(snap))
        ctx.log(f"{name}: {human_bytes(size)} ({size} bytes)")
        previous = ""
        prev_size = 0
        change = 0.0
        others = [
            n for m, n in snapshot_dirs(backups, params.pattern) if n != name and m <= os.lstat(snap).st_mtime
        ]
        problems: list[str] = []
        if size < params.min_bytes:
            problems.append(
                f"Snapshot {name} is suspiciously small ({size} bytes, expected at least {params.min_bytes})"
            )
        if others:
            previous = others[-1]
            prev_size = tree_size(Path(backups, previous))
            ctx.log(f"previous {previous}: {human_bytes(prev_size)} ({prev_size} bytes)")
            if prev_size > 0:
                change = (size - prev_size) / prev_size
                if abs(change) > params.max_change:
                    how = "shrank" if change < 0 else "grew"
                    problems.append(
                        f"Snapshot {name} {how} by {abs(change):.0%} compared with {previous} (limit {params.max_change:.0%})"
                    )
        else:
            ctx.log("no previous snapshot to compare with")
        for p in problems:
            ctx.log(f"WARNING: {p}")
        if problems and not params.warn_only:
            raise ActionError(problems[0] + ".")
        return {
            "name": name,
            "size": size,
            "previous": previous,
            "previous_size": prev_size,
            "change": round(change, 4),
            "ok": not problems,
        }


class ListSnapshotsParams(ActionParams):
    backups: str = Field(description="Directory holding the snapshots.")
    pattern: str = Field("*", description="Name glob, e.g. backup_* or pre_deployment_*.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)


class ListSnapshotsAction(BaseAction):
    name: ClassVar[str] = "storage.list_snapshots"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "List the storage snapshots, oldest first, and which one `latest` is."
    Params = ListSnapshotsParams
    outputs: ClassVar[dict[str, str]] = {
        "latest": "Name `latest` points to ('' if none).",
        "newest": "The newest snapshot's name ('' if none).",
        "count": "How many snapshots.",
        "names": "Their names, oldest first.",
    }

    def target(self, params: ListSnapshotsParams) -> str:
        return os.path.abspath(params.backups)

    def describe(self, params: ListSnapshotsParams) -> str:
        return f"ls -ldtr {shlex.quote(os.path.join(os.path.abspath(params.backups), params.pattern))}"

    def run(self, ctx: StepContext, params: ListSnapshotsParams) -> dict[str, Any]:
        backups = os.path.realpath(_abs(params.backups, "backups"))
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
        return {"latest": latest, "newest": names[-1] if names else "", "count": len(names), "names": names}


ACTIONS = [
    SnapshotAction,
    VerifySnapshotAction,
    RestoreFullAction,
    RestoreTenantAction,
    RestoreDatasetAction,
    PruneAction,
    CheckRecentAction,
    CheckSizeAction,
    ListSnapshotsAction,
]
