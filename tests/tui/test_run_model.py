"""What the run screen makes of journal events (no app needed): live or history, statuses as shown."""

from __future__ import annotations

from typing import Any

from runbook.core.events import Event, EventType
from runbook.core.incident import StepStatus
from runbook.tui.screens.run_model import RunModel
from runbook.tui.widgets.step_list import NEEDS_CONFIRMATION

INC = "20251123-030000-a1b2"


def event(n: int, kind: EventType, step: str | None = None, **payload: Any) -> Event:
    return Event(
        seq=n + 1,
        incident=INC,
        n=n,
        ts=f"2025-11-23T03:00:{n:02d}+00:00",
        actor="oncall@testhost",
        step=step,
        type=kind,
        payload=payload,
        prev="",
        hash="",
    )


def opened(n: int = 0) -> Event:
    return event(n, EventType.INCIDENT_OPENED, playbook="p", title="P", env="sandbox", mode="live")


def test_a_step_started_in_the_history_shows_interrupted_and_a_live_one_running() -> None:
    model = RunModel("")
    model.history_n = 1  # resumed: events 0 and 1 were history
    first = model.apply(opened(), read_only=False)
    assert first is not None and first.opened and model.state.id == INC
    history = model.apply(
        event(1, EventType.STEP_STARTED, "a", attempt=1, action="sh", effect="mutating"), read_only=False
    )
    assert history is not None and history.started is None
    assert model.running_step is None
    assert model.display_status() == {"a": StepStatus.INTERRUPTED}
    assert model.step_info["a"] == {"action": "sh", "effect": "mutating"}
    live = model.apply(event(2, EventType.STEP_STARTED, "b", attempt=2), read_only=False)
    assert live is not None and (live.started, live.attempt) == ("b", 2)
    assert model.display_status() == {"a": StepStatus.INTERRUPTED, "b": StepStatus.RUNNING}
    model.apply(event(3, EventType.STEP_FINISHED, "b", outputs={}), read_only=False)
    assert model.running_step is None and model.display_status()["b"] == StepStatus.DONE


def test_following_read_only_every_start_is_live() -> None:
    model = RunModel(INC)
    model.history_n = 5
    model.apply(opened(), read_only=True)
    applied = model.apply(event(1, EventType.STEP_STARTED, "a", attempt=1), read_only=True)
    assert applied is not None and applied.started == "a" and model.running_step == "a"


def test_events_seen_before_are_ignored_and_the_timeline_says_each_once() -> None:
    model = RunModel("")
    assert model.apply(opened(), read_only=False) is not None
    assert model.apply(event(1, EventType.NOTE, text="paged the db team"), read_only=False) is not None
    assert model.apply(event(1, EventType.NOTE, text="paged the db team"), read_only=False) is None
    assert len(model.timeline) == 2 and "paged the db team" in model.timeline[-1]


def test_a_step_waiting_for_confirmation_until_the_next_event_about_it() -> None:
    model = RunModel("")
    model.apply(opened(), read_only=False)
    model.step_needs_confirmation("drop")
    assert model.display_status() == {"drop": NEEDS_CONFIRMATION}
    model.apply(event(1, EventType.CONFIRMATION_REFUSED, "drop", level="typed"), read_only=False)
    assert model.display_status() == {}
