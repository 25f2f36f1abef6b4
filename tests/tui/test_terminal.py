"""The SSH terminal at 3 a.m.: NO_COLOR, 16 colours, 80×24, keyboard only.

Every screen is rendered with ``NO_COLOR`` set (Textual then paints in monochrome) and must still
say LIVE or DRILL in words; rendered for a 16-colour terminal it must use only the 16 standard
colours; the start form's radio sets work with keys alone.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from runbook.engine.frontend import Ask
from runbook.tui.app import RunbookApp, TuiContext, run_screen_for_incident, run_screen_for_new
from runbook.tui.screens.dialogs import ConfirmScreen, InterruptedScreen, ReasonScreen
from runbook.tui.screens.home import HomeScreen
from runbook.tui.screens.run import RunScreen
from runbook.tui.screens.start import StartScreen
from runbook.tui.screens.timeline import TimelineScreen
from tests.tui import snapdata
from tests.tui.conftest import (
    keys_handled,
    on_top,
    record_notifications,
    wait_notified,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

ANSI = re.compile(r"\x1b\[([0-9;]*)m")
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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


def screen_text(app: RunbookApp, color_system: str | None = None) -> str:
    """The screen as the terminal would get it (``color_system`` None: plain text)."""
    width, height = app.size
    out = io.StringIO()
    console = Console(
        width=width, height=height, file=out, force_terminal=True, color_system=color_system, legacy_windows=False
    )
    update = app.screen._compositor.render_update(full=True)
    console.print(update)
    return out.getvalue()


def plain(text: str) -> str:
    return CSI.sub("", text)


def loaded(ctx):
    from runbook.playbook.validate import load

    return load(ctx.pbs / "restore-table.yaml")


def run_of(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


async def _every_screen(ctx, check, *, ansi_color: bool | None = None) -> None:
    """Open each screen at 80×24 and call ``check(app, name)`` once it shows what it must say."""
    inc = snapdata.make_interrupted(ctx.journal, ctx.pbs / "restore-table.yaml")
    env = ctx.config.environment("sandbox")

    def app_for(start=None):
        return RunbookApp(ctx, start=start, now=lambda: snapdata.FIXED_NOW, cursor_blink=False, ansi_color=ansi_color)

    async def shown(pilot, app, name: str) -> None:
        # Wait for everything the check reads (a modal's backdrop, with the mode bar on its first
        # line, may be painted a frame after the dialog's own words), then check it once more.
        def holds() -> bool:
            try:
                check(app, name)
            except AssertionError:
                return False
            return True

        await wait_until(pilot, holds, what=f"{name}: {EXPECT[name]}")
        check(app, name)

    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.data is not None)
        await shown(pilot, app, "home")
    app = app_for(lambda a: StartScreen(ctx, loaded(ctx)))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, on_top(app, StartScreen))
        await shown(pilot, app, "start")
    app = app_for(lambda a: run_screen_for_incident(ctx, inc, env))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, on_top(app, InterruptedScreen))
        await shown(pilot, app, "interrupted")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is run_of(app))
        await shown(pilot, app, "run")
        await pilot.press("q")
        await wait_until(pilot, lambda: run_of(app).ended is not None)
    app = app_for(lambda a: TimelineScreen(ctx, inc))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.rows))
        await shown(pilot, app, "timeline")
    await _drill_screens(ctx, env, app_for, shown)


def asked(app, step: str | None = None, ask: Ask | None = None):
    """A condition: the run screen waits for the operator (on ``step``, with ``ask``)."""

    def check() -> bool:
        pending = run_of(app).pending
        return pending is not None and step in (None, pending.request.step) and ask in (None, pending.request.ask)

    return check


async def _drill_screens(ctx, env, app_for, shown) -> None:
    """A drill, up to its typed confirmation."""
    app = app_for(lambda a: run_screen_for_new(ctx, loaded(ctx), {"table": "orders", "pause": "0"}, env, "drill"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, asked(app))
        await shown(pilot, app, "drill-run")
        await pilot.press("r")
        await wait_until(pilot, asked(app, ask=Ask.MANUAL))
        await pilot.press("d")
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"))
        await pilot.press("enter")
        await wait_until(pilot, asked(app, "restore"))
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, asked(app, "drop_stale"))
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen, focus="confirm-input"))
        await shown(pilot, app, "drill-confirm")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is run_of(app))
        await pilot.press("q")
        await wait_until(pilot, lambda: run_of(app).ended is not None)


# What each screen must say in words (first line: the mode bar).
EXPECT = {
    "home": ["LIVE · sandbox", "interrupted"],
    "start": ["LIVE · sandbox", "LIVE on sandbox: every confirmed step acts for real."],
    "interrupted": ["LIVE · sandbox", "Interrupted step", "never finished"],
    "run": ["LIVE · sandbox", "interrupted"],
    "timeline": ["LIVE · sandbox"],
    "drill-run": ["DRILL · sandbox"],
    "drill-confirm": ["DRILL · sandbox — confirm a DESTRUCTIVE step", "Type  orders  exactly"],
}


async def test_no_color_every_screen_says_the_mode_in_words(sctx, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[str] = set()

    def check(app: RunbookApp, name: str) -> None:
        assert app.no_color, "NO_COLOR was not honoured"
        text = plain(screen_text(app, "truecolor"))
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        for words in EXPECT[name]:
            assert words in text, f"{name}: {words!r} not on screen:\n{text}"
        if name not in ("home",):
            mode = "DRILL" if name.startswith("drill") else "LIVE"
            assert f"{mode} · sandbox" in lines[0], f"{name}: the mode bar does not say {mode}: {lines[0]!r}"
        seen.add(name)

    async def go() -> None:
        monkeypatch.setenv("NO_COLOR", "1")
        await _every_screen(sctx, check)

    # NO_COLOR is read (and removed) by each App: set it again for every app.
    original = RunbookApp.__init__

    def init(self, *args, **kwargs):
        monkeypatch.setenv("NO_COLOR", "1")
        original(self, *args, **kwargs)

    monkeypatch.setattr(RunbookApp, "__init__", init)
    await go()
    assert seen == set(EXPECT)


async def test_sixteen_colours_every_screen(sctx) -> None:
    seen: set[str] = set()

    def check(app: RunbookApp, name: str) -> None:
        raw = screen_text(app, "standard")
        codes = {c for m in ANSI.finditer(raw) for c in m.group(1).split(";") if c}
        # Standard 16 colours only: no 256-colour (38;5) or true-colour (38;2) sequences.
        assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", raw), f"{name}: more than 16 colours"
        assert codes, f"{name}: no styling at all"
        text = plain(raw)
        for words in EXPECT[name]:
            assert words in text, f"{name}: {words!r} not on screen"
        seen.add(name)

    await _every_screen(sctx, check, ansi_color=True)
    assert seen == set(EXPECT)


async def test_start_form_mode_and_environment_by_keys_only(sctx) -> None:
    app = RunbookApp(
        sctx, start=lambda a: StartScreen(sctx, loaded(sctx)), now=lambda: snapdata.FIXED_NOW, cursor_blink=False
    )
    notes = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, on_top(app, StartScreen, focus="param-table"))
        form = app.screen
        assert form.mode == "live"
        # Tab from field to field to the mode radio set; arrows move, Enter/space selects.
        for _ in range(20):
            if app.focused is form.query_one("#start-mode"):
                break
            await pilot.press("tab")
            await keys_handled(pilot)
        assert app.focused is form.query_one("#start-mode"), f"tab never reached the mode: {app.focused}"
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: form.mode == "dry-run", what="dry-run chosen")
        assert "DRY-RUN" in str(form.query_one("#modebar").render_line(0).text)
        await pilot.press("down", "space")
        await wait_until(pilot, lambda: form.mode == "drill", what="drill chosen")
        assert "DRILL · sandbox" in str(form.query_one("#modebar").render_line(0).text)
        assert "DRILL" in str(form.query_one("#start-go").label)
        # Back up to the environment set with shift+tab; it answers the keys too.
        await pilot.press("shift+tab")
        await wait_until(pilot, lambda: app.focused is form.query_one("#start-env"), what="the environment set focused")
        await pilot.press("enter")
        await keys_handled(pilot)
        assert form.env_name == "sandbox"
        # The start key works from anywhere; the table is missing, so it refuses and says why.
        await pilot.press("ctrl+s")
        await wait_notified(pilot, notes, "Fix table")
        await keys_handled(pilot)
        assert isinstance(app.screen, StartScreen)
        assert app.focused is form.query_one("#param-table")
