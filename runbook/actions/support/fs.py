"""File facts several stores need: a file's sha256 and its checksum file, a tree's size, sizes for people."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from runbook.core.errors import ActionError

CHUNK = 1 << 20


def sha256_file(path: Path, cancelled: threading.Event | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; stops with one sentence when cancelled."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            if cancelled is not None and cancelled.is_set():
                raise ActionError(f"checksum of {path} was stopped by the operator.")
    return h.hexdigest()


def read_sha256_file(sidecar: Path) -> str:
    """The digest a ``sha256sum``-format checksum file holds (its first word, lower case).

    Raises:
        ActionError: The file cannot be read or does not start with a sha256 digest.
    """
    try:
        first = sidecar.read_text(encoding="utf-8", errors="replace").split()
    except OSError as exc:
        raise ActionError(f"Cannot read checksum file {sidecar}: {exc.strerror}.") from None
    expected = first[0].lower() if first else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ActionError(f"Checksum file {sidecar} does not hold a sha256 digest.")
    return expected


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
