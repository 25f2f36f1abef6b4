"""What the dialogs share: how they say where and when, and buttons for the mouse only."""

from __future__ import annotations

from textual.widgets import Button

from runbook.tui.widgets.mode_bar import MODE_LABEL


def no_focus(button: Button) -> Button:
    """Buttons in dialogs are for the mouse only: Enter on a focused button must never confirm."""
    button.can_focus = False
    return button


def when(ts: object) -> str:
    """An ISO timestamp as ``2025-11-23 03:00:07 UTC (local 04:00:07)``."""
    if not ts:
        return "earlier"
    try:
        from runbook.reports.timeline import local_time

        text = str(ts)
        return f"{text[:10]} {text[11:19]} UTC (local {local_time(text)})"
    except ValueError:
        return str(ts)


def where(mode: str, env: str) -> str:
    """``LIVE · sandbox``: the mode and the environment, as the mode bar says them."""
    return f"{MODE_LABEL.get(mode, mode.upper())} · {env}"
