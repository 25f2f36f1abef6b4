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

from runbook.tui.screens.cursor import apply_cursor_blink
from runbook.tui.widgets.mode_bar import ModeBar

EXTENSIONS = {"json": "json", "md": "md", "html": "html"}


class TimelineLoaded(Message):
    """The incident's events were read."""

    def __init__(
        self,
        rows: list[tuple[str, str, str, str, str]],
        mode: str,
        env: str,
        opened: str | None,
        closed: str | None,
        rto: float | None,
    ) -> None:
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
    from runbook.core import incident as S
    from runbook.reports.timeline import describe_event, local_time

    st = S.IncidentState(incident)
    rows = []
    for ev in journal.iter_events(incident):
        S.apply(st, ev)
        rows.append(
            (ev.ts[:19].replace("T", " ") + "Z", local_time(ev.ts), ev.actor, ev.step or "", describe_event(ev))
        )
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
        bar = self.query_one("#modebar", ModeBar)
        bar.mode = message.mode
        bar.env = message.env
        bar.set_times(message.opened, message.closed, message.rto)
        self._columns()
        self._fill()

    def _narrow(self) -> bool:
        return self.app.size.width < 100

    def _columns(self) -> None:
        """Fixed column widths from the data; the event column takes what is left.

        Order: UTC, local, step, event, actor (the event is what the reader wants). Below 100
        columns the UTC date shortens to MM-DD and the actor column goes when one operator did
        everything (the count line names them) or shrinks to 12 otherwise.
        """
        table = self.query_one("#timeline-table", DataTable)
        table.clear(columns=True)
        narrow = self._narrow()
        utc_w = 15 if narrow else 20
        step_w = min(16, max([4, *(len(r[3]) for r in self.rows)]))
        actor_w = min(24, max([5, *(len(r[2]) for r in self.rows)]))
        self._one_actor = len({r[2] for r in self.rows}) == 1 and narrow
        if narrow:
            actor_w = 0 if self._one_actor else min(actor_w, 12)
        columns = 5 if actor_w else 4
        event_full = max([5, *(len(r[4]) for r in self.rows)])
        room = self.app.size.width - (utc_w + 8 + step_w + actor_w) - 2 * columns - 1
        event_w = min(event_full, max(24, room))
        for label, width in (("UTC", utc_w), ("local", 8), ("step", step_w), ("event", event_w), ("actor", actor_w)):
            if width:
                table.add_column(label, width=width)
        self._layout_width = self.app.size.width

    def on_resize(self) -> None:
        if self.rows and self.app.size.width != getattr(self, "_layout_width", None):
            self._columns()
            self._fill()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def _fill(self) -> None:
        text = self.query_one("#timeline-filter", Input).value.strip().lower()
        rows = [r for r in self.rows if not text or text in " ".join(r).lower()]
        table = self.query_one("#timeline-table", DataTable)
        table.clear()
        narrow = self._narrow()
        one_actor = getattr(self, "_one_actor", False)
        table.add_rows(
            [((r[0][5:] if narrow else r[0]), r[1], r[3], r[4], *(() if one_actor else (r[2],))) for r in rows]
        )
        shown = f"{len(rows):,} of {len(self.rows):,} events" if text else f"{len(self.rows):,} events"
        by = f" · all by {self.rows[0][2]}" if one_actor and self.rows else ""
        self.query_one("#timeline-count", Static).update(f"{shown}{by} · times in UTC and local ({self.incident})")

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
        from runbook.tui.screens.dialogs.export import ExportScreen

        def done(fmt: str | None) -> None:
            if fmt:
                self.notify(f"Exporting {fmt}…")
                self._export(fmt)

        self.app.push_screen(ExportScreen(), done)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, fmt: str) -> None:
        from runbook.reports.exports import export_incident

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
        return [
            ("Export the timeline", "key ctrl+e", "export"),
            ("Refresh", "key ctrl+r", "reload"),
            ("Back", "key escape", "back"),
        ]
