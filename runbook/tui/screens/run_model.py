"""What the run screen knows of its incident: the journal events it has seen, folded.

No widget here: the screen feeds every journaled event to :meth:`RunModel.apply` (in order, each
once) and paints what the model says. The same fold as everywhere else
(:func:`runbook.core.incident.apply`), plus what only a screen knows: which step runs *now* in
this process, which steps wait for a confirmation, the playbook's steps, and a tail of the
timeline in words.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from runbook.core.events import STEP_EVENTS, Event, EventType
from runbook.core.incident import IncidentState, StepStatus
from runbook.core.incident import apply as apply_event
from runbook.tui.widgets.step_list import NEEDS_CONFIRMATION

TIMELINE_TAIL = 50


@dataclass
class StepOutline:
    """What the run screen shows of a step it does not run itself."""

    id: str
    title: str | None
    phase: str | None
    description: str | None
    kind: str  # action | shell | manual

    @property
    def label(self) -> str:
        return self.title or self.id

    @classmethod
    def of(cls, raw: dict[str, Any]) -> StepOutline:
        kind = "action" if raw.get("run") else "shell" if raw.get("shell") is not None else "manual"
        text = {k: str(raw[k]) if raw.get(k) is not None else None for k in ("title", "phase", "description")}
        return cls(str(raw["id"]), kind=kind, **text)


@dataclass
class Outline:
    steps: list[StepOutline]


@dataclass
class Applied:
    """What one event changed that the screen must show.

    Attributes:
        opened: The incident was opened: its id, mode, env and playbook are known now.
        started: A step started live (not replayed history): show it, mark the output.
        attempt: That step's attempt number.
    """

    opened: bool = False
    started: str | None = None
    attempt: Any = None


class RunModel:
    """The incident as the run screen has seen it so far.

    Args:
        incident: The incident id (empty for a new incident until it is opened).
    """

    def __init__(self, incident: str) -> None:
        self.state = IncidentState(incident)
        self.last_n = -1  # the last event applied
        self.history_n = -1  # events up to here were history when this screen resumed
        self.steps_meta: dict[str, Any] = {}  # step id -> the playbook's step
        self.step_info: dict[str, dict[str, Any]] = {}  # step id -> action, effect, target, confirm
        self.needs_confirm: set[str] = set()
        self.running_step: str | None = None  # the step running now, in this process
        self.timeline: deque[str] = deque(maxlen=TIMELINE_TAIL)

    def apply(self, ev: Event, *, read_only: bool) -> Applied | None:
        """Fold ``ev`` in; None when it was seen already.

        A step started while following read-only, or after the history replayed on resume, is
        live: it runs now. A step started in the history and never finished is interrupted.
        """
        if ev.n <= self.last_n:
            return None
        self.last_n = ev.n
        apply_event(self.state, ev)
        applied = Applied()
        kind = ev.kind
        if kind == EventType.INCIDENT_OPENED:
            self.state.id = ev.incident
            applied.opened = True
        live = read_only or ev.n > self.history_n
        if ev.step is not None:
            self.needs_confirm.discard(ev.step)
            if kind == EventType.STEP_STARTED:
                self.step_info.setdefault(ev.step, {}).update(
                    {k: ev.payload[k] for k in ("action", "effect", "target") if k in ev.payload}
                )
                if live:
                    self.running_step = ev.step
                    applied.started, applied.attempt = ev.step, ev.payload.get("attempt")
            elif kind in STEP_EVENTS and self.running_step == ev.step:
                self.running_step = None
        if kind == EventType.PROCESS_STARTED:
            return applied  # forensics (which pid ran): the timeline screen and exports show it
        from runbook.reports.timeline import describe_event, local_time

        who = f" {ev.step}" if ev.step else ""
        self.timeline.append(f"{local_time(ev.ts)}{who}: {describe_event(ev)}")
        return applied

    def set_steps(self, playbook: Any) -> list[tuple[str, str, str | None]]:
        """Remember the playbook's steps; returns (id, title, phase) for the step list."""
        self.steps_meta = {s.id: s for s in playbook.steps}
        return [(s.id, s.label, s.phase) for s in playbook.steps]

    def playbook_from_journal(self) -> Any:
        """The playbook's steps as journaled when the incident opened (None if unknown or already set).

        A resumed or followed incident runs the playbook it was opened with, whatever the file
        says now: the step list comes from the journal's copy. Only its outline is read (ids,
        titles, phases, descriptions): validating it again would import every action's spec, and
        the engine, which runs it, validated it when the incident opened.
        """
        if self.steps_meta or not self.state.playbook_text:
            return None
        from runbook.playbook import yamlload

        try:
            raw = yamlload.loads(self.state.playbook_text)
        except Exception:  # noqa: BLE001 - the list stays as the journal shows it
            return None
        steps = raw.get("steps") if isinstance(raw, dict) else None
        if not isinstance(steps, list):
            return None
        return Outline([StepOutline.of(s) for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)])

    def display_status(self) -> dict[str, str]:
        """Every step's status as shown (interrupted, needs-confirmation included)."""
        out: dict[str, str] = {}
        for sid, ss in self.state.steps.items():
            status = ss.status
            if status == StepStatus.RUNNING and sid != self.running_step:
                status = StepStatus.INTERRUPTED
            out[sid] = status
        for sid in self.needs_confirm:
            out[sid] = NEEDS_CONFIRMATION
        return out

    def step_needs_confirmation(self, step: str) -> None:
        """The engine asks for ``step``'s confirmation (until the next event about it)."""
        self.needs_confirm.add(step)
