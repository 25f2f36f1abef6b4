"""Work done beside rsync while it copies: the previous manifest parsed, copied files hashed (sha256)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from runbook.actions.storage.manifest import hash_file


class Background:
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


class LiveHasher:
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
        # Not support.poll.wait_until: this is a work queue drained at file rate (20,000 files in
        # well under a second), where a file is usually there by the time it is looked at. The
        # waits are milliseconds, only when the queue is empty or a file is still being copied;
        # a retrying object per file would cost more than hashing the file.
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
