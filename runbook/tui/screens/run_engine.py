"""The run screen's two workers: driving the incident, and following it read-only.

Both run in worker threads and never touch a widget. The engine itself runs in the incident's
supervisor (:mod:`runbook.supervisor`): the driving worker is its client, relaying events to the
screen's :class:`~runbook.tui.frontend.TuiFrontend` (drained on a timer) and the operator's
answers back. The end, or a change of who holds a followed incident, comes back as a message.
"""

from __future__ import annotations

import os
from pathlib import Path
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


def _client(screen: RunScreen) -> Any:
    """Make this screen a client of a supervisor (which starts the local stores a run needs)."""
    from runbook.supervisor.client import SupervisedEngine
    from runbook.tui.context import state_home

    engine = SupervisedEngine(screen.frontend, screen.ctx.journal, state_home(screen.ctx))
    screen.engine = engine
    return engine


def _open_or_attach(screen: RunScreen, engine: Any, take_over: bool) -> None:
    """Open the new incident in a supervisor, or replay the journal's history and attach to it.

    An incident whose supervisor is alive is attached to (driving it, or taking it over); one
    without is resumed in a new supervisor. Either way the engine runs outside this terminal.
    """
    from runbook.journal.store import default_actor
    from runbook.supervisor.client import start_supervisor, supervisor_alive

    config = getattr(screen.ctx, "config_path", None)
    driver = f"{default_actor()} (pid {os.getpid()})"
    if screen.loaded is not None and screen.incident is None:
        spec = {"action": "open", "playbook": str(Path(screen.loaded.path).resolve()), "params": screen.given,
                "env": screen.env.name, "mode": screen.mode, "driver": driver}
        screen.incident = str(start_supervisor(spec, engine.home, config, screen.ctx.journal.actor)["incident"])
        engine.attach(screen.incident, interactive=True, since_n=-1)
        return
    assert screen.incident is not None
    history = screen.ctx.journal.events(screen.incident)
    last = history[-1].n if history else -1
    screen.model.history_n = max(screen.model.history_n, last)
    for ev in history:
        screen.frontend.emit(Journaled(screen.incident, ev))
    if not supervisor_alive(engine.home, screen.incident):
        secrets = _secrets(screen, history)
        resume = {"action": "resume", "incident": screen.incident, "takeover": take_over, "secrets": secrets,
                  "driver": driver}
        start_supervisor(resume, engine.home, config, screen.ctx.journal.actor)
        take_over = False
    engine.attach(screen.incident, interactive=True, take_over=take_over, since_n=last)


def _secrets(screen: RunScreen, history: list[Any]) -> dict[str, Any]:
    """Secret parameters are asked here, before the supervisor starts (it has nobody to ask yet)."""
    from runbook.core import incident as S
    from runbook.engine import opening

    st = S.fold(screen.incident or "", history)
    if not st.secret_params:
        return {}
    given = {n: os.environ[f"RUNBOOK_PARAM_{n.upper()}"] for n in st.secret_params
             if os.environ.get(f"RUNBOOK_PARAM_{n.upper()}")}
    return opening.collect_secrets(screen.frontend, st, opening.journaled_playbook(st), given)


def drive(screen: RunScreen, take_over: bool) -> EngineEnded:
    """Drive the incident until it ends, pauses or is taken over (blocks the calling worker thread)."""
    from runbook.core.errors import RunbookError
    from runbook.supervisor.client import DrivenElsewhere

    try:
        engine = _client(screen)
        _open_or_attach(screen, engine, take_over)
        screen.app.call_from_thread(screen.flush_now)  # history and recent output at once, not at the next tick
        outcome = engine.run()
    except DrivenElsewhere as exc:
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
