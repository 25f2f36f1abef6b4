"""The backups directory: ids and paths checked before they are joined, snapshot names, `latest`, the lock.

Snapshots are ordered and aged by their directory's mtime (set when a snapshot completes), never by
the time in their name: names written in local time by older versions, or given by hand
(``name: manual``), sort and prune exactly like the UTC names written now.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

from runbook.actions.spec import ActionParams
from runbook.core.errors import ActionError
from runbook.core.timestamps import stamp

INCOMPLETE = ".incomplete-"
RECORDS = ".files"  # rsync's stdout (the files it copied), beside .incomplete-NAME while it runs
LOCK = ".runbook.lock"
LATEST = "latest"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


# --- validation -----------------------------------------------------------------------------


def check_id(value: Any, what: str) -> str:
    """``value`` if it is one safe path component (a tenant, dataset or snapshot name).

    Raises:
        ValueError: One sentence naming the bad id.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} id {value!r} is not a valid id: use letters, digits, '.', '_' or '-'.")
    text = str(value)
    if not _ID.fullmatch(text) or text in (".", ".."):
        raise ValueError(f"{what} id {text!r} is not a valid id: use letters, digits, '.', '_' or '-'.")
    return text


def require_id(value: Any, what: str) -> str:
    """:func:`check_id` at run time: the same sentence as an :class:`ActionError`."""
    try:
        return check_id(value, what)
    except ValueError as exc:
        raise ActionError(str(exc)) from None


def check_pattern(value: str) -> str:
    if not value or "/" in value or "\x00" in value or value.startswith("."):
        raise ValueError(
            f"pattern {value!r} must be a name glob like backup_* (no '/', not starting with '.')"
        )
    return value


def check_snapshot_ref(value: str) -> str:
    """``latest``, a snapshot name, or an absolute path to a snapshot directory."""
    if "\x00" in value:
        raise ValueError("snapshot contains a NUL byte")
    if "/" in value:
        if not value.startswith("/"):
            raise ValueError(
                f"snapshot {value!r} must be a name in the backups directory or an absolute path"
            )
        return value
    return check_id(value, "Snapshot")


def absolute(path: str, what: str) -> str:
    if not path or "\x00" in path:
        raise ActionError(f"The {what} path is empty or contains a NUL byte.")
    return os.path.abspath(os.path.expanduser(path))


def inside(child: str, parent: str) -> bool:
    """True when real path ``child`` is ``parent`` or below it."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def check_separate(root: str, backups: str) -> None:
    r, b = os.path.realpath(root), os.path.realpath(backups)
    if inside(b, r):
        raise ActionError(
            f"The backups directory {backups} is inside the storage root {root}; keep them apart."
        )
    if inside(r, b):
        raise ActionError(
            f"The storage root {root} is inside the backups directory {backups}; keep them apart."
        )


# --- params shared by the actions that read one snapshot ------------------------------------


Pattern = Annotated[str, AfterValidator(check_pattern)]
"""A snapshot name glob like ``backup_*`` (no ``/``, not starting with ``.``)."""


SnapshotSpec = Annotated[str, AfterValidator(check_snapshot_ref)]
"""``latest``, a snapshot name, or an absolute path to a snapshot directory."""


class SnapshotRef(ActionParams):
    backups: str | None = None
    """Directory holding the snapshots (needed when snapshot is a name)."""
    snapshot: SnapshotSpec = LATEST
    """`latest`, a snapshot name, or an absolute path to a snapshot."""


def describe_snapshot(params: SnapshotRef) -> str:
    """The snapshot path as it resolves now (so the plan shows which backup), or as written."""
    try:
        return resolve_snapshot(params.backups, params.snapshot)
    except ActionError:
        if "/" in params.snapshot:
            return params.snapshot
        return os.path.join(os.path.abspath(params.backups or "."), params.snapshot)


# --- snapshots in a backups directory ------------------------------------------------------


def snapshot_dirs(backups: str, pattern: str = "*") -> list[tuple[float, str]]:
    """(mtime, name) of the snapshot directories, oldest first; symlinks and dot-names are skipped."""
    out = []
    try:
        entries = list(os.scandir(backups))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ActionError(f"Cannot read the backups directory {backups}: {exc.strerror}.") from None
    for entry in entries:
        if entry.name.startswith(".") or entry.name == LATEST or not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        out.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    out.sort()
    return out


def taken(snapshot: tuple[float, str]) -> datetime:
    """When a ``(mtime, name)`` snapshot completed, as an aware datetime (see the module docstring)."""
    return datetime.fromtimestamp(snapshot[0], UTC)


def latest_target(backups: str) -> str | None:
    """Name of the snapshot ``latest`` points to, if it is a symlink to a directory inside ``backups``."""
    link = os.path.join(backups, LATEST)
    if not os.path.islink(link):
        return None
    real = os.path.realpath(link)
    if not os.path.isdir(real) or os.path.dirname(real) != os.path.realpath(backups):
        return None
    return os.path.basename(real)


def resolve_snapshot(backups: str | None, snapshot: str) -> str:
    """Real path of ``snapshot`` (``latest``, a name in ``backups`` or an absolute path).

    Raises:
        ActionError: It does not exist, is not a directory, or (by name) resolves outside ``backups``.
    """
    if "/" in snapshot:
        path = os.path.realpath(snapshot)
        if not os.path.isdir(path):
            raise ActionError(f"Snapshot not found: {snapshot} is not a directory.")
        return path
    if not backups:
        raise ActionError(f"Snapshot {snapshot!r} is a name, so the backups directory must be given.")
    base = os.path.realpath(absolute(backups, "backups"))
    candidate = os.path.join(base, snapshot)
    if not os.path.lexists(candidate):
        raise ActionError(f"Snapshot {snapshot} not found in {base}.")
    path = os.path.realpath(candidate)
    if not os.path.isdir(path):
        raise ActionError(f"Snapshot {snapshot} in {base} is not a directory.")
    if not inside(path, base) or path == base:
        raise ActionError(
            f"Snapshot {snapshot} points outside the backups directory {base}; refusing to use it."
        )
    return path


def unused_name(base: str) -> str:
    """``base_<UTC YYYYmmdd_HHMMSS>``, with ``-2``, ``-3``… when that path exists (same second)."""
    first = f"{base}_{stamp()}"
    path, n = first, 1
    while os.path.lexists(path):
        n += 1
        path = f"{first}-{n}"
    return path


@contextlib.contextmanager
def backups_lock(backups: str, what: str) -> Iterator[None]:
    """One snapshot or prune at a time per backups directory (an advisory flock)."""
    fd = os.open(os.path.join(backups, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ActionError(
                f"Another snapshot or prune is running in {backups}; wait for it before the {what}."
            ) from None
        yield
    finally:
        os.close(fd)
