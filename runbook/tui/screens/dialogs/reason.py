"""Asks one line of text: a reason, a note, a secret."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from runbook.tui.screens.cursor import apply_cursor_blink


class ReasonScreen(ModalScreen[str | None]):
    """Asks one line of text (a reason, a note). Escape cancels.

    Args:
        title: The dialog title.
        prompt: The question.
        optional: Whether an empty answer is accepted.
        password: Mask the input (secrets).
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reason.cancel")]

    def __init__(
        self, title: str, prompt: str, *, optional: bool = False, password: bool = False, placeholder: str = ""
    ) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.optional = optional
        self.password = password
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f" {escape(self.title_text)} ", id="dialog-title")
            yield Static(escape(self.prompt))
            yield Input(placeholder=self.placeholder, password=self.password, id="reason-input")
            yield Static("Enter to submit · Escape to cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        apply_cursor_blink(self)
        self.query_one("#reason-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if not value and not self.optional:
            self.notify("A reason is needed (it is journaled).", severity="warning")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Close without an answer."""
        self.dismiss(None)
