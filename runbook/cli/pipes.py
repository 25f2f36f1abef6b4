"""Standard output whose reader may go away: ``runbook run … --headless | head -1`` must not stop the run.

When the reader closes the pipe, the next write fails with EPIPE. The incident must go on (its
output still reaches the step logs and the journal), so the first such failure points standard
output at /dev/null (the recipe of Python's own signal documentation) and every later write
succeeds silently, including the interpreter's final flush.
"""

from __future__ import annotations

import os
from typing import Any, TextIO


class ReaderMayLeave:
    """Wraps ``sys.stdout``: writes after the reader left are dropped instead of raising."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()

    def _reader_left(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
