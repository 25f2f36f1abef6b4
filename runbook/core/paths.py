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
    return private_dir(path)


def config_dir() -> Path:
    """The user's config directory (``runbook.toml`` lives here when not in the working dir)."""
    env = os.environ.get("RUNBOOK_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path("runbook", appauthor=False)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) for the owner only; an existing one loses group/other read and write.

    ``mkdir(mode=…)`` does nothing for a directory that already exists: a home created by hand,
    by an older version or under a umask of 022 would otherwise stay readable by everyone. The
    search bit is left alone: as root, the sandbox lets the ``postgres`` user *enter* (never list)
    the directories above its data directory, and taking that away would stop the sandbox.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    tighten(path)
    return path


def tighten(path: Path) -> None:
    """Drop group and other read/write permissions from ``path`` if it is ours (a shared sticky
    directory such as /tmp is never touched). Best effort: a path we cannot change stays as it is."""
    import stat

    try:
        st = path.stat()
        if st.st_mode & 0o066 and st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o066)
    except OSError:
        pass


def bundled_playbooks() -> Path:
    """The ``playbooks/`` directory shipped beside the package (source checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "playbooks"
