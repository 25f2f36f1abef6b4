"""The prompt line: what the operator is expected to do now, and which keys do it."""

from __future__ import annotations

from textual.widgets import Static


class Prompt(Static):
    """What the operator is expected to do now, and which keys do it."""

    DEFAULT_CSS = """
    Prompt { height: auto; padding: 0 1; background: $boost; }
    Prompt.-attention { background: $warning 30%; text-style: bold; }
    Prompt.-danger { background: $error 40%; text-style: bold; }
    """

    def say(self, text: str, level: str = "") -> None:
        """Show ``text`` (markup); ``level`` ``attention`` or ``danger`` makes it stand out."""
        self.update(text)
        self.set_class(level == "attention", "-attention")
        self.set_class(level == "danger", "-danger")
