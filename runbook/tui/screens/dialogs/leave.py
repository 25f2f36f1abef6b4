"""Leaving while a step runs: pause after it, stop it now, or stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class LeaveScreen(ModalScreen[str | None]):
    """Leaving while a step runs: wait for it, stop it, or stay."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("w", "choose('wait')", "Pause after it", id="leave.wait"),
        Binding("x", "choose('stop')", "Stop it now", id="leave.stop"),
        Binding("escape", "choose('stay')", "Stay", id="leave.stay"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(" A step is running ", id="dialog-title")
            yield Static(
                "[b]w[/] pause the incident when the step finishes · [b]x[/] stop the step now "
                "(journaled as failed; you decide on resume) and pause · Escape: stay"
            )
        yield Footer()

    def action_choose(self, what: str) -> None:
        """Answer."""
        self.dismiss(None if what == "stay" else what)
