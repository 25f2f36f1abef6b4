"""The timeline screen: every event (UTC and local time, actor, step, what happened), filter, export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from runbook.tui.widgets import ModeBar

EXTENSIONS = {"json": "json", "md": "md", "html": "html"}


class TimelineLoaded(Message):
    """The incident's events were read."""

    def __init__(self, rows: list[tuple[str, str, str, str, str]], mode: str, env: str, opened: str | None, closed: str | None, rto: float | None) -> None:
        super().__init__()
        self.rows = rows
        self.mode = mode
        self.env = env
        self.opened = opened
        self.closed = closed
        self.rto = rto


class ExportDone(Message):
    """An export finished (or failed)."""

    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text = text
        self.ok = ok


def timeline_rows(journal: Any, incident: str) -> tuple[list[tuple[str, str, str, str, str]], Any]:
    """The rows of the timeline and the folded state (blocking: call from a worker)."""
    from runbook.engine import state as S
    from runbook.timeline import describe_event, local_time

    st = S.IncidentState(incident)
    rows = []
    for ev in journal.iter_events(incident):
        S.apply(st, ev)
        rows.append((ev.ts[:19].replace("T", " ") + "Z", local_time(ev.ts), ev.actor, ev.step or "", describe_event(ev)))
    return rows, st


class TimelineScreen(Screen[None]):
    """Every event of one incident. Type to filter; ctrl+e exports.

    Args:
        ctx: Config and journal.
        incident: The incident id.
    """

    AUTO_FOCUS = "#timeline-filter"
    CSS_PATH = "timeline.tcss"

    BINDINGS = [
        Binding("escape", "back", "Back", id="timeline.back"),
        Binding("ctrl+e", "export", "Export…", id="timeline.export", priority=True),
        Binding("ctrl+r", "reload", "Refresh", id="timeline.reload"),
        Binding("down", "move(1)", "Down", show=False, id="timeline.down"),
        Binding("up", "move(-1)", "Up", show=False, id="timeline.up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="timeline.pagedown"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="timeline.pageup"),
    ]

    def __init__(self, ctx: Any, incident: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.incident = incident
        self.rows: list[tuple[str, str, str, str, str]] = []

    def compose(self) -> ComposeResult:
        yield ModeBar(subtitle=f"timeline · {self.incident}", id="modebar")
        yield Input(placeholder="Type to filter (step, actor, event…)", id="timeline-filter", compact=True)
        yield DataTable(id="timeline-table", cursor_type="row", zebra_stripes=True)
        yield Static("Loading…", id="timeline-count")
        yield Footer()

    def on_mount(self) -> None:
        from runbook.tui.widgets import apply_cursor_blink

        apply_cursor_blink(self)
        self.query_one("#timeline-filter", Input).focus()
        self._load()

    @work(thread=True, exclusive=True, group="timeline", exit_on_error=False)
    def _load(self) -> None:
        try:
            rows, st = timeline_rows(self.ctx.journal, self.incident)
        except Exception as exc:  # noqa: BLE001
            self.post_message(ExportDone(f"The timeline could not be read: {exc}", False))
            return
        self.post_message(TimelineLoaded(rows, st.mode, st.env, st.opened or None, st.closed, st.rto))

    def on_timeline_loaded(self, message: TimelineLoaded) -> None:
        self.rows = message.rows
        # Fixed column widths (from the data): rendering does not depend on when widths settle.
        table = self.query_one("#timeline-table", DataTable)
        table.clear(columns=True)
        caps = (20, 8, 24, 20, 240)
        for i, label in enumerate(("UTC", "local", "actor", "step", "event")):
            width = max([len(label), *(len(r[i]) for r in self.rows)])
            table.add_column(label, width=min(width, caps[i]))
        bar = self.query_one("#modebar", ModeBar)
        bar.mode = message.mode
        bar.env = message.env
        bar.set_times(message.opened, message.closed, message.rto)
        self._fill()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def _fill(self) -> None:
        text = self.query_one("#timeline-filter", Input).value.strip().lower()
        rows = [r for r in self.rows if not text or text in " ".join(r).lower()]
        table = self.query_one("#timeline-table", DataTable)
        table.clear()
        table.add_rows(rows)
        shown = f"{len(rows):,} of {len(self.rows):,} events" if text else f"{len(self.rows):,} events"
        self.query_one("#timeline-count", Static).update(f"{shown} · times in UTC and local ({self.incident})")

    def action_move(self, delta: int) -> None:
        """Move the row cursor (the filter keeps the focus)."""
        table = self.query_one("#timeline-table", DataTable)
        table.action_cursor_down() if delta > 0 else table.action_cursor_up()

    def action_page(self, delta: int) -> None:
        """Page the table."""
        table = self.query_one("#timeline-table", DataTable)
        table.action_page_down() if delta > 0 else table.action_page_up()

    def action_back(self) -> None:
        """Back to where we came from."""
        self.app.pop_screen()

    def action_reload(self) -> None:
        """Read the events again."""
        self._load()

    def action_export(self) -> None:
        """Ask the format, then export to a file in the current directory."""
        from runbook.tui.dialogs import ExportScreen

        def done(fmt: str | None) -> None:
            if fmt:
                self.notify(f"Exporting {fmt}…")
                self._export(fmt)

        self.app.push_screen(ExportScreen(), done)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, fmt: str) -> None:
        from runbook.exports import export_incident

        try:
            text = export_incident(self.ctx.journal, self.incident, fmt)
            path = Path.cwd() / f"incident-{self.incident}.{EXTENSIONS[fmt]}"
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        except Exception as exc:  # noqa: BLE001 - UsageError (format not available), OSError
            self.post_message(ExportDone(f"Export failed: {exc}", False))
            return
        self.post_message(ExportDone(f"Wrote the {fmt} export to {path}", True))

    def on_export_done(self, message: ExportDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "error", timeout=10)

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for the command palette."""
        return [("Export the timeline", "key ctrl+e", "export"), ("Refresh", "key ctrl+r", "reload"), ("Back", "key escape", "back")]
