"""Every kind of journal event, and the shape of its payload.

The journal stores a payload as canonical JSON, so payloads are plain dicts; the ``TypedDict``
per type documents and type-checks what each writer puts in and each reader may expect. Every
module names an event by :class:`EventType`, never by a string literal
(``tests/unit/test_events.py`` enforces it), so a reader and a writer cannot drift apart.

Old journals stay readable: a key added later is ``NotRequired``, and an unknown type is kept as
its string (``Event.kind`` is then ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict


class EventType(StrEnum):
    """What happened. The values are what the journal stores."""

    INCIDENT_OPENED = "incident_opened"
    PARAM_BOUND = "param_bound"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_PLANNED = "step_planned"
    STEP_MARKED_DONE = "step_marked_done"
    STEP_RETRY_REQUESTED = "step_retry_requested"
    STEP_FAILURE_ACCEPTED = "step_failure_accepted"
    PROCESS_STARTED = "process_started"
    CONFIRMATION_GIVEN = "confirmation_given"
    CONFIRMATION_REFUSED = "confirmation_refused"
    INTERRUPTED_RESOLVED = "interrupted_resolved"
    NOTE = "note"
    PAUSED = "paused"
    RESUMED = "resumed"
    TAKE_OVER = "take_over"
    WAITING = "waiting"  # a question came up while nobody was attached to the incident's supervisor
    REOPENED = "reopened"
    INCIDENT_CLOSED = "incident_closed"
    DRILL_RESULT = "drill_result"
    NOTIFICATION_QUEUED = "notification_queued"
    NOTIFICATION_SENT = "notification_sent"
    NOTIFICATION_FAILED = "notification_failed"


STEP_EVENTS = frozenset(t for t in EventType if t.value.startswith("step_"))
NOTIFICATION_EVENTS = frozenset(
    {EventType.NOTIFICATION_QUEUED, EventType.NOTIFICATION_SENT, EventType.NOTIFICATION_FAILED}
)
# A step reached an outcome (or was sent back to pending): what a status message is about.
STEP_OUTCOMES = frozenset(
    {
        EventType.STEP_FINISHED,
        EventType.STEP_FAILED,
        EventType.STEP_SKIPPED,
        EventType.STEP_MARKED_DONE,
        EventType.STEP_PLANNED,
        EventType.STEP_RETRY_REQUESTED,
    }
)
# Who drives the incident, or whether it runs, changed.
HANDOVERS = frozenset(
    {EventType.TAKE_OVER, EventType.PAUSED, EventType.RESUMED, EventType.REOPENED, EventType.INTERRUPTED_RESOLVED}
)


# -- payloads -----------------------------------------------------------------------------------


class IncidentOpened(TypedDict):
    playbook: str
    playbook_path: str
    playbook_text: str
    title: str
    tier: str
    level: int | None
    env: str
    env_location: str | None
    mode: str
    rto: float | None
    rpo: float | None
    started: str  # YYYYmmdd_HHMMSS, UTC: names files the incident writes
    pid: int


class ParamBound(TypedDict):
    name: str
    value: NotRequired[Any]  # absent for a secret
    secret: NotRequired[bool]
    provided: NotRequired[bool]  # a secret: whether a value was given


class StepStarted(TypedDict):
    attempt: int
    action: str
    effect: str
    target: NotRequired[str]
    log: NotRequired[str]


class ProcessStarted(TypedDict):
    """A command a step started (journaled before the engine waits for it; see core.procs)."""

    pid: int
    pgid: int
    started: float | None  # the process's start time (epoch seconds): tells a reused pid apart
    program: str  # argv[0]'s base name only: arguments may carry secrets


class StepFinished(TypedDict):
    outputs: dict[str, Any]
    duration: float | None
    log: NotRequired[str]
    log_sha256: NotRequired[str]
    lines: NotRequired[int]
    manual: NotRequired[bool]
    note: NotRequired[str | None]


class StepFailed(TypedDict):
    attempt: int
    error: str
    duration: float
    will_retry: bool
    timed_out: NotRequired[bool]
    log: NotRequired[str]
    log_sha256: NotRequired[str]
    lines: NotRequired[int]


class StepSkipped(TypedDict):
    reason: str
    by: str  # engine | operator


class StepPlanned(TypedDict, total=False):
    action: str
    run: str
    effect: str
    target: str
    confirm: str
    reason: str
    when: str


class StepMarkedDone(TypedDict):
    reason: str


class StepRetryRequested(TypedDict):
    reason: str


class StepFailureAccepted(TypedDict):
    policy: str
    error: str


class ConfirmationGiven(TypedDict):
    level: str
    action: str
    target: str
    effect: str
    how: str
    typed: NotRequired[str]


class ConfirmationRefused(TypedDict):
    level: str
    action: NotRequired[str]
    target: NotRequired[str]
    typed: NotRequired[str]
    expected: NotRequired[str | None]
    reason: NotRequired[str]


class InterruptedResolved(TypedDict):
    choice: str
    reason: str | None
    started_at: str | None


class Note(TypedDict):
    text: str


class Paused(TypedDict):
    reason: str


class Resumed(TypedDict):
    stale_lock: str | None


TakeOver = TypedDict("TakeOver", {"from": str, "from_pid": int, "since": str, "to": NotRequired[str]})


class Waiting(TypedDict):
    ask: str  # what the engine waits for: before_step, confirm, manual, failure, interrupted
    last_driver: str  # who drove the incident last


class Reopened(TypedDict):
    was: str


class IncidentClosed(TypedDict):
    status: str
    elapsed: float
    rto_target: float | None
    rto_met: NotRequired[bool]
    message: NotRequired[str]
    failed_steps: NotRequired[list[str]]
    failures_accepted: NotRequired[list[str]]


class DrillStep(TypedDict):
    id: str
    status: str
    duration: float | None


class DrillResult(TypedDict):
    playbook: str
    passed: bool
    rto_achieved: float
    rto_target: float | None
    rto_allowed: float | None
    rto_met: bool
    rpo_achieved: float | None
    rpo_target: float | None
    rpo_met: bool | None
    steps: list[DrillStep]
    problems: list[str]
    scenario_incident: str | None
    verify_incident: str | None


class NotificationQueued(TypedDict):
    id: str
    channel: str
    kind: str  # parent | reply | update | message
    via: str  # api | webhook
    text: str
    blocks: list[dict[str, Any]] | None
    thread: str | None
    update_of: str | None
    role: str


class NotificationSent(TypedDict):
    id: str
    channel: NotRequired[str | None]
    ts: NotRequired[str | None]
    attempts: NotRequired[int]
    updated: NotRequired[str | None]
    degraded: NotRequired[str]
    thread_ts: NotRequired[str]
    superseded_by: NotRequired[str]
    skipped: NotRequired[str]


class NotificationFailed(TypedDict):
    id: str
    error: str
    kind: str
    attempt: int
    retry_after: NotRequired[float]
    final: NotRequired[bool]


PAYLOADS: dict[EventType, type] = {
    EventType.INCIDENT_OPENED: IncidentOpened,
    EventType.PARAM_BOUND: ParamBound,
    EventType.STEP_STARTED: StepStarted,
    EventType.STEP_FINISHED: StepFinished,
    EventType.STEP_FAILED: StepFailed,
    EventType.STEP_SKIPPED: StepSkipped,
    EventType.STEP_PLANNED: StepPlanned,
    EventType.STEP_MARKED_DONE: StepMarkedDone,
    EventType.STEP_RETRY_REQUESTED: StepRetryRequested,
    EventType.STEP_FAILURE_ACCEPTED: StepFailureAccepted,
    EventType.PROCESS_STARTED: ProcessStarted,
    EventType.CONFIRMATION_GIVEN: ConfirmationGiven,
    EventType.CONFIRMATION_REFUSED: ConfirmationRefused,
    EventType.INTERRUPTED_RESOLVED: InterruptedResolved,
    EventType.NOTE: Note,
    EventType.PAUSED: Paused,
    EventType.RESUMED: Resumed,
    EventType.TAKE_OVER: TakeOver,
    EventType.REOPENED: Reopened,
    EventType.INCIDENT_CLOSED: IncidentClosed,
    EventType.DRILL_RESULT: DrillResult,
    EventType.NOTIFICATION_QUEUED: NotificationQueued,
    EventType.NOTIFICATION_SENT: NotificationSent,
    EventType.NOTIFICATION_FAILED: NotificationFailed,
}


_KINDS = {t.value: t for t in EventType}


@dataclass(frozen=True)
class Event:
    """One journaled event: its place in the incident's chain, who, when, what."""

    seq: int
    incident: str
    n: int
    ts: str
    actor: str
    step: str | None
    type: str
    payload: dict[str, Any]
    prev: str
    hash: str

    @property
    def kind(self) -> EventType | None:
        """The event's type, or None for a type this version does not know."""
        return _KINDS.get(self.type)

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.ts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "incident": self.incident,
            "n": self.n,
            "ts": self.ts,
            "actor": self.actor,
            "step": self.step,
            "type": self.type,
            "payload": self.payload,
            "prev": self.prev,
            "hash": self.hash,
        }
