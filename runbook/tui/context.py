"""What the TUI needs from the command line: config, journal, state directory, playbook dirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TuiContext:
    """What the app needs from the command line (tests build one directly).

    Attributes:
        config: The loaded ``runbook.toml`` (``.environment(name)``, ``.environments``).
        journal: The journal.
        home: The state directory (step logs, incident work directories).
        dirs: Playbook directories.
    """

    config: Any
    journal: Any
    home: Path | None = None
    dirs: list[Path] | None = None

    def playbook_dirs(self) -> list[Path]:
        """The playbook directories."""
        if self.dirs is not None:
            return self.dirs
        from runbook.playbook.catalog import playbook_dirs

        return playbook_dirs(getattr(self.config, "playbook_dirs", None))


def state_home(ctx: Any) -> Path:
    """The state directory of ``ctx`` (``RUNBOOK_HOME`` by default)."""
    home = getattr(ctx, "home", None)
    if isinstance(home, Path):
        return home
    from runbook.core.paths import home as default_home

    return default_home()
