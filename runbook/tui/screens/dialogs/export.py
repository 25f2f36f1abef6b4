"""Picks the timeline's export format."""

from __future__ import annotations

from textual.binding import Binding

from runbook.tui.screens.dialogs.key_choice import KeyChoiceScreen


class ExportScreen(KeyChoiceScreen):
    """Pick an export format: j ``json``, m ``md``, h ``html`` (Escape: None)."""

    BINDINGS = [
        Binding("j", "choose('json')", "JSON", id="export.json"),
        Binding("m", "choose('md')", "Markdown", id="export.md"),
        Binding("h", "choose('html')", "HTML", id="export.html"),
        Binding("escape", "choose('')", "Cancel", id="export.cancel"),
    ]
    HEADING = "Export the timeline"
    TEXT = "[b]j[/] JSON (every event, verifiable) · [b]m[/] Markdown (review draft) · [b]h[/] HTML · Escape: cancel"
