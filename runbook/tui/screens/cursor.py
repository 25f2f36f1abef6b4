"""Cursor blinking, which the app turns off for tests and screenshots."""

from __future__ import annotations

from typing import Any


def apply_cursor_blink(screen: Any) -> None:
    """Inputs blink unless the app turned blinking off (tests and screenshots)."""
    blink = getattr(screen.app, "cursor_blink", True)
    from textual.widgets import Input

    for widget in screen.query(Input):
        widget.cursor_blink = blink
