"""The run screen's two workers: driving the engine, and following an incident read-only.

Both run in worker threads and never touch a widget: the engine reports through the screen's
:class:`~runbook.tui.frontend.TuiFrontend` (drained on a timer), and the end, or a change of who
holds a followed incident, comes back to the screen as a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

from runbook.engine.frontend import Journaled

if TYPE_CHECKING:
    from runbook.tui.screens.run import RunScreen

FOLLOW_INTERVAL = 0.5

# How the engine's worker can end besides the engine's own outcomes (completed, failed, paused,
# needs-human): another live operator holds the incident, or it could not start or run.
LOCKED, ERROR = "locked", "error"
PAUSED = "paused"  # the engine's outcome when the operator quit: the incident stays resumable


class EngineEnded(Message):
    """The engine's worker finished (or could not start).

    Args:
        status: completed, failed, paused, needs-human, error or locked.
        message: One sentence for the operator.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__()
        self.status = status
        self.message = message


class LockChanged(Message):
    """Read-only view: who holds the incident changed (None: nobody alive holds it)."""

    def __init__(self, holder: str | None) -> None:
        super().__init__()
        self.holder = holder


def _engine(screen: RunScreen) -> Any:
    """Start the local stores the playbook needs, build the engine, wire notifications."""
    from runbook.engine.runner import Engine
    from runbook.tui.context import state_home

    local = getattr(screen.ctx.config, "local", {}).get(screen.env.name)
    if local is not None:
        # Start the local stores this playbook needs (in this worker, never the UI thread).
        local.ensure(screen.loaded.playbook if screen.loaded is not None else None)
        screen.env = screen.ctx.config.environment(screen.env.name)
    engine = Engine(screen.ctx.journal, screen.frontend, home=state_home(screen.ctx), environment=screen.env)
    screen.engine = engine
    try:
        from runbook.notify import cli_hook

        cli_hook(screen.ctx, screen.env, engine)
    except Exception as exc:  # noqa: BLE001 - notifications must never stop the incident
        screen.app.call_from_thread(screen.notify, f"Slack notifications are off: {exc}", severity="warning")
    return engine


def _open_or_resume(screen: RunScreen, engine: Any, take_over: bool) -> None:
    """Open the new incident, or replay the journal's history to the screen and resume it."""
    if screen.loaded is not None and screen.incident is None:
        screen.incident = engine.open(screen.loaded, screen.given, mode=screen.mode).id
        return
    assert screen.incident is not None
    history = screen.ctx.journal.events(screen.incident)
    screen.model.history_n = max(screen.model.history_n, history[-1].n if history else -1)
    for ev in history:
        screen.frontend.emit(Journaled(screen.incident, ev))
    engine.resume(screen.incident, take_over=take_over)


def drive(screen: RunScreen, take_over: bool) -> EngineEnded:
    """Run the engine until the incident ends or pauses (blocks the calling worker thread)."""
    from runbook.core.errors import RunbookError
    from runbook.journal.store import LockedError

    try:
        engine = _engine(screen)
        _open_or_resume(screen, engine, take_over)
        outcome = engine.run()
    except LockedError as exc:
        return EngineEnded(LOCKED, str(exc))
    except RunbookError as exc:
        return EngineEnded(ERROR, str(exc))
    except Exception as exc:  # noqa: BLE001 - shown to the operator, never a traceback
        return EngineEnded(ERROR, f"Unexpected error ({type(exc).__name__}: {exc}).")
    return EngineEnded(outcome.status, outcome.message)


def follow(screen: RunScreen) -> None:
    """Read-only: poll the journal for new events and for the lock holder until told to stop."""
    journal = screen.ctx.journal
    incident = screen.incident
    assert incident is not None
    after = -1
    holder: str | None = "?"
    while not screen.stop_following.is_set():
        try:
            events = journal.events(incident, after_n=after)
            for ev in events:
                screen.frontend.emit(Journaled(incident, ev))
            if events:
                after = events[-1].n
            lock = journal.lock_info(incident)
            now = f"{lock.holder} (pid {lock.pid})" if lock is not None and lock.alive() else None
        except Exception as exc:  # noqa: BLE001 - keep following; say why once
            now = f"unknown ({exc})"
        if now != holder:
            holder = now
            screen.post_message(LockChanged(holder))
        screen.stop_following.wait(FOLLOW_INTERVAL)
