"""The TUI's screens, one per module, loaded on first use (Textual's style).

* :mod:`.home` — playbooks by tier and level, open incidents (data in :mod:`.home_data`, rows
  in :mod:`.home_rows`);
* :mod:`.start` — the start form;
* :mod:`.run` — drives or follows an incident (what it has seen in :mod:`.run_model`, the engine
  and journal workers in :mod:`.run_engine`, the operator's answers in :mod:`.run_answers`, its
  words in :mod:`.run_view`);
* :mod:`.timeline` — every event, filter, export;
* :mod:`.dialogs` — the modal dialogs, one per module;
* :mod:`.opening` — which screen opens an incident (start form, run screen, read-only).

Each screen's stylesheet sits beside it (``CSS_PATH``), read when the screen first opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.tui.lazy import lazy_exports

if TYPE_CHECKING:
    from runbook.tui.screens.home import HomeScreen
    from runbook.tui.screens.run import RunScreen
    from runbook.tui.screens.start import StartScreen
    from runbook.tui.screens.timeline import TimelineScreen

# Exported name -> the module (in this package) that defines it.
MODULES = {
    "HomeScreen": "home",
    "RunScreen": "run",
    "StartScreen": "start",
    "TimelineScreen": "timeline",
}

__all__ = ["HomeScreen", "RunScreen", "StartScreen", "TimelineScreen"]

__getattr__ = lazy_exports(__name__, MODULES)
