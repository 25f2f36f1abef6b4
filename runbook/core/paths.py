"""Where runbook keeps its state: ``RUNBOOK_HOME`` or the platformdirs state directory."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state directory (journal, step logs, sandbox). Created 0700 on first use."""
    env = os.environ.get("RUNBOOK_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_state_path

        path = user_state_path("runbook", appauthor=False)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def config_dir() -> Path:
    """The user's config directory (``runbook.toml`` lives here when not in the working dir)."""
    env = os.environ.get("RUNBOOK_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path("runbook", appauthor=False)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def bundled_playbooks() -> Path:
    """The ``playbooks/`` directory shipped beside the package (source checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "playbooks"
