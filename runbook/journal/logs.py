"""Per-step log files: the full output of a step, redacted, 0600, with its sha256 journaled."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from runbook.core.paths import private_dir

FLUSH_SECONDS = 0.25  # bounded loss on SIGKILL without a syscall per line


class StepLog:
    """Append-only log of one step attempt; hashes what it writes so the digest costs no re-read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._f = os.fdopen(fd, "ab", buffering=1 << 16)
        self._hash = hashlib.sha256()
        self.lines = 0
        self.bytes = 0
        self._flushed = time.monotonic()

    def write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", errors="replace")
        self._f.write(data)
        self._hash.update(data)
        self.lines += 1
        self.bytes += len(data)
        now = time.monotonic()
        if now - self._flushed >= FLUSH_SECONDS or self.lines == 1:
            # The interrupted-step dialog shows the last output after a crash: keep the file current.
            self._f.flush()
            self._flushed = now

    def close(self) -> str:
        """Flush to disk and return the hex sha256 of everything written."""
        if not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            finally:
                try:
                    self._f.close()
                except OSError:
                    pass  # the flush already reported the problem
        return self._hash.hexdigest()


def step_log_path(home: Path, incident: str, step: str, attempt: int) -> Path:
    return home / "logs" / incident / f"{step}.{attempt}.log"
