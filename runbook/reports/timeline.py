"""Human descriptions of journal events, shared by the CLI timeline, the TUI and the exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runbook.core.durations import format_duration
from runbook.journal.store import Event


def local_time(ts: str) -> str:
    """The event time in the viewer's local zone, ``HH:MM:SS``."""
    return datetime.fromisoformat(ts).astimezone().strftime("%H:%M:%S")


def describe_event(ev: Event) -> str:
    """One line saying what happened (no secrets: payloads are redacted when journaled)."""
    p: dict[str, Any] = ev.payload
    t = ev.type
    if t == "incident_opened":
        return f"opened {p.get('playbook')} ({p.get('title')}) in {p.get('env')}, mode {p.get('mode')}"
    if t == "param_bound":
        if p.get("secret"):
            return f"param {p.get('name')} = (secret)"
        return f"param {p.get('name')} = {p.get('value')!r}"
    if t == "step_started":
        return f"started (attempt {p.get('attempt')}): {p.get('action')}"
    if t == "step_finished":
        dur = p.get("duration")
        return "done" + (f" in {format_duration(dur)}" if dur is not None else "") + (" (manual)" if p.get("manual") else "")
    if t == "step_failed":
        return f"failed: {p.get('error')}" + (" (will retry)" if p.get("will_retry") else "")
    if t == "step_skipped":
        return f"skipped: {p.get('reason')}"
    if t == "step_planned":
        return f"dry-run, not run: {p.get('action') or p.get('reason')}"
    if t == "step_marked_done":
        return f"marked done: {p.get('reason')}"
    if t == "step_retry_requested":
        return f"retry requested: {p.get('reason')}"
    if t == "step_failure_accepted":
        return "failure accepted (on_failure: continue)"
    if t == "confirmation_given":
        typed = f", typed {p.get('typed')!r}" if "typed" in p else ""
        return f"confirmation ({p.get('level')}) given{typed} for {p.get('target')}"
    if t == "confirmation_refused":
        return f"confirmation refused: {p.get('reason', 'operator said no')}"
    if t == "interrupted_resolved":
        return f"interrupted step resolved: {p.get('choice')}" + (f" ({p.get('reason')})" if p.get("reason") else "")
    if t == "note":
        return f"note: {p.get('text')}"
    if t == "paused":
        return f"paused: {p.get('reason')}"
    if t == "resumed":
        return "resumed" + (f" (stale lock of {p.get('stale_lock')})" if p.get("stale_lock") else "")
    if t == "take_over":
        return f"taken over from {p.get('from')} (pid {p.get('from_pid')})"
    if t == "reopened":
        return f"reopened (was {p.get('was')})"
    if t == "incident_closed":
        rto = p.get("rto_target")
        extra = f", RTO {format_duration(rto)} {'met' if p.get('rto_met') else 'missed'}" if rto else ""
        return f"closed: {p.get('status')} after {format_duration(p.get('elapsed', 0))}{extra}"
    return t.replace("_", " ")
