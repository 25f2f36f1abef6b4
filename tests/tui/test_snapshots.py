"""Snapshot tests (pytest-textual-snapshot) of every screen at 80×24 and 120×40.

Deterministic: a frozen clock for the app and the journal, fixed incident ids, a fixed journal
actor, TZ=UTC, no cursor blink; the engine itself runs for real.
Update with ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.tui.app import RunbookApp, TuiContext, run_screen_for_incident, run_screen_for_new
from runbook.tui.dialogs import ConfirmScreen, InterruptedScreen, ReasonScreen
from runbook.tui.home import HomeScreen
from runbook.tui.run import RunScreen
from runbook.tui.start import StartScreen
from runbook.tui.timeline import TimelineScreen
from tests.tui import snapdata
from tests.tui.conftest import wait_until

pytestmark = pytest.mark.timeout(120)
SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def sctx(tui_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from runbook.journal.store import Journal
    from runbook.sandbox.environment import with_sandbox
    from runbook.stores.config import load_config

    snapdata.freeze(monkeypatch)
    pbs = snapdata.write_playbooks(tmp_path / "snap-playbooks")
    journal = Journal(tui_home / "journal.sqlite3", actor="oncall@testhost")
    ctx = TuiContext(load_config(local=with_sandbox()), journal, home=tui_home, dirs=[pbs])
    ctx.pbs = pbs  # type: ignore[attr-defined]
    yield ctx
    journal.close()


def app_for(ctx, start=None) -> RunbookApp:
    return RunbookApp(ctx, start=start, now=lambda: snapdata.FIXED_NOW, cursor_blink=False)


def loaded(ctx):
    from runbook.playbook.validate import load

    return load(ctx.pbs / "restore-table.yaml")


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


async def _settle(pilot) -> None:
    await pilot.hover(offset=(0, 0))  # a fixed mouse position (the mode bar): no hover highlight
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare, sctx, size) -> None:
    snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    sctx.journal.append("drill-1", "drill_result", {"playbook": "disk-check", "rto_met": True})
    app = app_for(sctx)

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.data is not None, what="L2190")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_start_form(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=lambda a: StartScreen(sctx, loaded(sctx)))

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: isinstance(app.screen, StartScreen), what="L2604")
        await pilot.press(*"orders;")  # an invalid identifier: inline message
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


def _new_run(ctx, pause: int):
    env = ctx.config.environment("sandbox")
    return lambda a: run_screen_for_new(ctx, loaded(ctx), {"table": "orders", "pause": str(pause)}, env, "live")


@pytest.mark.parametrize("size", SIZES)
def test_run_mid_step(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=_new_run(sctx, 30))

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: run_screen(app).pending is not None, what="L3235")
        await pilot.press("r")
        await wait_until(pilot, lambda: run_screen(app).pending is not None and run_screen(app).pending.request.ask.value == "manual", what="L3343")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="reason dialog")
        await pilot.press(*"done", "enter")
        await wait_until(pilot, lambda: run_screen(app).pending is not None and run_screen(app).pending.request.step == "restore", what="L3584")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="yes dialog")
        await pilot.press("y")
        await wait_until(pilot, lambda: "copied 1200 rows" in "\n".join(run_screen(app).query_one("#output").lines), what="L3746")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_typed_confirmation(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=_new_run(sctx, 0))

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: run_screen(app).pending is not None, what="L4153")
        await pilot.press("r")
        await wait_until(pilot, lambda: run_screen(app).pending is not None and run_screen(app).pending.request.ask.value == "manual", what="L4261")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="reason dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: run_screen(app).pending is not None and run_screen(app).pending.request.step == "restore", what="L4493")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="yes dialog")
        await pilot.press("y")
        await wait_until(pilot, lambda: run_screen(app).pending is not None and run_screen(app).pending.request.step == "drop_stale", what="L4655")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="L4820")
        await pilot.press(*"ord")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_interrupted_dialog(snap_compare, sctx, size) -> None:
    inc = snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    env = sctx.config.environment("sandbox")
    app = app_for(sctx, start=lambda a: run_screen_for_incident(sctx, inc, env))

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: isinstance(app.screen, InterruptedScreen), what="L5383")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_timeline(snap_compare, sctx, size) -> None:
    inc = snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    app = app_for(sctx, start=lambda a: TimelineScreen(sctx, inc))

    async def before(pilot) -> None:
        await wait_until(pilot, lambda: bool(app.screen.rows) and app.screen.query_one("#timeline-table").row_count == len(app.screen.rows), what="L5847")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)
