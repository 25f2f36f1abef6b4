"""The step list: the playbook's steps under their phases, each with its status in a word."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from runbook.core.incident import StepStatus

# Statuses only a screen shows (beside StepStatus): the pending step the operator is asked about,
# and a step waiting for its confirmation.
NEXT = "next"
NEEDS_CONFIRMATION = "needs-confirmation"

STATUS_ICON: dict[str, str] = {
    StepStatus.PENDING: "·",
    NEXT: "▶",
    StepStatus.RUNNING: "⟳",
    StepStatus.DONE: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.SKIPPED: "↷",
    StepStatus.INTERRUPTED: "!",
    StepStatus.PLANNED: "○",
    NEEDS_CONFIRMATION: "?",
}

STATUS_STYLE: dict[str, str] = {
    StepStatus.PENDING: "dim",
    NEXT: "bold",
    StepStatus.RUNNING: "bold yellow",
    StepStatus.DONE: "green",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "yellow",
    StepStatus.INTERRUPTED: "bold magenta",
    StepStatus.PLANNED: "cyan",
    NEEDS_CONFIRMATION: "bold magenta",
}


class StepList(Static):
    """The playbook's steps, under their phases, each with its status."""

    DEFAULT_CSS = """
    StepList { width: 1fr; height: auto; }
    """

    def __init__(self, id: str | None = None) -> None:
        """Create an empty list (call :meth:`set_steps`)."""
        super().__init__(id=id)
        self.steps: list[tuple[str, str, str | None]] = []  # id, title, phase
        self.status: dict[str, str] = {}
        self.current: str | None = None

    def set_steps(self, steps: list[tuple[str, str, str | None]]) -> None:
        """Set the steps: (id, title, phase)."""
        self.steps = steps
        self.refresh(layout=True)

    def set_status(self, status: dict[str, str], current: str | None) -> None:
        """Update every step's status and which one is current."""
        self.status = dict(status)
        self.current = current
        self.refresh(layout=True)

    def render(self) -> Table:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=1, no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(no_wrap=True, justify="right")
        phase: str | None = None
        for sid, title, ph in self.steps:
            if ph and ph != phase:
                table.add_row("", Text(ph, style="bold underline"), "")
                phase = ph
            st = self.status.get(sid, StepStatus.PENDING)
            shown = NEXT if (sid == self.current and st == StepStatus.PENDING) else st
            style = STATUS_STYLE.get(shown, "")
            title_style = style + (" reverse" if sid == self.current else "")
            word = "" if shown == StepStatus.PENDING else ("confirm?" if shown == NEEDS_CONFIRMATION else str(shown))
            table.add_row(
                Text(STATUS_ICON.get(shown, "?"), style=style), Text(title, style=title_style), Text(word, style=style)
            )
        return table
