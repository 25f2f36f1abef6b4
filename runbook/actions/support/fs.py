"""File facts several stores need: a file's sha256, a tree's size, sizes for people."""

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
