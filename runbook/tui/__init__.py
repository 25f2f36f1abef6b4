"""The Textual TUI: home, start form, run screen, confirmations, resume, timeline.

Where things are:

* :mod:`.app` — the application and the entry points the command line calls;
* :mod:`.context` — what the TUI needs from the command line (config, journal, directories);
* :mod:`.frontend` — the engine's front end: the thread bridge between the engine and the UI;
* :mod:`.screens` — one screen per module (``screens/dialogs/``: one dialog per module), each
  with its stylesheet beside it;
* :mod:`.widgets` — one widget per module;
* :mod:`.commands` — the command palette's provider.

Everything is imported on first use (``__getattr__`` here and in each package) so the home screen
paints nearly as fast as an empty Textual app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.tui.lazy import lazy_exports

if TYPE_CHECKING:
    from runbook.tui.app import RunbookApp, resume_incident_app, run_app, run_incident_app
    from runbook.tui.context import TuiContext

# Exported name -> the module (in this package) that defines it.
MODULES = {
    "RunbookApp": "app",
    "TuiContext": "context",
    "resume_incident_app": "app",
    "run_app": "app",
    "run_incident_app": "app",
}

__all__ = ["RunbookApp", "TuiContext", "resume_incident_app", "run_app", "run_incident_app"]

__getattr__ = lazy_exports(__name__, MODULES)
