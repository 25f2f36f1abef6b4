"""The Textual application and the three entry points the command line calls.

* :func:`run_app` — ``runbook``: the home screen.
* :func:`run_incident_app` — ``runbook run PLAYBOOK`` on a terminal: the start form when a
  parameter is missing or invalid, else straight to the run screen.
* :func:`resume_incident_app` — ``runbook resume INCIDENT`` / ``runbook attach INCIDENT``: attach
  to its supervisor (or resume it in a new one), or follow it read-only when another operator
  drives it (with a take-over key).

Screens are imported lazily: the home screen must paint nearly as fast as an empty Textual app.
:class:`TuiContext` and :func:`state_home` live in :mod:`runbook.tui.context`, the screen that opens an
incident is chosen in :mod:`runbook.tui.screens.opening` (all re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from textual.app import App
from textual.binding import Binding

from runbook.tui.commands import RunbookCommands
from runbook.tui.context import TuiContext, state_home
from runbook.tui.screens.opening import run_screen_for_incident, run_screen_for_new

__all__ = [
    "RunbookApp",
    "TuiContext",
    "resume_incident_app",
    "run_app",
    "run_incident_app",
    "run_screen_for_incident",
    "run_screen_for_new",
    "state_home",
]


class RunbookApp(App[str | None]):
    """The runbook TUI.

    Args:
        ctx: Config, journal and playbook directories (the CLI's context or a :class:`TuiContext`).
        start: Builds the first screen; the home screen when None.
        now: The clock (UTC); tests and screenshots inject a fixed one.
        cursor_blink: Whether text inputs blink (off for snapshots).
        ansi_color: Use the terminal's own 16 ANSI colours (see ``App``).
    """

    CSS_PATH = "runbook.tcss"
    TITLE = "runbook"
    COMMANDS = App.COMMANDS | {RunbookCommands}
    # Not in the footers: every screen shows its own way out (q, Escape); the palette lists it.
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False)]

    def __init__(
        self,
        ctx: Any,
        *,
        start: Callable[[RunbookApp], Any] | None = None,
        now: Callable[[], datetime] | None = None,
        cursor_blink: bool = True,
        ansi_color: bool | None = None,
    ) -> None:
        super().__init__(ansi_color=ansi_color)
        self.cursor_blink = cursor_blink
        self.ctx = ctx
        self._start = start
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))

    def on_mount(self) -> None:
        if self._start is not None:
            self.push_screen(self._start(self))
        else:
            from runbook.tui.screens.home import HomeScreen

            self.push_screen(HomeScreen(self.ctx))

    async def action_quit(self) -> None:
        """Quit safely: a driven incident pauses first (it stays resumable)."""
        from runbook.tui.screens.run import RunScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen) and screen.driving and screen.ended is None:
                if self.screen is not screen:
                    # Close dialogs so the run screen can answer QUIT.
                    while self.screen is not screen and len(self.screen_stack) > 1:
                        self.pop_screen()
                screen.action_quit_safely()
                return
        self.exit()


def _run(app: RunbookApp) -> None:
    message = app.run()
    if message:
        print(message)


def run_app(obj: Any) -> None:
    """``runbook``: the home screen."""
    _run(RunbookApp(obj))


def run_incident_app(obj: Any, loaded: Any, given: dict[str, Any], env: Any, mode: str) -> None:
    """``runbook run PLAYBOOK`` on a terminal."""
    _run(RunbookApp(obj, start=lambda app: run_screen_for_new(obj, loaded, given, env, mode)))


def resume_incident_app(obj: Any, incident: str, env: Any, take_over: bool) -> None:
    """``runbook resume INCIDENT`` and ``runbook attach INCIDENT`` on a terminal."""
    _run(RunbookApp(obj, start=lambda app: run_screen_for_incident(obj, incident, env, take_over)))
