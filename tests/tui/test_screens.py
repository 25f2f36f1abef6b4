"""Pilot tests of the home screen, the start form and the timeline screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runbook.core.events import EventType
from runbook.tui.app import RunbookApp
from runbook.tui.screens.dialogs import ExportScreen
from runbook.tui.screens.home import HomeScreen
from runbook.tui.screens.run import RunScreen
from runbook.tui.screens.start import StartScreen
from runbook.tui.screens.timeline import TimelineScreen
from tests.tui.conftest import (
    keys_handled,
    on_top,
    record_notifications,
    start_headless,
    wait_notified,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def option_texts(screen) -> list[str]:
    ol = screen.query_one("#home-list")
    return [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]


def paused_incident(home: Path, tmp_path: Path) -> str:
    victim = tmp_path / "v"
    victim.write_text("x")
    proc = start_headless(home, "files", "-p", f"victim={victim}", "-p", f"marker={tmp_path / 'm'}")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    return out.splitlines()[0].split()[1]


async def test_home_groups_filters_and_lists_incidents(ctx, tui_home: Path, tmp_path: Path) -> None:
    inc = paused_incident(tui_home, tmp_path)
    ctx.journal.append("drill-x", EventType.DRILL_RESULT, {"playbook": "slow", "rto_met": True})
    app = RunbookApp(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(
            pilot,
            lambda: on_top(app, HomeScreen, focus="home-filter")() and app.screen.data is not None,
            what="home data",
        )
        texts = option_texts(app.screen)
        joined = "\n".join(texts)
        assert "Open incidents" in joined and inc in joined and "free to resume" in joined
        assert "component · level 1" in joined and "maintenance" in joined
        # Fixed columns: id, title, RTO, RPO, last drill (never run together).
        files = next(t for t in texts if t.startswith("  files "))
        assert "File repair" in files and " 15m   1h " in files and files.rstrip().endswith("not drillable")
        slow = next(t for t in texts if t.startswith("  slow "))
        assert re.search(r"  \d{4}-\d{2}-\d{2}$", slow.rstrip()), slow
        # Every playbook row and heading has the same width: the columns line up.
        table_rows = [t for t in texts if not t.startswith(("Open incidents", f"  {inc}"))]
        assert len({len(t) for t in table_rows}) == 1, table_rows
        heading = next(t for t in texts if t.startswith("maintenance"))
        assert heading.index("RTO") == files.index(" 15m ") + 1
        assert "env sandbox" in str(app.screen.query_one("#home-status").render())
        await pilot.press(*"flood")
        await wait_until(pilot, lambda: app.screen.query_one("#home-filter").value == "flood", what="the filter typed")
        await keys_handled(pilot)
        texts = [t for t in option_texts(app.screen) if t.strip()]
        assert any("flood" in t for t in texts) and not any("files" in t for t in texts)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen.query_one("#home-filter").value == "", what="the filter cleared")
        await keys_handled(pilot)
        assert any("files" in t for t in option_texts(app.screen))


async def test_start_form_validates_inline_and_starts(ctx, tmp_path: Path) -> None:
    app = RunbookApp(ctx)
    notes = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(
            pilot,
            lambda: on_top(app, HomeScreen, focus="home-filter")() and app.screen.data is not None,
            what="home data",
        )
        await pilot.press(*"files")
        await pilot.press("enter")
        await wait_until(pilot, on_top(app, StartScreen, focus="param-victim"), what="start form")
        form = app.screen
        assert "required" in str(form.query_one("#error-victim").render())
        assert str(form.query_one("#modebar").render_line(0).text).find("LIVE · sandbox") >= 0
        await pilot.press(*"../etc/passwd")
        await wait_until(
            pilot, lambda: "'..'" in str(form.query_one("#error-victim").render()), what="the inline error"
        )
        await pilot.press("ctrl+s")
        await wait_notified(pilot, notes, "Fix victim")
        assert isinstance(app.screen, StartScreen)  # not started with an invalid value
        (tmp_path / "v").write_text("x")
        (tmp_path / "m").write_text("x")
        form.query_one("#param-victim").value = str(tmp_path / "v")
        form.query_one("#param-marker").value = str(tmp_path / "m")
        await wait_until(pilot, lambda: not form.query_one("#error-victim").display, what="the error to go")
        # Choose dry-run with the keyboard-driven radio set.
        form.query_one("#start-mode").query("RadioButton")[1].value = True
        await wait_until(
            pilot,
            lambda: "DRY-RUN" in str(form.query_one("#modebar").render_line(0).text),
            what="DRY-RUN on the mode bar",
        )
        assert form.mode == "dry-run"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        scr = app.screen
        for _ in range(2):  # dry-run: the read-only steps still ask before running
            await wait_until(pilot, lambda: scr.pending is not None or scr.ended is not None, what="next question")
            if scr.ended is None:
                await pilot.press("r")
        await wait_until(pilot, lambda: scr.ended is not None, what="dry run end")
        assert scr.mode == "dry-run"
        assert scr.display_status()["remove"] == "planned"
        assert scr.ended == "completed" and (tmp_path / "v").exists()
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen), what="back home")


async def test_timeline_filter_and_export(ctx, tui_home: Path, tmp_path: Path) -> None:
    inc = paused_incident(tui_home, tmp_path)
    app = RunbookApp(ctx, start=lambda a: TimelineScreen(ctx, inc))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(
            pilot, lambda: on_top(app, TimelineScreen, focus="timeline-filter")() and bool(app.screen.rows), what="rows"
        )
        scr = app.screen
        table = scr.query_one("#timeline-table")
        assert table.row_count == len(ctx.journal.events(inc))
        assert any("opened files" in r[4] for r in scr.rows)
        assert all(r[0].endswith("Z") for r in scr.rows)
        await pilot.press(*"paused")
        await wait_until(pilot, lambda: scr.query_one("#timeline-filter").value == "paused", what="the filter typed")
        await keys_handled(pilot)
        assert table.row_count == 1
        await pilot.press("ctrl+e")
        await wait_until(pilot, on_top(app, ExportScreen), what="the export dialog")
        await pilot.press("j")
        out = tmp_path / f"incident-{inc}.json"
        await wait_until(pilot, out.exists, what="export")
        doc = json.loads(out.read_text())
        assert doc["incident"] == inc and len(doc["events"]) == len(ctx.journal.events(inc))
        assert oct(out.stat().st_mode & 0o777) == "0o600"
