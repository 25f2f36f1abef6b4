"""An incident's state, folded from its journal events: the one fold every reader uses.

The journal is the only source of truth. The engine folds events as it appends them; the reports,
the Slack outbox, the timeline and the TUI fold the same events the same way with :func:`fold`
(or :func:`apply`, one event at a time), so a status word means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from runbook.core.events import HANDOVERS, NOTIFICATION_EVENTS, STEP_EVENTS, Event, EventType


class StepStatus(StrEnum):
    """Where a step stands, as the engine decides what to do next."""

    PENDING = "pending"
    RUNNING = "running"  # started and not finished; seen by a later process it is *interrupted*
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    PLANNED = "planned"  # dry-run: shown resolved, not run
    INTERRUPTED = "interrupted"  # RUNNING as shown to a person after a crash (never folded)


class IncidentStatus(StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


RESOLVED = frozenset({StepStatus.DONE, StepStatus.SKIPPED, StepStatus.PLANNED})
CLOSED = frozenset({IncidentStatus.COMPLETED, IncidentStatus.FAILED})

# The words reports, exports and Slack show for a step, by the last thing that happened to it.
_LABELS = {
    EventType.STEP_STARTED: "running",
    EventType.STEP_FINISHED: "done",
    EventType.STEP_SKIPPED: "skipped",
    EventType.STEP_MARKED_DONE: "marked done",
    EventType.STEP_PLANNED: "planned (dry-run)",
    EventType.STEP_RETRY_REQUESTED: "retry requested",
}


@dataclass(slots=True)
class StepState:
    id: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started: str | None = None  # the latest attempt's start
    first_started: str | None = None
    finished: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    log: str | None = None
    duration: float | None = None  # the latest attempt's
    total_duration: float = 0.0  # every attempt's, for reports
    timed: bool = False  # total_duration means something
    spans: list[tuple[str, str]] = field(default_factory=list)  # (start, end) per attempt
    continued: bool = False  # failed, but on_failure: continue
    last: EventType | None = None
    will_retry: bool = False
    processes: list[dict[str, Any]] = field(default_factory=list)  # the latest attempt's commands

    @property
    def label(self) -> str:
        """The word a report shows: done, marked done, failed, retrying, skipped, running…"""
        if self.last == EventType.STEP_FAILED:
            return "retrying" if self.will_retry else "failed"
        return _LABELS.get(self.last, "pending") if self.last is not None else "pending"


@dataclass(slots=True)  # an incident can hold tens of thousands: built fast, kept small
class NotificationState:
    """One Slack notification as the journal tells it (queued, then sent or failed)."""

    id: str
    queued: dict[str, Any]  # the notification_queued payload (enough to send it again)
    queued_at: str
    sent: str | None = None
    ts: str | None = None  # Slack's message ts
    channel_id: str | None = None
    attempts: int = 0
    error: str | None = None
    final: bool = False  # Slack refused it for good
    outcome: str = "waiting"

    @property
    def settled(self) -> bool:
        """Delivered, superseded or refused for good: never send it again."""
        return self.sent is not None or self.final


@dataclass
class IncidentState:
    id: str
    playbook_id: str = ""
    playbook_text: str = ""
    playbook_path: str = ""
    title: str = ""
    tier: str = ""
    level: int | None = None
    env: str = ""
    env_location: str | None = None
    mode: str = ""
    operator: str = ""  # who opened it
    driver: str = ""  # who drives it now: the opener, or who resumed or took it over last
    operators: list[str] = field(default_factory=list)
    opened: str = ""
    started_compact: str = ""
    rto: float | None = None
    rpo: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    bound: list[tuple[str, Any, bool]] = field(default_factory=list)  # (name, value, secret) in order
    secret_params: list[str] = field(default_factory=list)
    steps: dict[str, StepState] = field(default_factory=dict)
    status: IncidentStatus = IncidentStatus.OPEN
    closed: str | None = None
    closing: dict[str, Any] | None = None  # the incident_closed payload
    last_event: Event | None = None
    events: int = 0
    drill: dict[str, Any] = field(default_factory=dict)
    notes: list[Event] = field(default_factory=list)
    confirmations: list[Event] = field(default_factory=list)
    skips: list[Event] = field(default_factory=list)
    failures: list[Event] = field(default_factory=list)
    handovers: list[Event] = field(default_factory=list)
    notifications: dict[str, NotificationState] = field(default_factory=dict)

    def step(self, step_id: str) -> StepState:
        if step_id not in self.steps:
            self.steps[step_id] = StepState(step_id)
        return self.steps[step_id]

    @property
    def elapsed(self) -> float:
        if not self.opened:
            return 0.0
        start = datetime.fromisoformat(self.opened)
        end = datetime.fromisoformat(self.closed) if self.closed else datetime.now(start.tzinfo)
        return max(0.0, (end - start).total_seconds())

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {sid: s.outputs for sid, s in self.steps.items() if s.status == StepStatus.DONE}

    def interrupted(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.status == StepStatus.RUNNING]

    def count(self, status: StepStatus) -> int:
        return sum(1 for s in self.steps.values() if s.status == status)


def fold(incident: str, events: Any) -> IncidentState:
    """Replay events (any iterable) into a state. A step left RUNNING by a dead process is interrupted."""
    st = IncidentState(incident)
    for ev in events:
        apply(st, ev)
    return st


def apply(st: IncidentState, ev: Event) -> None:
    """Fold one event into ``st``."""
    st.last_event = ev
    st.events += 1
    kind = ev.kind
    if kind is None:
        return
    if kind in STEP_EVENTS and ev.step is not None:
        _apply_step(st.step(ev.step), kind, ev)
        if kind == EventType.STEP_SKIPPED:
            st.skips.append(ev)
        elif kind == EventType.STEP_FAILED:
            st.failures.append(ev)
    elif kind in NOTIFICATION_EVENTS:
        _apply_notification(st, kind, ev)
    else:
        _APPLY_INCIDENT.get(kind, _ignore)(st, ev)


def _apply_step(s: StepState, kind: EventType, ev: Event) -> None:
    p = ev.payload
    if kind != EventType.STEP_FAILURE_ACCEPTED:
        s.last = kind
    if kind == EventType.STEP_STARTED:
        s.status, s.continued, s.error = StepStatus.RUNNING, False, None
        s.attempts = p.get("attempt", s.attempts + 1)
        s.started = ev.ts
        s.first_started = s.first_started or ev.ts
        s.log = p.get("log")
        s.processes = []
    elif kind in (EventType.STEP_FINISHED, EventType.STEP_FAILED):
        _end_attempt(s, ev)
        if kind == EventType.STEP_FINISHED:
            s.status, s.outputs, s.error = StepStatus.DONE, p.get("outputs", {}), None
        else:
            s.error = p.get("error")
            s.will_retry = bool(p.get("will_retry"))
            s.status = StepStatus.RUNNING if s.will_retry else StepStatus.FAILED
    elif kind == EventType.STEP_SKIPPED:
        s.status, s.reason, s.finished = StepStatus.SKIPPED, p.get("reason"), ev.ts
    elif kind == EventType.STEP_MARKED_DONE:
        s.status, s.reason, s.finished = StepStatus.DONE, p.get("reason"), ev.ts
    elif kind == EventType.STEP_PLANNED:
        s.status = StepStatus.PLANNED
    elif kind == EventType.STEP_FAILURE_ACCEPTED:
        s.continued = True  # on_failure: continue — the failure is recorded, not fatal
    elif kind == EventType.STEP_RETRY_REQUESTED:
        s.status, s.error = StepStatus.PENDING, None


def _end_attempt(s: StepState, ev: Event) -> None:
    duration = ev.payload.get("duration")
    s.finished = ev.ts
    s.duration = duration
    if duration is not None:
        s.total_duration += float(duration)
        s.timed = True
    elif s.started and (s.spans[-1][0] if s.spans else None) != s.started:
        s.total_duration += max(
            0.0, (datetime.fromisoformat(ev.ts) - datetime.fromisoformat(s.started)).total_seconds()
        )
        s.timed = True
    if s.started and (not s.spans or s.spans[-1][0] != s.started):
        s.spans.append((s.started, ev.ts))


def _apply_notification(st: IncidentState, kind: EventType, ev: Event) -> None:
    p = ev.payload
    nid = str(p.get("id", ""))
    if kind is EventType.NOTIFICATION_QUEUED:
        st.notifications[nid] = NotificationState(nid, p, ev.ts)
        return
    n = st.notifications.get(nid)
    if n is None:
        return
    if kind is EventType.NOTIFICATION_SENT:
        n.sent, n.ts, n.channel_id = ev.ts, p.get("ts"), p.get("channel")
        n.attempts = int(p.get("attempts") or n.attempts)
        n.outcome = "superseded" if p.get("superseded_by") else ("skipped" if p.get("skipped") else "sent")
        if p.get("degraded"):
            n.outcome = "sent (plain text)"
    else:
        n.attempts = max(n.attempts, int(p.get("attempt") or 0))
        n.error = str(p.get("error", ""))
        if p.get("final"):
            n.final, n.outcome = True, "refused by Slack"


def _opened(st: IncidentState, ev: Event) -> None:
    p = ev.payload
    st.playbook_id = p.get("playbook", "")
    st.playbook_text = p.get("playbook_text", "")
    st.playbook_path = p.get("playbook_path", "")
    st.title = p.get("title", "")
    st.tier = p.get("tier", "")
    st.level = p.get("level")
    st.env = p.get("env", "")
    st.env_location = p.get("env_location")
    st.mode = p.get("mode", "")
    st.operator = st.driver = ev.actor
    st.operators.append(ev.actor)
    st.opened = ev.ts
    st.started_compact = p.get("started", "")
    st.rto = p.get("rto")
    st.rpo = p.get("rpo")


def _param(st: IncidentState, ev: Event) -> None:
    p = ev.payload
    secret = bool(p.get("secret"))
    st.bound.append((str(p.get("name")), p.get("value"), secret))
    if not secret:
        st.params[p["name"]] = p.get("value")
    elif p.get("provided", True):
        st.secret_params.append(p["name"])
    else:
        st.params[p["name"]] = None


def _handover(st: IncidentState, ev: Event) -> None:
    st.handovers.append(ev)
    kind = ev.kind
    if kind == EventType.PAUSED:
        st.status = IncidentStatus.PAUSED
    elif kind in (EventType.RESUMED, EventType.TAKE_OVER):
        st.status = IncidentStatus.OPEN
        st.driver = str(ev.payload.get("to") or ev.actor)  # an attach take-over names the new driver
        if ev.actor not in st.operators:
            st.operators.append(ev.actor)
    elif kind == EventType.REOPENED:
        st.status, st.closed, st.closing = IncidentStatus.OPEN, None, None


def _closed(st: IncidentState, ev: Event) -> None:
    try:
        st.status = IncidentStatus(ev.payload.get("status", IncidentStatus.COMPLETED))
    except ValueError:
        st.status = IncidentStatus.FAILED  # a status this version does not know: not a success
    st.closed = ev.ts
    st.closing = ev.payload


def _drill(st: IncidentState, ev: Event) -> None:
    st.drill = ev.payload


def _ignore(st: IncidentState, ev: Event) -> None:
    return None


def _process(st: IncidentState, ev: Event) -> None:
    if ev.step is not None:
        st.step(ev.step).processes.append(ev.payload)


_APPLY_INCIDENT = {
    EventType.INCIDENT_OPENED: _opened,
    EventType.PARAM_BOUND: _param,
    EventType.NOTE: lambda st, ev: st.notes.append(ev),
    EventType.CONFIRMATION_GIVEN: lambda st, ev: st.confirmations.append(ev),
    EventType.CONFIRMATION_REFUSED: lambda st, ev: st.confirmations.append(ev),
    EventType.INCIDENT_CLOSED: _closed,
    EventType.DRILL_RESULT: _drill,
    EventType.PROCESS_STARTED: _process,
    **{kind: _handover for kind in HANDOVERS},
}
