"""User-facing errors: each carries one clear sentence and an exit code."""

from __future__ import annotations


class RunbookError(Exception):
    """An error the user can act on. ``str(err)`` is the one sentence shown to them."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(RunbookError):
    """Bad command-line usage or parameter values (exit 2)."""

    exit_code = 2


class NeedsHuman(RunbookError):
    """Headless mode reached a decision only a person can make (exit 3)."""

    exit_code = 3


class ActionError(RunbookError):
    """A step's action failed; the message names the store and what to check."""


class StoreUnavailable(ActionError):
    """A store could not be reached (down, wrong endpoint, no credentials)."""
