"""The one error the sandbox raises."""

from __future__ import annotations

from runbook.core.errors import RunbookError


class SandboxError(RunbookError):
    """A sandbox store could not be started, checked or stopped; the message says why."""
