"""Pilot tests of the home screen, the start form and the timeline screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runbook.tui.app import RunbookApp
from runbook.tui.home import HomeScreen
from runbook.tui.run import RunScreen
from runbook.tui.start import StartScreen
from runbook.tui.timeline import TimelineScreen
from tests.tui.conftest import start_headless, wait_until

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
    ctx.journal.append("drill-x", "drill_result", {"playbook": "slow", "rto_met": True})
    app = RunbookApp(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.data is not None, what="home data")
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
        await pilot.pause(0.1)
        texts = [t for t in option_texts(app.screen) if t.strip()]
        assert any("flood" in t for t in texts) and not any("files" in t for t in texts)
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert any("files" in t for t in option_texts(app.screen))


async def test_start_form_validates_inline_and_starts(ctx, tmp_path: Path) -> None:
    app = RunbookApp(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.data is not None)
        await pilot.press(*"files")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, StartScreen), what="start form")
        form = app.screen
        assert "required" in str(form.query_one("#error-victim").render())
        assert str(form.query_one("#modebar").render_line(0).text).find("LIVE · sandbox") >= 0
        await pilot.press(*"../etc/passwd")
        await pilot.pause(0.05)
        assert "'..'" in str(form.query_one("#error-victim").render())
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert isinstance(app.screen, StartScreen)  # not started with an invalid value
        (tmp_path / "v").write_text("x")
        (tmp_path / "m").write_text("x")
        form.query_one("#param-victim").value = str(tmp_path / "v")
        form.query_one("#param-marker").value = str(tmp_path / "m")
        await pilot.pause(0.05)
        assert not form.query_one("#error-victim").display
        # Choose dry-run with the keyboard-driven radio set.
        form.query_one("#start-mode").query("RadioButton")[1].value = True
        await pilot.pause(0.05)
        assert "DRY-RUN" in str(form.query_one("#modebar").render_line(0).text)
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
        scr = app.screen
        await wait_until(pilot, lambda: bool(scr.rows), what="rows")
        table = scr.query_one("#timeline-table")
        assert table.row_count == len(ctx.journal.events(inc))
        assert any("opened files" in r[4] for r in scr.rows)
        assert all(r[0].endswith("Z") for r in scr.rows)
        await pilot.press(*"paused")
        await pilot.pause(0.1)
        assert table.row_count == 1
        await pilot.press("ctrl+e")
        await pilot.pause(0.1)
        await pilot.press("j")
        out = tmp_path / f"incident-{inc}.json"
        await wait_until(pilot, out.exists, what="export")
        doc = json.loads(out.read_text())
        assert doc["incident"] == inc and len(doc["events"]) == len(ctx.journal.events(inc))
        assert oct(out.stat().st_mode & 0o777) == "0o600"
