"""Journal first: every event is appended durably, folded into the incident's state, and only then
shown to the front end.

One lock serialises appends: notes arrive from the front end's thread while the engine's thread
runs steps. Payloads are redacted on the way in (secrets never reach the journal).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from runbook.core import incident as S
from runbook.core.events import STEP_EVENTS, Event, EventType
from runbook.core.redact import Redactor
from runbook.engine.frontend import Frontend, Journaled, StepChanged
from runbook.journal.store import Journal

Item = tuple[EventType, Mapping[str, Any], str | None]  # (type, payload, step)


class Recorder:
    """Appends an incident's events and keeps its folded state current."""

    def __init__(self, journal: Journal, frontend: Frontend, redactor: Redactor, state: S.IncidentState) -> None:
        self.journal = journal
        self.frontend = frontend
        self.redactor = redactor
        self.state = state
        self._lock = threading.RLock()

    def append(
        self, kind: EventType, payload: Mapping[str, Any], *, step: str | None = None, durable: bool = True
    ) -> Event:
        return self.append_all([(kind, payload, step)], durable=durable)[0]

    def append_all(self, items: Sequence[Item], *, durable: bool = True) -> list[Event]:
        """Journal events in one transaction (all or none survive a crash), then apply and emit them.

        ``durable=False``: see :meth:`Journal.append_many` (survives a process death, not a power loss).
        """
        with self._lock:
            events = self.journal.append_many(
                self.state.id,
                [(kind.value, self.redactor.value(dict(payload)), step) for kind, payload, step in items],
                durable=durable,
            )
            for ev in events:
                S.apply(self.state, ev)
            # Still under the lock: events from two threads (the engine's, a note, a take-over)
            # reach the front end in journal order. A front end's emit never appends (it queues,
            # prints or relays), so this cannot deadlock.
            for ev in events:
                self.frontend.emit(Journaled(self.state.id, ev))
                if ev.step is not None and ev.kind in STEP_EVENTS:
                    self.frontend.emit(StepChanged(self.state.id, ev.step, self.state.step(ev.step).status))
        return events
