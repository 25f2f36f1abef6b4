"""When each playbook was last drilled, and which are overdue.

Defaults follow the seeds' schedule: Level 1 monthly (30 days), Level 2 quarterly (90), Level 3
annually (365); other playbooks monthly. ``[drill_days]`` in runbook.toml (``level1``, ``level2``,
``level3``, ``default``) or a playbook's own ``drill_every`` override them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runbook.core.events import EventType

DEFAULT_DAYS = {"level1": 30, "level2": 90, "level3": 365, "default": 30}


def last_drills(journal: Any) -> dict[str, dict[str, Any]]:
    """playbook id → the newest drill_result payload (with its ``ts``)."""
    out: dict[str, dict[str, Any]] = {}
    for ev in journal.events_of_type(EventType.DRILL_RESULT):
        pid = ev.payload.get("playbook", "")
        if pid:
            out[pid] = {"ts": ev.ts, "incident": ev.incident, **ev.payload}
    return out


def interval_days(level: int | None, drill_every: Any, config_days: dict[str, Any] | None = None) -> float:
    if drill_every is not None:
        from runbook.core.durations import parse_duration

        try:
            return parse_duration(drill_every) / 86400
        except ValueError:
            pass
    days = {**DEFAULT_DAYS, **{k: v for k, v in (config_days or {}).items() if isinstance(v, int | float)}}
    return float(days.get(f"level{level}", days["default"]) if level else days["default"])


def status(drillable: bool, last: dict[str, Any] | None, days: float, now: datetime | None = None) -> tuple[str, bool]:
    """(short text, overdue) for a playbook's drill column."""
    if not drillable:
        return "—", False
    if not last:
        return "never", True
    when = datetime.fromisoformat(last["ts"])
    age = ((now or datetime.now(UTC)) - when).total_seconds() / 86400
    verdict = "" if last.get("passed", True) else " FAILED"
    text = f"{when:%Y-%m-%d}{verdict}"
    return text, age > days or not last.get("passed", True)
