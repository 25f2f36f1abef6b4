"""Which screen opens an incident: the start form or the run screen for a new one; for one that
exists, the run screen driving it (attached to its supervisor when it runs detached), or following
it read-only when another live operator drives it.

The command line (through :mod:`runbook.tui.app`) and the home screen both open incidents here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.screen import Screen


def run_screen_for_new(ctx: Any, loaded: Any, given: dict[str, Any], env: Any, mode: str) -> Screen[None]:
    """The start form when a parameter is missing or invalid, else the run screen."""
    from runbook.playbook import params as P

    try:
        P.bind(loaded.playbook.params, given, env.lookup)
    except P.ParamError:
        from runbook.tui.screens.start import StartScreen

        return StartScreen(ctx, loaded, given=given, env_name=env.name, mode=mode)
    from runbook.tui.screens.run import RunScreen

    return RunScreen(ctx, env, loaded=loaded, given=given, mode=mode)


def run_screen_for_incident(ctx: Any, incident: str, env: Any, take_over: bool = False) -> Screen[None]:
    """Resume ``incident``, or follow it read-only when another live operator holds it."""
    from runbook.supervisor.client import supervisor_state
    from runbook.tui.context import state_home
    from runbook.tui.screens.run import RunScreen

    state = supervisor_state(state_home(ctx), incident)
    if state is not None:  # it runs detached: drive it unless someone attached drives it now
        held = state.get("driver") is not None
    else:
        lock = ctx.journal.lock_info(incident)
        held = lock is not None and lock.alive() and not ctx.journal.holds(incident)
    return RunScreen(ctx, env, incident=incident, take_over=take_over, read_only=held and not take_over)
