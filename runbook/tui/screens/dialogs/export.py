"""Picks the timeline's export format."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class ExportScreen(ModalScreen[str | None]):
    """Pick an export format: j JSON, m Markdown, h HTML."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("j", "pick('json')", "JSON", id="export.json"),
        Binding("m", "pick('md')", "Markdown", id="export.md"),
        Binding("h", "pick('html')", "HTML", id="export.html"),
        Binding("escape", "pick('')", "Cancel", id="export.cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(" Export the timeline ", id="dialog-title")
            yield Static("[b]j[/] JSON (every event, verifiable) · [b]m[/] Markdown (review draft) · [b]h[/] HTML · Escape: cancel")
        yield Footer()

    def action_pick(self, fmt: str) -> None:
        """Answer."""
        self.dismiss(fmt or None)
