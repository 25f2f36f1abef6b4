"""Pilot tests: drive real incidents (real shell steps) by key presses; check journal and screen."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from runbook.core.events import EventType
from runbook.core.incident import IncidentStatus
from runbook.engine.frontend import Ask
from runbook.tui.app import RunbookApp, run_screen_for_incident, run_screen_for_new
from runbook.tui.screens.dialogs import ConfirmScreen, InterruptedScreen, LeaveScreen, ReasonScreen
from runbook.tui.screens.run import RunScreen
from tests.conftest import supervisor_of
from tests.tui.conftest import (
    events_of,
    keys_handled,
    on_top,
    record_notifications,
    start_headless,
    wait_for,
    wait_notified,
    wait_painted,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def run_screen(app: RunbookApp) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


def asking(app: RunbookApp, ask: Ask, step: str | None = None):
    def check() -> bool:
        scr = run_screen(app)
        p = scr.pending
        return p is not None and p.request.ask == ask and (step is None or p.request.step == step)

    return check


def new_app(ctx, name: str, given: dict, mode: str = "live") -> RunbookApp:
    from runbook.playbook.catalog import resolve
    from runbook.playbook.validate import load

    loaded = load(resolve(name, ctx.playbook_dirs()))
    env = ctx.config.environment("sandbox")
    return RunbookApp(ctx, start=lambda app: run_screen_for_new(ctx, loaded, given, env, mode))


async def type_text(pilot, text: str) -> None:
    await pilot.press(*text)


async def test_incident_start_to_finish_by_keys(ctx, tui_home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("data")
    marker = tmp_path / "marker"
    app = new_app(ctx, "files", {"victim": str(victim), "marker": str(marker)})
    notes = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "look"), what="first step")
        scr = run_screen(app)
        inc = scr.incident
        assert inc
        bar = str(scr.query_one("#modebar").render_line(0).text)
        assert "LIVE · sandbox" in bar
        assert "ls -l" in str(scr.query_one("#step-action").render())
        await pilot.press("r")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "remove"), what="remove step")
        assert str(victim) in "\n".join(scr.query_one("#output").lines)  # the ls output

        # Typed confirmation mistyped: not run, journaled as refused with what was typed.
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen, focus="confirm-input"), what="confirm dialog")
        await pilot.press("enter")  # Enter alone never confirms: it says what to type
        await wait_notified(pilot, notes, "to confirm, or press Escape to refuse.")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.query_one("#confirm-ok").disabled
        assert not events_of(ctx.journal, inc, EventType.CONFIRMATION_GIVEN)
        await type_text(pilot, "wrong-name")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: bool(events_of(ctx.journal, inc, EventType.CONFIRMATION_REFUSED)), what="refusal"
        )
        refused = events_of(ctx.journal, inc, EventType.CONFIRMATION_REFUSED)[0]
        assert refused.payload["typed"] == "wrong-name"
        assert victim.exists()
        # The engine asks again; Escape refuses outright.
        await wait_until(
            pilot,
            lambda: (
                on_top(app, ConfirmScreen, focus="confirm-input")() and app.screen.query_one("#confirm-note").render()
            ),
            what="confirm again",
        )
        await pilot.press("escape")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "remove"), what="asked again after refusal")
        assert len(events_of(ctx.journal, inc, EventType.CONFIRMATION_REFUSED)) == 2
        assert victim.exists()
        assert not events_of(ctx.journal, inc, EventType.CONFIRMATION_GIVEN)

        # Skip with a reason.
        await pilot.press("s")
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"), what="reason dialog")
        await type_text(pilot, "kept for forensics")
        await pilot.press("enter")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "mark"), what="mark step")
        skipped = events_of(ctx.journal, inc, EventType.STEP_SKIPPED)
        assert skipped[0].step == "remove" and skipped[0].payload["reason"] == "kept for forensics"
        assert victim.exists()

        # `yes` confirmation: Enter does nothing, `y` confirms.
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen), what="yes dialog")
        await pilot.press("enter")
        await keys_handled(pilot)
        assert isinstance(app.screen, ConfirmScreen) and not marker.exists()
        assert len(events_of(ctx.journal, inc, EventType.CONFIRMATION_GIVEN)) == 0
        await pilot.press("y")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "tell"), what="manual step")
        given = events_of(ctx.journal, inc, EventType.CONFIRMATION_GIVEN)
        assert given[0].step == "mark" and given[0].payload["level"] == "yes"
        assert marker.exists()

        # A note.
        await pilot.press("n")
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"), what="note dialog")
        await type_text(pilot, "paged the db team")
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.NOTE)), what="note")
        assert events_of(ctx.journal, inc, EventType.NOTE)[0].payload["text"] == "paged the db team"

        # Manual step: run, then mark done with a note.
        await pilot.press("r")
        await wait_until(pilot, asking(app, Ask.MANUAL, "tell"), what="manual ask")
        await pilot.press("d")
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"), what="done dialog")
        await type_text(pilot, "posted")
        await pilot.press("enter")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "last"), what="last step")
        await pilot.press("r")
        await wait_until(pilot, lambda: run_screen(app).ended == "completed", what="completion")
        status = run_screen(app).display_status()
        assert status == {"look": "done", "remove": "skipped", "mark": "done", "tell": "done", "last": "done"}
        assert "completed" in str(run_screen(app).query_one("#prompt").render())
    closed = events_of(ctx.journal, inc, EventType.INCIDENT_CLOSED)
    assert closed and closed[0].payload["status"] == "completed"
    assert ctx.journal.lock_info(inc) is None


async def test_typed_confirmation_given(ctx, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("data")
    app = new_app(ctx, "files", {"victim": str(victim), "marker": str(tmp_path / "m")})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "look"))
        inc = run_screen(app).incident
        await pilot.press("r")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "remove"))
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen, focus="confirm-input"), what="typed confirmation")
        text = str(app.screen.query_one("#confirm-action").render())
        assert f"rm {victim}" in text
        await type_text(pilot, str(victim)[:-1])
        await wait_until(
            pilot, lambda: app.screen.query_one("#confirm-input").value == str(victim)[:-1], what="the value typed"
        )
        await keys_handled(pilot)
        assert app.screen.query_one("#confirm-ok").disabled
        await type_text(pilot, str(victim)[-1])
        await wait_painted(pilot, "matches — press Enter to confirm")
        assert not app.screen.query_one("#confirm-ok").disabled
        await pilot.press("enter")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "mark"))
        given = events_of(ctx.journal, inc, EventType.CONFIRMATION_GIVEN)
        assert given[0].payload["typed"] == str(victim)
        assert not victim.exists()
        # Quit safely: the pending question is answered QUIT, the incident pauses.
        await pilot.press("q")
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.PAUSED)))
    assert ctx.journal.lock_info(inc) is None


def _interrupted_incident(home: Path, tmp_path: Path, journal, *, leave_running: bool = False) -> str:
    """An incident whose `nap` step runs when its process is killed (SIGKILL: no chance to journal).

    With ``leave_running``, the runner's reaper is killed first, so the step's process goes on.
    """
    proc = start_headless(home, "slow", "-p", f"marker={tmp_path / 'after'}", "--yes")
    line = proc.stdout.readline()
    assert line.startswith("incident: "), line + proc.stderr.read()
    inc = line.split()[1]
    wait_for(
        lambda: journal.events(inc),
        lambda evs: any(e.type == EventType.STEP_STARTED and e.step == "nap" for e in evs),
        what="the nap step to start",
    )
    # The step's own process runs (`sleep 60`, after it printed `started-nap`) under the supervisor.
    runner = supervisor_of(proc.pid)
    wait_for(
        lambda: [" ".join(c.cmdline()) for c in runner.children(recursive=True)],
        lambda cmds: any("sleep 60" in c for c in cmds),
        what="the nap step's process",
    )
    step_processes = runner.children(recursive=True)
    if leave_running:
        for reaper in [c for c in runner.children() if c.cmdline()[1:3] == ["-I", "-S"]]:
            reaper.kill()
    runner.kill()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if leave_running:
        return inc
    for orphan in step_processes:  # the step outlives its runner: do not leave it sleeping
        try:
            orphan.kill()
        except psutil.NoSuchProcess:
            pass
    return inc


async def test_resume_interrupted_step_skip_with_reason(ctx, tui_home: Path, tmp_path: Path) -> None:
    inc = _interrupted_incident(tui_home, tmp_path, ctx.journal)
    env = ctx.config.environment("sandbox")
    app = RunbookApp(ctx, start=lambda a: run_screen_for_incident(ctx, inc, env))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, on_top(app, InterruptedScreen), what="interrupted dialog")
        await wait_painted(pilot, "Interrupted step", "never finished")
        dialog = app.screen
        assert "never finished" in " ".join(str(w.render()) for w in dialog.query("Static"))
        # The last output comes from the step log (the engine buffers it: it may be empty after a SIGKILL).
        assert dialog.query_one("#interrupted-output") is not None
        assert dialog.request.extra.get("started_at")
        assert run_screen(app).display_status().get("nap") == "interrupted"
        await pilot.press("s")
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"))
        await type_text(pilot, "finished by hand")
        await pilot.press("enter")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "after"), what="next step")
        resolved = events_of(ctx.journal, inc, EventType.INTERRUPTED_RESOLVED)
        assert resolved[0].payload == {**resolved[0].payload, "choice": "skip", "reason": "finished by hand"}
        skipped = events_of(ctx.journal, inc, EventType.STEP_SKIPPED)
        assert skipped[-1].step == "nap" and skipped[-1].payload["reason"] == "finished by hand"
        await pilot.press("q")
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.PAUSED)))
    assert not (tmp_path / "after").exists()


async def test_a_step_left_running_is_stopped_by_typing_its_id(ctx, tui_home: Path, tmp_path: Path) -> None:
    """Its runner and the runner's reaper both killed: the step's `sleep` goes on, and the dialog says so."""
    inc = _interrupted_incident(tui_home, tmp_path, ctx.journal, leave_running=True)
    from runbook.core.procs import group_members

    started = events_of(ctx.journal, inc, EventType.PROCESS_STARTED)
    sleepers = [psutil.Process(pid) for pid in group_members(started[-1].payload["pgid"])]
    assert sleepers  # the step goes on without its runner
    env = ctx.config.environment("sandbox")
    app = RunbookApp(ctx, start=lambda a: run_screen_for_incident(ctx, inc, env))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, on_top(app, InterruptedScreen), what="interrupted dialog", timeout=30)
            await wait_painted(pilot, "still running", "never run twice")
            assert app.screen.check_action("retry", ()) is False and app.screen.check_action("terminate", ())
            await pilot.press("t")  # retry is not offered while it runs: nothing happens
            await pilot.press("k")
            await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"))
            await type_text(pilot, "nap")
            await pilot.press("enter")
            await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.INTERRUPTED_RESOLVED)),
                             what="the stop journaled", timeout=30)
            await wait_until(pilot, on_top(app, InterruptedScreen), what="the usual question")
            await wait_painted(pilot, "Did it complete?")
            resolved = events_of(ctx.journal, inc, EventType.INTERRUPTED_RESOLVED)
            assert [e.payload["choice"] for e in resolved] == ["terminate"]
            assert not events_of(ctx.journal, inc, EventType.STEP_RETRY_REQUESTED)
            assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in sleepers)
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is run_screen(app))
            await pilot.press("q")
            await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.PAUSED)))
    finally:
        for p in sleepers:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


async def test_quit_then_resume_retries_interrupted(ctx, tui_home: Path, tmp_path: Path) -> None:
    inc = _interrupted_incident(tui_home, tmp_path, ctx.journal)
    env = ctx.config.environment("sandbox")
    app = RunbookApp(ctx, start=lambda a: run_screen_for_incident(ctx, inc, env))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, on_top(app, InterruptedScreen), what="interrupted dialog")
        await pilot.press("escape")  # decide later, from the run screen
        await wait_until(pilot, lambda: app.screen is run_screen(app))
        assert "interrupted" in str(run_screen(app).query_one("#prompt").render())
        await pilot.press("q")  # quit: the incident stays resumable
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.PAUSED)))
    assert ctx.journal.lock_info(inc) is None
    assert not events_of(ctx.journal, inc, EventType.INTERRUPTED_RESOLVED)


async def test_read_only_view_of_locked_incident_and_take_over(ctx, tui_home: Path, tmp_path: Path) -> None:
    from runbook.journal.store import Journal

    victim = tmp_path / "v"
    victim.write_text("x")
    # An incident paused in headless mode (the destructive step needs a typed confirmation).
    proc = start_headless(tui_home, "files", "-p", f"victim={victim}", "-p", f"marker={tmp_path / 'm'}")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    inc = out.splitlines()[0].split()[1]
    # Another operator holds it (another Journal instance: another lock token, a live pid).
    other = Journal(tui_home / "journal.sqlite3", actor="alice@otherhost")
    other.acquire(inc)
    env = ctx.config.environment("sandbox")
    app = RunbookApp(ctx, start=lambda a: run_screen_for_incident(ctx, inc, env))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            scr = run_screen(app)
            assert scr.read_only
            await wait_until(
                pilot, lambda: "alice@otherhost" in str(scr.query_one("#prompt").render()), what="holder shown"
            )
            await wait_until(pilot, lambda: scr.state.status == IncidentStatus.PAUSED, what="history")
            assert "run_step" not in {b.binding.action for b in app.active_bindings.values() if b.enabled}
            # New events from the holder appear live.
            other.append(inc, "note", {"text": "alice is on it"})
            await wait_until(
                pilot, lambda: "alice is on it" in str(scr.query_one("#timeline-tail").render()), what="live follow"
            )
            await pilot.press("r")  # not available read-only
            await keys_handled(pilot)
            assert not events_of(ctx.journal, inc, EventType.RESUMED)
            await pilot.press("o")
            await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "remove"), what="driving after take-over")
            take = events_of(ctx.journal, inc, EventType.TAKE_OVER)
            assert take and take[0].payload["from"] == "alice@otherhost" and take[0].actor == "oncall@testhost"
            assert not scr.read_only
            await pilot.press("q")
            await wait_until(pilot, lambda: len(events_of(ctx.journal, inc, EventType.PAUSED)) >= 2)
    finally:
        other.close()


async def test_flood_keeps_keys_answering(ctx, tmp_path: Path) -> None:
    app = new_app(ctx, "flood", {})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "flood"))
        inc = run_screen(app).incident
        await pilot.press("r")
        await wait_until(pilot, lambda: run_screen(app)._output_lines > 0, what="the flood to stream")
        # While the step streams, a key opens the note dialog promptly.
        t0 = time.monotonic()
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), timeout=5, what="note dialog")
        assert time.monotonic() - t0 < 3
        await wait_until(pilot, on_top(app, ReasonScreen, focus="reason-input"), what="note dialog ready")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is run_screen(app), what="back on the run screen")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "after"), timeout=60, what="flood done")
        scr = run_screen(app)
        lines = scr.query_one("#output").lines
        assert len(lines) <= 1000
        assert lines[-1].strip() == "200000"
        fin = [e for e in events_of(ctx.journal, inc, EventType.STEP_FINISHED) if e.step == "flood"]
        assert fin[0].payload["lines"] == 200000
        await pilot.press("q")
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.PAUSED)))


async def test_quit_while_a_step_runs_asks_then_stops_it(ctx, tmp_path: Path) -> None:
    marker = tmp_path / "after"
    app = new_app(ctx, "slow", {"marker": str(marker)})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "first"), what="first step")
        scr = run_screen(app)
        inc = scr.incident
        await pilot.press("r")
        await wait_until(pilot, asking(app, Ask.BEFORE_STEP, "nap"), what="the nap step")
        await pilot.press("r")
        await wait_until(pilot, on_top(app, ConfirmScreen), what="yes dialog")
        await pilot.press("y")
        await wait_until(
            pilot, lambda: "started-nap" in "\n".join(scr.query_one("#output").lines), what="the nap step running"
        )
        # Escape: stay; the step goes on.
        await pilot.press("q")
        await wait_until(pilot, on_top(app, LeaveScreen), what="the leave dialog")
        await wait_painted(pilot, "A step is running", "stop the step now")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is scr, what="back on the run screen")
        assert scr.running_step == "nap" and not events_of(ctx.journal, inc, EventType.PAUSED)
        # x: stop it now, journaled as failed by the operator; the step's on_failure (stop) ends
        # the incident, and the app leaves.
        await pilot.press("q")
        await wait_until(pilot, on_top(app, LeaveScreen), what="the leave dialog again")
        await pilot.press("x")
        await wait_until(pilot, lambda: bool(events_of(ctx.journal, inc, EventType.INCIDENT_CLOSED)), what="the end")
    failed = events_of(ctx.journal, inc, EventType.STEP_FAILED)
    assert [e.step for e in failed] == ["nap"] and "stopped by the operator" in failed[0].payload["error"]
    assert not marker.exists()
    assert ctx.journal.lock_info(inc) is None


TICKER = """\
id: ticker
title: Ticks for a while
tier: maintenance
not_drillable: a test playbook
steps:
  - id: tick
    title: Tick
    shell: [sh, -c, 'i=0; while [ $i -lt 60 ]; do echo tick-$i; i=$((i+1)); sleep 0.15; done']
    effect: read-only
"""


async def test_home_shows_a_detached_incident_and_enter_attaches_to_its_live_output(
    ctx, tui_home: Path, tmp_path: Path
) -> None:
    from runbook.tui.screens.home import HomeScreen
    from tests.conftest import runbook
    from tests.tui.test_screens import option_texts

    pbs = Path(os.environ["RUNBOOK_PLAYBOOKS"])
    (pbs / "ticker.yaml").write_text(TICKER)
    started = runbook(tui_home, "run", "ticker", "--headless", "--detach")
    assert started.returncode == 0, started.stderr
    inc = started.stdout.split()[1]
    wait_for(lambda: ctx.journal.events(inc), lambda evs: any(e.type == EventType.STEP_STARTED for e in evs),
             what="the tick step to start")
    app = RunbookApp(ctx)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen) and app.screen.data is not None,
                         what="home data")
        row = next(t for t in option_texts(app.screen) if inc in t)
        assert "running" in row and "detached, step tick running" in row
        app.screen.query_one("#home-list").highlighted = next(
            i for i, t in enumerate(option_texts(app.screen)) if inc in t)
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(isinstance(s, RunScreen) for s in app.screen_stack), what="run screen")
        scr = run_screen(app)
        assert not scr.read_only

        def last_tick() -> int:
            ticks = [line for line in scr.query_one("#output").lines if line.startswith("tick-")]
            return int(ticks[-1].split("-")[1]) if ticks else -1

        await wait_until(pilot, lambda: last_tick() >= 0, what="the recent output")
        first = last_tick()
        await wait_until(pilot, lambda: last_tick() >= first + 3, what="live output after the attach")
    # The app is gone (its terminal closed): the incident goes on and completes by itself.
    r = runbook(tui_home, "attach", inc, "--headless", timeout=60)
    assert r.returncode == 0 and "incident completed" in r.stdout, r.stderr
    ticks = [e for e in ctx.journal.events(inc) if e.type == EventType.STEP_FINISHED]
    assert ticks and ticks[0].payload["lines"] == 60
