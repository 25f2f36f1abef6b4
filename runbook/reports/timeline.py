"""Human descriptions of journal events, shared by the CLI timeline, the TUI and the exports."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from runbook.core.durations import format_duration
from runbook.core.events import Event, EventType


def local_time(ts: str) -> str:
    """The event time in the viewer's local zone, ``HH:MM:SS``."""
    # Local time changes only with the second: big timelines convert each second once.
    # The zone is part of the key: a process may change TZ (time.tzset) between calls.
    zone = (time.timezone, time.tzname)
    return _local_second(ts[:19], ts[19:].lstrip("0123456789."), zone)  # the offset, without the fraction


@functools.lru_cache(maxsize=4096)
def _local_second(second: str, offset: str, _zone: tuple[int, tuple[str, str]]) -> str:
    return datetime.fromisoformat(second + offset).astimezone().strftime("%H:%M:%S")


def _opened(p: dict[str, Any]) -> str:
    return f"opened {p.get('playbook')} ({p.get('title')}) in {p.get('env')}, mode {p.get('mode')}"


def _param(p: dict[str, Any]) -> str:
    if p.get("secret"):
        return f"param {p.get('name')} = (secret)"
    return f"param {p.get('name')} = {p.get('value')!r}"


def _finished(p: dict[str, Any]) -> str:
    dur = p.get("duration")
    return (
        "done" + (f" in {format_duration(dur)}" if dur is not None else "") + (" (manual)" if p.get("manual") else "")
    )


def _confirmed(p: dict[str, Any]) -> str:
    typed = f", typed {p.get('typed')!r}" if "typed" in p else ""
    return f"confirmation ({p.get('level')}) given{typed} for {p.get('target')}"


def _closed(p: dict[str, Any]) -> str:
    rto = p.get("rto_target")
    extra = f", RTO {format_duration(rto)} {'met' if p.get('rto_met') else 'missed'}" if rto else ""
    return f"closed: {p.get('status')} after {format_duration(p.get('elapsed', 0))}{extra}"


_DESCRIBE: dict[EventType, Callable[[dict[str, Any]], str]] = {
    EventType.INCIDENT_OPENED: _opened,
    EventType.PARAM_BOUND: _param,
    EventType.STEP_STARTED: lambda p: f"started (attempt {p.get('attempt')}): {p.get('action')}",
    EventType.STEP_FINISHED: _finished,
    EventType.STEP_FAILED: lambda p: f"failed: {p.get('error')}" + (" (will retry)" if p.get("will_retry") else ""),
    EventType.STEP_SKIPPED: lambda p: f"skipped: {p.get('reason')}",
    EventType.STEP_PLANNED: lambda p: f"dry-run, not run: {p.get('action') or p.get('reason')}",
    EventType.STEP_MARKED_DONE: lambda p: f"marked done: {p.get('reason')}",
    EventType.STEP_RETRY_REQUESTED: lambda p: f"retry requested: {p.get('reason')}",
    EventType.STEP_FAILURE_ACCEPTED: lambda p: "failure accepted (on_failure: continue)",
    EventType.PROCESS_STARTED: lambda p: f"started {p.get('program')} (pid {p.get('pid')})",
    EventType.CONFIRMATION_GIVEN: _confirmed,
    EventType.CONFIRMATION_REFUSED: lambda p: f"confirmation refused: {p.get('reason', 'operator said no')}",
    EventType.INTERRUPTED_RESOLVED: lambda p: (
        f"interrupted step resolved: {p.get('choice')}" + (f" ({p.get('reason')})" if p.get("reason") else "")
    ),
    EventType.NOTE: lambda p: f"note: {p.get('text')}",
    EventType.PAUSED: lambda p: f"paused: {p.get('reason')}",
    EventType.RESUMED: lambda p: "resumed" + (f" (stale lock of {p.get('stale_lock')})" if p.get("stale_lock") else ""),
    EventType.TAKE_OVER: lambda p: f"taken over from {p.get('from')} (pid {p.get('from_pid')})"
    + (f" by {p.get('to')}" if p.get("to") else ""),
    EventType.WAITING: lambda p: f"waiting for a person ({p.get('ask')}): nobody attached; last driven by "
    f"{p.get('last_driver')}",
    EventType.REOPENED: lambda p: f"reopened (was {p.get('was')})",
    EventType.INCIDENT_CLOSED: _closed,
}


def describe_event(ev: Event) -> str:
    """One line saying what happened (no secrets: payloads are redacted when journaled)."""
    kind = ev.kind
    describe = _DESCRIBE.get(kind) if kind is not None else None
    return describe(ev.payload) if describe is not None else ev.type.replace("_", " ")
