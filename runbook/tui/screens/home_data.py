"""What the home screen shows, read from the playbook files, the journal and the config.

Everything here blocks (files, SQLite, the sandbox's status): the home screen calls it from a
worker thread, except the first read, which is local and cheaper than painting an empty screen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HomeData:
    """What the home screen shows (read in a worker thread)."""

    playbooks: list[Any] = field(default_factory=list)  # catalog.Summary
    drills: dict[str, str] = field(default_factory=dict)  # playbook id -> ts of the last drill
    overdue: set[str] = field(default_factory=set)  # drillable playbooks not drilled recently (or failing)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    env: str = ""
    env_description: str = ""
    production: bool = False
    sandbox: str = "unknown"
    error: str = ""


def sandbox_status(ctx: Any) -> str:
    """The sandbox's one-line status, or ``unknown`` when the command line registered none."""
    local = getattr(getattr(ctx, "config", None), "local", {}).get("sandbox")
    if local is None:
        return "unknown"
    try:
        return str(local.status())
    except Exception as exc:  # noqa: BLE001 - a status line must not break the home screen
        return f"unknown ({exc})"


SUMMARY_CACHE_VERSION = 1


def _cache_file(ctx: Any) -> Path | None:
    try:
        from runbook.tui.context import state_home

        return state_home(ctx) / "cache" / "playbook-summaries.json"
    except Exception:  # noqa: BLE001 - no state directory: no cache
        return None


def _cache_version() -> str:
    """The cache is void when the Summary's fields change (another runbook version)."""
    import dataclasses

    from runbook.playbook.catalog import Summary

    return f"{SUMMARY_CACHE_VERSION}:{','.join(f.name for f in dataclasses.fields(Summary))}"


def _read_cache(cache: Path | None, version: str) -> dict[str, Any]:
    """The cached summaries by path (empty when missing, unreadable or of another version)."""
    import json

    if cache is None:
        return {}
    try:
        doc = json.loads(cache.read_text())
        if doc.get("version") == version:
            files = doc.get("files", {})
            return files if isinstance(files, dict) else {}
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _write_cache(cache: Path, version: str, files: dict[str, Any]) -> None:
    """Replace the cache atomically (owner-only); a failure only costs the next start-up."""
    import json

    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = cache.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": version, "files": files}, f)
        os.replace(tmp, cache)
    except OSError:
        pass


def _cached_summary(hit: Any, stamp: list[int], path: Path) -> Any:
    """The cached summary of ``path`` when its stamp still matches, else None."""
    from runbook.playbook.catalog import Summary

    if not isinstance(hit, dict) or hit.get("stamp") != stamp:
        return None
    try:
        return Summary(**{**hit["summary"], "path": path})
    except TypeError:
        return None


def cached_summaries(paths: list[Path], cache: Path | None) -> list[Any]:
    """The playbooks' summaries, re-read only for files whose size or mtime changed.

    ``runbook`` opens on the home screen at 3 a.m.: parsing every playbook's YAML each time (and
    importing the YAML parser) is most of the home screen's data cost, so the summaries are kept
    in the state directory, keyed by path, mtime and size.
    """
    version = _cache_version()
    old = _read_cache(cache, version)
    out: list[Any] = []
    new: dict[str, Any] = {}
    changed = False
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        key, stamp = str(path), [st.st_mtime_ns, st.st_size]
        summary = _cached_summary(old.get(key), stamp, path)
        if summary is not None:
            out.append(summary)
            new[key] = old[key]
            continue
        from runbook.playbook.catalog import summarize

        summary = summarize(path)
        out.append(summary)
        new[key] = {"stamp": stamp, "summary": {k: v for k, v in vars(summary).items() if k != "path"}}
        changed = True
    if cache is not None and (changed or set(new) != set(old)):
        _write_cache(cache, version, new)
    return out


def open_incidents(journal: Any, home: Path | None = None) -> list[dict[str, Any]]:
    """The incidents an operator may resume, attach to or follow: not closed, not drills (one row each).

    An incident running detached says so: whether someone drives it, and what it waits for.
    """
    incidents = list(journal.incidents())
    if not incidents:
        return []  # the home screen paints without the incident fold
    from runbook.core.incident import CLOSED, StepStatus, fold
    from runbook.supervisor.client import supervisor_state

    rows: list[dict[str, Any]] = []
    for inc in incidents:
        st = fold(inc, journal.events(inc))
        if st.status in CLOSED or st.mode == "" or st.drill:
            continue
        detached = supervisor_state(home, inc) if home is not None else None
        lock = journal.lock_info(inc)
        alive = detached is not None or (lock is not None and lock.alive() and not journal.holds(inc))
        # Nobody alive drives it and a step never finished: say so (the run screen asks what to do).
        shown = StepStatus.INTERRUPTED.value if not alive and st.interrupted() else st.status.value
        held = f"{lock.holder} (pid {lock.pid})" if alive and lock is not None and detached is None else None
        rows.append(
            {
                "id": inc,
                "playbook": st.playbook_id,
                "title": st.title,
                "status": "running" if detached is not None else shown,
                "env": st.env,
                "mode": st.mode,
                "operator": st.operator,
                "opened": st.opened,
                "held_by": held if detached is None else detached.get("driver"),
                "detached": _detached_words(detached) if detached is not None else None,
            }
        )
    return rows


def _detached_words(state: dict[str, Any]) -> str:
    """``driven by …`` / ``waits: confirm restore`` / ``step restore running, nobody attached``."""
    if state.get("driver"):
        return f"driven by {state['driver']}"
    waiting = state.get("waiting")
    if waiting:
        return f"waits for you: {waiting.get('ask', '').replace('_', ' ')} {waiting.get('step') or ''}".rstrip()
    running = state.get("running")
    return f"step {running} running, nobody attached" if running else "running, nobody attached"


def _drill_status(ctx: Any, data: HomeData) -> None:
    """The last drill of each playbook, and which are overdue."""
    from runbook.drills.history import interval_days, last_drills, status

    last = last_drills(ctx.journal)
    data.drills = {pid: d["ts"] for pid, d in last.items()}
    config_days = getattr(getattr(ctx, "config", None), "drill_days", None)
    for s in data.playbooks:
        days = interval_days(s.level, getattr(s, "drill_every", None), config_days)
        if status(s.drillable, last.get(s.id), days)[1]:
            data.overdue.add(s.id)


def load_home_data(ctx: Any, *, with_sandbox: bool = True) -> HomeData:
    """Read playbooks, drills, incidents and locks (blocking: call from a worker).

    The environment is named from the config without building it (building the sandbox
    environment imports the sandbox manager); :func:`load_home_status` fills in the rest.
    """
    from runbook.playbook.catalog import playbook_files

    data = HomeData()
    try:
        data.playbooks = cached_summaries(playbook_files(ctx.playbook_dirs()), _cache_file(ctx))
    except Exception as exc:  # noqa: BLE001
        data.error = f"Playbooks could not be read: {exc}"
    _drill_status(ctx, data)
    from runbook.tui.context import state_home

    data.incidents = open_incidents(ctx.journal, state_home(ctx))
    config = ctx.config
    data.env = str(getattr(config, "default_env", "") or "sandbox")
    declared = getattr(config, "environments", {}).get(data.env)
    if isinstance(declared, dict):
        data.env_description = str(declared.get("description", ""))
        data.production = bool(declared.get("production", data.env in ("prod", "production")))
    else:
        data.production = data.env in ("prod", "production")
    if with_sandbox:
        load_home_status(ctx, data)
    return data


def read_lists(ctx: Any) -> HomeData:
    """The playbooks and incidents without the slower status line; never raises."""
    try:
        return load_home_data(ctx, with_sandbox=False)
    except Exception as exc:  # noqa: BLE001 - one sentence on the screen, never a traceback
        return HomeData(error=f"The journal could not be read: {exc}")


def load_home_status(ctx: Any, data: HomeData) -> HomeData:
    """The environment's description and the sandbox status (blocking; after the lists show)."""
    try:
        env = ctx.config.environment(data.env or None)
        data.env, data.env_description, data.production = env.name, env.description, env.production
    except Exception as exc:  # noqa: BLE001
        data.env_description = str(exc)
    data.sandbox = sandbox_status(ctx)
    return data
