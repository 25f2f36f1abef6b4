"""How a run of the loop ended: a status, its exit code (PRODUCT.md: 0, 1, 2, 3; 130 for Ctrl-C), one sentence."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Outcome", "RunStatus"]


class RunStatus(StrEnum):
    """How a run of the loop ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    NEEDS_HUMAN = "needs-human"
    TAKEN_OVER = "taken-over"  # someone else drives it now; a script must not read that as success
    INTERRUPTED = "interrupted"  # Ctrl-C: paused at once, the running step's command stopped


_EXIT_CODES = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.PAUSED: 0,
    RunStatus.NEEDS_HUMAN: 3,
    RunStatus.TAKEN_OVER: 1,
    RunStatus.INTERRUPTED: 130,  # the shell's convention for SIGINT: a script must not go on
}


@dataclass
class Outcome:
    """How a run ended, with one sentence for the operator."""

    incident: str
    status: RunStatus
    message: str = ""

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES.get(self.status, 1)
