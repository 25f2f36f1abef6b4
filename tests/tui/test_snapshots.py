"""Snapshot tests (pytest-textual-snapshot) of every screen at 80×24 and 120×40.

Deterministic: a frozen clock for the app and the journal, fixed incident ids, a fixed journal
actor, TZ=UTC, no cursor blink; the engine itself runs for real.
Update with ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.core.events import EventType
from runbook.engine.frontend import Ask
from runbook.tui.app import RunbookApp, TuiContext, run_screen_for_incident, run_screen_for_new
from runbook.tui.screens.dialogs import ConfirmScreen, InterruptedScreen, ReasonScreen
from runbook.tui.screens.home import HomeScreen
from runbook.tui.screens.run import RunScreen
from runbook.tui.screens.start import StartScreen
from runbook.tui.screens.timeline import TimelineScreen
from tests.tui import snapdata
from tests.tui.conftest import on_top, wait_painted, wait_until

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
    snapdata.supervise_in_process(monkeypatch, ctx)
    yield ctx
    journal.close()


def app_for(ctx, start=None) -> RunbookApp:
    return RunbookApp(ctx, start=start, now=lambda: snapdata.FIXED_NOW, cursor_blink=False)


def loaded(ctx):
    from runbook.playbook.validate import load

    return load(ctx.pbs / "restore-table.yaml")


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


def asking(app, ask: Ask, step: str | None = None):
    """A condition: the run screen asks ``ask`` (about ``step``)."""

    def check() -> bool:
        pending = run_screen(app).pending
        return pending is not None and pending.request.ask == ask and step in (None, pending.request.step)

    return check


async def _up_to_restore(pilot, app, note: str = "") -> None:
    """From the start of a new incident to the question before `restore` (`freeze` marked done)."""
    await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "freeze"), what="the freeze step")
    await pilot.press("r")
    await wait_until(pilot, asking(app, Ask.MANUAL, "freeze"), what="the manual step")
    await pilot.press("d")
    await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"), what="reason dialog")
    await pilot.press(*note, "enter")
    await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "restore"), what="the restore step")


async def _settle(pilot, *shows: str) -> None:
    """Wait until the screen shows ``shows`` (every part of it that arrives late), then for animations.

    The snapshot is taken right after: what it compares is what these texts prove is painted
    (a dialog with the screen below it, as the snapshot renders it).
    """
    await pilot.hover(offset=(0, 0))  # a fixed mouse position (the mode bar): no hover highlight
    await wait_painted(pilot, *shows)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare, sctx, size) -> None:
    snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    sctx.journal.append("drill-1", EventType.DRILL_RESULT, {"playbook": "disk-check", "rto_met": True})
    app = app_for(sctx)

    async def before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: on_top(app, HomeScreen, focus="home-filter")() and app.screen.data is not None,
            what="the home screen",
        )
        await _settle(
            pilot, "sandbox: down", snapdata.INTERRUPTED_ID, "disk-check", "2025-11-23", "Enter resumes it", "^q quit"
        )

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_start_form(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=lambda a: StartScreen(sctx, loaded(sctx)))

    async def before(pilot) -> None:
        await wait_until(pilot, on_top(app, StartScreen, focus="param-table"), what="the start form")
        await pilot.press(*"orders;")  # an invalid identifier: inline message
        await _settle(
            pilot,
            "orders;",
            "must be an identifier",
            "LIVE on sandbox: every confirmed step",
            "Start LIVE incident on sandbox",
            "^s Start incident",
        )

    assert snap_compare(app, terminal_size=size, run_before=before)


def _new_run(ctx, pause: int):
    env = ctx.config.environment("sandbox")
    return lambda a: run_screen_for_new(ctx, loaded(ctx), {"table": "orders", "pause": str(pause)}, env, "live")


@pytest.mark.parametrize("size", SIZES)
def test_run_mid_step(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=_new_run(sctx, 30))

    async def before(pilot) -> None:
        await _up_to_restore(pilot, app, note="done")
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen), what="yes dialog")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: "copied 1200 rows" in "\n".join(run_screen(app).query_one("#output").lines),
            what="the step's output",
        )
        await _settle(
            pilot,
            "Restores the table from the newest dump",
            "Effect: mutating",
            "Running… x stops the step",
            "copied 1200 rows",
            "running",
            "restore: started (attempt 1)",
            "x Stop step",
        )

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_typed_confirmation(snap_compare, sctx, size) -> None:
    app = app_for(sctx, start=_new_run(sctx, 0))

    async def before(pilot) -> None:
        await _up_to_restore(pilot, app)
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen), what="yes dialog")
        await pilot.press("y")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "drop_stale"), what="the drop_stale step")
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen, focus="confirm-input"), what="the typed confirmation")
        await pilot.press(*"ord")
        await wait_until(pilot, lambda: app.screen.query_one("#confirm-input").value == "ord", what="the value typed")
        # "  ord " is the input's text: elsewhere "ord" is only part of "orders".
        await _settle(
            pilot,
            "confirm a DESTRUCTIVE step",
            "Type  orders  exactly",
            "  ord ",
            "Drop the stale copy (drop_stale)",
            "restore: done in",
        )

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_interrupted_dialog(snap_compare, sctx, size) -> None:
    inc = snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    env = sctx.config.environment("sandbox")
    app = app_for(sctx, start=lambda a: run_screen_for_incident(sctx, inc, env))

    async def before(pilot) -> None:
        await wait_until(pilot, on_top(app, InterruptedScreen), what="the interrupted dialog")
        await _settle(
            pilot,
            "Interrupted step",
            "never finished",
            "(no output)",
            "interrupted",
            "Restore the table (restore)",
            ": resumed",
            "esc Later",
        )

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_timeline(snap_compare, sctx, size) -> None:
    inc = snapdata.make_interrupted(sctx.journal, sctx.pbs / "restore-table.yaml")
    app = app_for(sctx, start=lambda a: TimelineScreen(sctx, inc))

    async def before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: bool(app.screen.rows) and app.screen.query_one("#timeline-table").row_count == len(app.screen.rows),
            what="the rows",
        )
        await _settle(
            pilot,
            "note: restore started from dump of 02:00",
            "8 events · ",
            "times in UTC and local",
            "RTO 15:00",
            "^e Export",
        )

    assert snap_compare(app, terminal_size=size, run_before=before)
