"""An incident's state, folded from its journal events (the journal is the only source of truth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.journal.store import Event

# Step statuses.
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
PLANNED = "planned"  # dry-run: shown resolved, not run
INTERRUPTED = "interrupted"  # RUNNING as seen by a later process

RESOLVED = {DONE, SKIPPED, PLANNED}


@dataclass
class StepState:
    id: str
    status: str = PENDING
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    log: str | None = None
    duration: float | None = None
    continued: bool = False  # failed, but on_failure: continue


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
    operator: str = ""
    opened: str = ""
    started_compact: str = ""
    rto: float | None = None
    rpo: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    secret_params: list[str] = field(default_factory=list)
    steps: dict[str, StepState] = field(default_factory=dict)
    status: str = "open"  # open | paused | completed | failed | aborted
    closed: str | None = None
    last_event: Event | None = None
    drill: dict[str, Any] = field(default_factory=dict)
    notes: int = 0

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
        return {sid: s.outputs for sid, s in self.steps.items() if s.status == DONE}

    def interrupted(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.status == RUNNING]


def fold(incident: str, events: list[Event]) -> IncidentState:
    """Replay events into a state. A step left RUNNING by a dead process is interrupted."""
    st = IncidentState(incident)
    for ev in events:
        apply(st, ev)
    return st


def apply(st: IncidentState, ev: Event) -> None:
    p = ev.payload
    t = ev.type
    st.last_event = ev
    if t == "incident_opened":
        st.playbook_id = p.get("playbook", "")
        st.playbook_text = p.get("playbook_text", "")
        st.playbook_path = p.get("playbook_path", "")
        st.title = p.get("title", "")
        st.tier = p.get("tier", "")
        st.level = p.get("level")
        st.env = p.get("env", "")
        st.env_location = p.get("env_location")
        st.mode = p.get("mode", "")
        st.operator = ev.actor
        st.opened = ev.ts
        st.started_compact = p.get("started", "")
        st.rto = p.get("rto")
        st.rpo = p.get("rpo")
    elif t == "param_bound":
        if p.get("secret"):
            if p.get("provided", True):
                st.secret_params.append(p["name"])
            else:
                st.params[p["name"]] = None
        else:
            st.params[p["name"]] = p.get("value")
    elif ev.step is not None and t.startswith("step_"):
        s = st.step(ev.step)
        if t == "step_started":
            s.status = RUNNING
            s.continued = False
            s.attempts = p.get("attempt", s.attempts + 1)
            s.started = ev.ts
            s.error = None
            s.log = p.get("log")
        elif t == "step_finished":
            s.status = DONE
            s.outputs = p.get("outputs", {})
            s.finished = ev.ts
            s.duration = p.get("duration")
        elif t == "step_failed":
            s.error = p.get("error")
            s.finished = ev.ts
            s.duration = p.get("duration")
            s.status = RUNNING if p.get("will_retry") else FAILED
        elif t == "step_skipped":
            s.status = SKIPPED
            s.reason = p.get("reason")
            s.finished = ev.ts
        elif t == "step_marked_done":
            s.status = DONE
            s.reason = p.get("reason")
            s.finished = ev.ts
        elif t == "step_planned":
            s.status = PLANNED
        elif t == "step_failure_accepted":
            s.continued = True  # on_failure: continue — the failure is recorded, not fatal
        elif t == "step_retry_requested":
            s.status = PENDING
            s.error = None
    elif t == "paused":
        st.status = "paused"
    elif t in ("resumed", "take_over"):
        st.status = "open"
    elif t == "reopened":
        st.status = "open"
        st.closed = None
    elif t == "note":
        st.notes += 1
    elif t == "drill_result":
        st.drill = p
    elif t == "incident_closed":
        st.status = p.get("status", "completed")
        st.closed = ev.ts
