"""A dialog answered by one key: the base of the leave and export dialogs."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class KeyChoiceScreen(ModalScreen[str | None]):
    """Says what each key does; a key's binding runs ``choose('ANSWER')`` and the dialog answers it.

    ``choose('')`` (Escape) answers None: nothing chosen.
    """

    CSS_PATH = "dialogs.tcss"
    HEADING: ClassVar[str] = ""
    TEXT: ClassVar[str] = ""  # markup: the keys and what they do

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f" {self.HEADING} ", id="dialog-title")
            yield Static(self.TEXT)
        yield Footer()

    def action_choose(self, answer: str) -> None:
        """Answer ``answer`` (None when empty)."""
        self.dismiss(answer or None)
