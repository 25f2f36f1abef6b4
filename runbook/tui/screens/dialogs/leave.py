"""Leaving while a step runs: pause after it, stop it now, or stay."""

from __future__ import annotations

from textual.binding import Binding

from runbook.tui.screens.dialogs.key_choice import KeyChoiceScreen


class LeaveScreen(KeyChoiceScreen):
    """Leaving while a step runs: ``wait`` for it, ``stop`` it, or stay (None)."""

    BINDINGS = [
        Binding("w", "choose('wait')", "Pause after it", id="leave.wait"),
        Binding("x", "choose('stop')", "Stop it now", id="leave.stop"),
        Binding("escape", "choose('')", "Stay", id="leave.stay"),
    ]
    HEADING = "A step is running"
    TEXT = (
        "[b]w[/] pause the incident when the step finishes · [b]x[/] stop the step now "
        "(journaled as failed; you decide on resume) and pause · Escape: stay"
    )
