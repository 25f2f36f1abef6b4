"""What the channel hears about an incident: the parent message's facts and the thread replies an
event calls for.

The facts come from the one fold (:mod:`runbook.core.incident`), so "done", "failed" and
"skipped" mean in Slack exactly what they mean in the engine and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.core import incident as S
from runbook.core.durations import describe_seconds
from runbook.core.events import STEP_OUTCOMES, Event, EventType
from runbook.notify.messages import IncidentInfo
from runbook.playbook.catalog import step_headings

Reply = tuple[str, str, str]  # (emoji, headline, detail)

# Events after which the parent message's status line is rewritten.
UPDATES_PARENT = STEP_OUTCOMES | {
    EventType.PAUSED,
    EventType.RESUMED,
    EventType.TAKE_OVER,
    EventType.REOPENED,
    EventType.INCIDENT_CLOSED,
}
_STATUS_WORDS = {S.IncidentStatus.OPEN: "running", S.IncidentStatus.PAUSED: "paused"}


@dataclass
class IncidentContext:
    """One incident as the outbox knows it: its folded state, its steps' titles, its parent message."""

    state: S.IncidentState
    steps: dict[str, tuple[str, bool | str]] = field(default_factory=dict)  # id -> (title, notify)
    parent_id: str | None = None
    last_n: int = -1  # the last event folded in (an event is never folded twice)

    def apply(self, ev: Event) -> None:
        if ev.n <= self.last_n:
            return
        self.last_n = ev.n
        S.apply(self.state, ev)
        if ev.kind == EventType.INCIDENT_OPENED:
            self.steps = {
                sid: (title or sid, notify) for sid, (title, notify) in step_headings(self.state.playbook_text).items()
            }
        elif ev.kind == EventType.NOTIFICATION_QUEUED and ev.payload.get("kind") == "parent":
            self.parent_id = ev.payload.get("id")

    def info(self) -> IncidentInfo:
        """What the parent message shows now."""
        st = self.state
        closing = st.closing or {}
        return IncidentInfo(
            incident=st.id,
            title=st.title,
            playbook=st.playbook_id,
            tier=st.tier,
            level=st.level,
            env=st.env,
            mode=st.mode,
            operator=st.driver,
            rto=st.rto,
            rpo=st.rpo,
            opened=st.opened,
            status=_STATUS_WORDS.get(st.status, st.status.value),
            done=st.count(S.StepStatus.DONE),
            failed=st.count(S.StepStatus.FAILED),
            skipped=st.count(S.StepStatus.SKIPPED),
            total=len(self.steps),
            elapsed=closing.get("elapsed"),
            rto_met=closing.get("rto_met"),
        )


def replies_for(ctx: IncidentContext, ev: Event) -> list[Reply]:
    """The thread replies an engine event calls for (none for most)."""
    kind = ev.kind
    build = _REPLIES.get(kind) if kind is not None else None
    return build(ctx, ev) if build is not None else []


def _step_title(ctx: IncidentContext, ev: Event) -> tuple[str, bool | str]:
    title, notify = ctx.steps.get(ev.step or "", (ev.step or "", False))
    return (f"{title} (`{ev.step}`)" if title != ev.step else f"`{ev.step}`"), notify


def _done(ctx: IncidentContext, ev: Event) -> list[Reply]:
    title, notify = _step_title(ctx, ev)
    if not notify:
        return []
    p = ev.payload
    dur = _dur(p.get("duration"))
    headline = notify if isinstance(notify, str) else f"Step {title} done"
    detail = (
        f"Step {title} done" + (f" in {dur}" if dur else "")
        if isinstance(notify, str)
        else (f"Took {dur}." if dur else "")
    )
    if ev.kind == EventType.STEP_MARKED_DONE:
        detail = f"Marked done by {ev.actor}: {p.get('reason')}"
    last = _last_line(p.get("outputs"))
    if last:
        detail += f"\nLast output line: {last}"
    return [("✅", headline, detail.strip())]


def _failed(ctx: IncidentContext, ev: Event) -> list[Reply]:
    p = ev.payload
    if p.get("will_retry"):
        return []
    detail = str(p.get("error") or "") + (f" (attempt {p.get('attempt')})" if p.get("attempt") else "")
    return [("❌", f"Step {_step_title(ctx, ev)[0]} failed", detail)]


def _skipped(ctx: IncidentContext, ev: Event) -> list[Reply]:
    who = "the engine" if ev.payload.get("by") == "engine" else ev.actor
    return [("⏭️", f"Step {_step_title(ctx, ev)[0]} skipped by {who}", f"Reason: {ev.payload.get('reason')}")]


def _confirmed(ctx: IncidentContext, ev: Event) -> list[Reply]:
    p = ev.payload
    if not (p.get("effect") == "destructive" or p.get("level") == "typed"):
        return []
    typed = f", typed “{p.get('typed')}”" if "typed" in p else ""
    how = f" ({p.get('how')})" if p.get("how") and p.get("how") != "operator" else ""
    headline = f"{p.get('effect', 'destructive')} step {_step_title(ctx, ev)[0]} confirmed by {ev.actor}{typed}{how}"
    return [("⚠️", headline, f"Runs: {p.get('action')}\nTarget: {p.get('target')}")]


def _closed(ctx: IncidentContext, ev: Event) -> list[Reply]:
    p = ev.payload
    return [
        ("🏁" if p.get("status") == "completed" else "🛑", f"Incident {p.get('status')}", _close_detail(ctx.info(), p))
    ]


_REPLIES: dict[EventType, Callable[[IncidentContext, Event], list[Reply]]] = {
    EventType.STEP_FINISHED: _done,
    EventType.STEP_MARKED_DONE: _done,
    EventType.STEP_FAILED: _failed,
    EventType.STEP_SKIPPED: _skipped,
    EventType.CONFIRMATION_GIVEN: _confirmed,
    EventType.TAKE_OVER: lambda ctx, ev: [
        (
            "🔁",
            f"Incident taken over by {ev.actor}",
            f"From {ev.payload.get('from')} (pid {ev.payload.get('from_pid')}).",
        )
    ],
    EventType.PAUSED: lambda ctx, ev: [("⏸️", "Incident paused", str(ev.payload.get("reason") or ""))],
    EventType.INCIDENT_CLOSED: _closed,
    EventType.DRILL_RESULT: lambda ctx, ev: [("🧪", "Drill result", _drill_detail(ev.payload))],
}


def _dur(value: Any) -> str:
    return describe_seconds(value, "")


def _last_line(outputs: Any) -> str:
    if not isinstance(outputs, dict):
        return ""
    line = outputs.get("last_line")
    return str(line)[:500] if isinstance(line, str) else ""


def _close_detail(info: IncidentInfo, p: dict[str, Any]) -> str:
    elapsed = p.get("elapsed")
    lines = []
    rto = p.get("rto_target")
    if rto:
        lines.append(f"RTO: achieved {_dur(elapsed)} vs target {_dur(rto)} — {'met' if p.get('rto_met') else 'MISSED'}")
    else:
        lines.append(f"Elapsed {_dur(elapsed)} (no RTO target)")
    if info.rpo is not None:
        lines.append(
            f"RPO target {_dur(info.rpo)}"
            + (
                " (achieved RPO follows in the drill result)"
                if info.drill
                else " (data loss is assessed in the review)"
            )
        )
    lines.append(f"Steps: {info.done} done, {info.failed} failed, {info.skipped} skipped of {info.total}")
    if p.get("message"):
        lines.append(str(p["message"]))
    return "\n".join(lines)


def _drill_detail(p: dict[str, Any]) -> str:
    lines = []
    for key, value in p.items():
        if isinstance(value, dict | list):
            continue
        if key in ("rto", "rpo", "rto_target", "rpo_target", "rto_achieved", "rpo_achieved", "elapsed") and isinstance(
            value, int | float
        ):
            value = _dur(value)
        lines.append(f"{key}: {value}")
    return "\n".join(lines[:30])
