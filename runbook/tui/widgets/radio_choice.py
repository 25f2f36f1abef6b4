"""A radio button that reads without colour."""

from __future__ import annotations

from textual.widgets import RadioButton


class RadioChoice(RadioButton):
    """A radio button whose state shows without colour (NO_COLOR): ``●`` on, blank off."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "●" if self.value else " "
