"""Checksum manifests: hashing files, reading and writing ``sha256sum``/``xxh128sum`` files, verifying trees.

A manifest holds one ``<digest>  <path relative to the snapshot>`` line per regular file, with GNU
escaping (a leading backslash, ``\\\\``, ``\\n``, ``\\r``) for names holding a backslash or a line
break. Its name starts with a dot, which no tenant id can, so it never collides with the data.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

from runbook.actions.spec import StepContext
from runbook.core.errors import ActionError

CHECKSUMS = ("xxh128", "sha256")  # manifest kinds, the default first
MANIFESTS = {algo: f".runbook-manifest.{algo}" for algo in CHECKSUMS}
MANIFEST = MANIFESTS["xxh128"]  # what a new snapshot holds by default
MANIFEST_NAMES = frozenset(MANIFESTS.values())
CHECK_BY_HAND = {"xxh128": "xxh128sum -c", "sha256": "sha256sum -c"}
CHUNK = 1 << 20

_HEXLEN = {"xxh128": 32, "sha256": 64}
_HEX = re.compile(r"[0-9a-fA-F]*")
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def printable(rel: str) -> str:
    return rel if rel.isprintable() else ascii(rel)


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
                elif entry.is_file(follow_symlinks=False) and name not in MANIFEST_NAMES:
                    out.append(name)
    return out


def _hasher(algo: str) -> Any:
    if algo == "xxh128":
        import xxhash  # small C extension; only storage needs it

        return xxhash.xxh3_128()
    return hashlib.sha256()


def hash_file(path: str, algo: str = "sha256") -> tuple[str, int]:
    """Hex digest (``sha256`` or ``xxh128``) and bytes read of a regular file.

    A symlink is refused (O_NOFOLLOW).
    """
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


def load_manifest(snap: str) -> tuple[dict[str, str], str]:
    """(relative path → digest, algorithm) of ``snap``'s manifest."""
    found = find_manifest(snap)
    if found is None:
        raise ActionError(
            f"Snapshot {snap} has no manifest (.runbook-manifest.xxh128 or .sha256), "
            "so it cannot be verified."
        )
    return read_manifest(*found), found[1]


def manifest_line(rel: str, digest: str) -> str:
    """One ``sha256sum``/``xxh128sum`` line.

    Escaped the GNU way when the name holds a backslash or line break.
    """
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


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"\\": "\\", "n": "\n", "r": "\r"}.get(m.group(1), m.group(0)), name)


def _parse_lines(path: str, lines: list[str], width: int) -> dict[str, str]:
    """Path → digest; a C-speed comprehension when no line is escaped and every line is well formed."""
    plain = [line for line in lines if line[:1] != "\\"]
    start = width + 2
    if len(plain) == len(lines) and all(
        line[width:start] in ("  ", " *") and len(line) > start for line in lines
    ):
        return {line[start:]: line[:width] for line in lines}
    out = {}
    for number, line in enumerate(lines, 1):
        escaped = line[:1] == "\\"
        body = line[1:] if escaped else line
        if len(body) <= start or body[width:start] not in ("  ", " *"):
            raise ActionError(f"The manifest {path} is damaged at line {number}.")
        name = body[start:]
        out[_unescape(name) if escaped else name] = body[:width]
    return out


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
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ActionError(f"Cannot read the manifest {path}: {exc.strerror}.") from None
    # Decoded once like the filesystem decodes names, so keys equal what os.scandir returns.
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    out = _parse_lines(path, lines, _HEXLEN[algo])
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
            problems.append((rel, f"{printable(rel)} is missing"))
            continue
        try:
            actual, n = quick(top + rel)
            if actual != digest:  # confirmed the strict way before it is reported
                actual, n = hash_file(top + rel, algo)
        except OSError as exc:
            problems.append((rel, f"{printable(rel)} cannot be read ({exc.strerror})"))
            continue
        files += 1
        total += n
        if actual != digest:
            problems.append((rel, f"{printable(rel)} does not match its manifest checksum"))
    if extras:
        problems.extend((rel, f"{printable(rel)} is not in the manifest") for rel in present - wanted.keys())
    problems.sort()
    return files, total, [text for _, text in problems]


def log_problems(ctx: StepContext, problems: list[str], shown: int = 20) -> None:
    for text in problems[:shown]:
        ctx.log(f"FAILED: {text}")


def problem_sentence(what: str, problems: list[str]) -> str:
    more = len(problems) - 1
    tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
    return f"{what} failed verification: {problems[0]}{tail}."
