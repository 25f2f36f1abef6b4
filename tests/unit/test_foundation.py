"""The shared vocabulary every layer relies on: action specs check what actions return, the poll
helper waits, stops and times out, retention never prunes the newest, timestamps are UTC, and the
one fold means the same thing for every reader."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from runbook.actions.params import Duration, Retention, seconds
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.poll import WaitCancelled, WaitTimeout, wait_until
from runbook.core import incident as S
from runbook.core.effect import Effect
from runbook.core.environment import Environment
from runbook.core.errors import ActionError
from runbook.core.events import Event, EventType
from runbook.core.timestamps import find_stamp, iso_z, parse_utc, stamp


def ctx(tmp_path: Path) -> StepContext:
    return StepContext("inc", "step", "live", Environment("test"), tmp_path, log=lambda _line: None)


# -- action specs ---------------------------------------------------------------------------------


class EchoParams(ActionParams):
    value: int
    wrong: bool = False


class EchoOutputs(ActionOutputs):
    doubled: int = Field(description="Twice the value.")


@action("test.echo", Effect.READ_ONLY, "Double a number.", target=lambda p: str(p.value))
def echo(c: StepContext, params: EchoParams) -> EchoOutputs:
    if params.wrong:
        out = EchoOutputs.model_construct(doubled="not a number")  # bypasses validation on purpose
        return out
    return EchoOutputs(doubled=params.value * 2)


def test_spec_is_declared_from_the_function(tmp_path: Path) -> None:
    assert echo.name == "test.echo" and echo.effect == Effect.READ_ONLY
    assert echo.Params is EchoParams and echo.Outputs is EchoOutputs
    assert echo.outputs == {"doubled": "Twice the value."}
    assert echo.target(EchoParams(value=3)) == "3"
    assert echo.describe(EchoParams(value=3)) == "test.echo(value=3, wrong=False)"
    assert echo.run(ctx(tmp_path), EchoParams(value=21)) == {"doubled": 42}


def test_outputs_that_break_the_declaration_fail_the_step(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="returned an output its spec does not allow"):
        echo.run(ctx(tmp_path), EchoParams(value=1, wrong=True))


def test_returning_something_else_than_the_outputs_model_fails(tmp_path: Path) -> None:
    @action("test.bad", Effect.READ_ONLY, "Returns a dict.")
    def bad(c: StepContext, params: EchoParams) -> EchoOutputs:
        return {"doubled": 2}  # type: ignore[return-value]

    with pytest.raises(ActionError, match="returned dict, not its declared EchoOutputs"):
        bad.run(ctx(tmp_path), EchoParams(value=1))


def test_undeclared_outputs_and_params_are_refused() -> None:
    with pytest.raises(ValidationError):
        EchoOutputs(doubled=1, extra="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EchoParams(value=1, colour="red")  # type: ignore[call-arg]


def test_a_spec_needs_typed_params_and_outputs() -> None:
    with pytest.raises(TypeError, match="ActionParams"):

        @action("test.untyped", Effect.READ_ONLY, "No annotations.")
        def untyped(c, params):  # type: ignore[no-untyped-def]
            return None


# -- waiting ----------------------------------------------------------------------------------------


def test_wait_until_returns_the_value_that_holds() -> None:
    seen: list[int] = []
    counter = iter(range(100))
    got = wait_until(
        lambda: next(counter), lambda v: v >= 3, timeout=5, every=0.01, on_poll=lambda v, _w: seen.append(v)
    )
    assert got == 3 and seen == [0, 1, 2, 3]


def test_wait_until_times_out_with_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: "RUNNING", lambda v: v == "DONE", timeout=0.3, every=0.05)
    assert info.value.last == "RUNNING" and 0.25 <= time.monotonic() - started < 3


def test_wait_until_stops_within_an_interval_when_cancelled() -> None:
    cancelled = threading.Event()
    threading.Timer(0.2, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(WaitCancelled):
        wait_until(lambda: 0, lambda v: False, timeout=30, every=0.5, cancelled=cancelled)
    assert time.monotonic() - started < 2


def test_wait_until_lets_a_probe_error_through() -> None:
    def probe() -> int:
        raise ActionError("the store is down.")

    with pytest.raises(ActionError, match="the store is down"):
        wait_until(probe, lambda v: True, timeout=5, every=0.01)


# -- retention ---------------------------------------------------------------------------------------


class PruneParams(Retention):
    older_than: Duration = Field("7d")


def test_retention_never_prunes_the_newest() -> None:
    now = datetime(2025, 1, 31, tzinfo=UTC)
    items = [now - timedelta(days=d) for d in (40, 30, 20, 10, 1)]
    delete, keep = PruneParams(keep_latest=1).split(items, taken=lambda t: t, now=now)
    assert delete == [now - timedelta(days=d) for d in (10, 20, 30, 40)]
    assert keep == [now - timedelta(days=1)]
    # Everything old: the newest still stays.
    delete, keep = PruneParams(older_than="1h").split(items[:2], taken=lambda t: t, now=now)
    assert keep == [now - timedelta(days=30)] and delete == [now - timedelta(days=40)]
    delete, keep = PruneParams(keep_latest=3).split(items, taken=lambda t: t, now=now)
    assert len(keep) == 3 and delete == [now - timedelta(days=30), now - timedelta(days=40)]


def test_retention_refuses_keeping_nothing_and_bad_durations() -> None:
    with pytest.raises(ValidationError):
        Retention(keep_latest=0)
    with pytest.raises(ValidationError, match="not a duration"):
        Retention(older_than="soon")
    assert seconds(Retention(older_than="2h").older_than) == 7200
    assert PruneParams().older_than == "7d" and Retention().older_than == "30d"


# -- timestamps ---------------------------------------------------------------------------------------


def test_stamps_are_utc_and_old_local_names_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    moment = datetime(2025, 11, 23, 10, 30, 5, tzinfo=UTC)
    assert stamp(moment) == "20251123_103005" and stamp(moment, sep="-") == "20251123-103005"
    assert find_stamp("backup_20251123_103005") == moment
    assert find_stamp("snap-20251123-103005-x") == moment
    assert find_stamp("backup_nothing") is None and find_stamp("backup_20251399_103005") is None
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        # A name an older version wrote in local time (UTC+1 in November) means 09:30:05 UTC.
        assert find_stamp("backup_20251123_103005", local=True) == moment - timedelta(hours=1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_parse_utc_reads_offsets_and_assumes_utc() -> None:
    assert iso_z(parse_utc("2025-11-23 10:30:00")) == "2025-11-23T10:30:00Z"
    assert iso_z(parse_utc("2025-11-23T12:30:00+02:00")) == "2025-11-23T10:30:00Z"
    assert iso_z(parse_utc("2025-11-23T10:30:00.123456Z"), micro=True) == "2025-11-23T10:30:00.123456Z"
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_utc("yesterday")


# -- the fold -------------------------------------------------------------------------------------------


def _ev(
    n: int, kind: EventType, payload: dict, step: str | None = None, ts: str = "2025-01-01T00:00:00+00:00"
) -> Event:
    return Event(n, "inc", n, ts, "op@host", step, kind.value, payload, "", "")


def test_the_fold_gives_every_reader_the_same_words() -> None:
    events = [
        _ev(0, EventType.INCIDENT_OPENED, {"playbook": "p", "mode": "live", "rto": 60}),
        _ev(1, EventType.STEP_STARTED, {"attempt": 1}, "a", "2025-01-01T00:00:01+00:00"),
        _ev(
            2,
            EventType.STEP_FAILED,
            {"attempt": 1, "error": "x.", "duration": 1.0, "will_retry": True},
            "a",
            "2025-01-01T00:00:02+00:00",
        ),
        _ev(3, EventType.STEP_STARTED, {"attempt": 2}, "a", "2025-01-01T00:00:03+00:00"),
        _ev(4, EventType.STEP_FINISHED, {"outputs": {"k": 1}, "duration": 2.0}, "a", "2025-01-01T00:00:05+00:00"),
        _ev(5, EventType.STEP_STARTED, {"attempt": 1}, "b"),
        _ev(6, EventType.STEP_FAILED, {"attempt": 1, "error": "y.", "duration": 0.5, "will_retry": False}, "b"),
        _ev(7, EventType.STEP_FAILURE_ACCEPTED, {"policy": "continue", "error": "y."}, "b"),
        _ev(8, EventType.STEP_MARKED_DONE, {"reason": "by hand"}, "c"),
        _ev(9, EventType.TAKE_OVER, {"from": "op@host", "from_pid": 1, "since": ""}),
        _ev(10, EventType("incident_closed"), {"status": "completed", "elapsed": 5.0}),
    ]
    st = S.fold("inc", events)
    a, b, c = st.steps["a"], st.steps["b"], st.steps["c"]
    assert (a.status, a.label, a.attempts, a.total_duration, a.outputs) == (S.StepStatus.DONE, "done", 2, 3.0, {"k": 1})
    assert [span[0][17:19] for span in a.spans] == ["01", "03"]
    assert (b.status, b.label, b.continued) == (S.StepStatus.FAILED, "failed", True)
    assert (c.status, c.label, c.reason) == (S.StepStatus.DONE, "marked done", "by hand")
    assert st.status == S.IncidentStatus.COMPLETED and st.closing == {"status": "completed", "elapsed": 5.0}
    assert st.operator == "op@host" and st.driver == "op@host" and st.events == len(events)
    assert st.count(S.StepStatus.DONE) == 2 and len(st.failures) == 2 and st.handovers[0].kind == EventType.TAKE_OVER


def test_an_unknown_event_type_is_kept_but_not_folded() -> None:
    st = S.fold(
        "inc",
        [
            _ev(0, EventType.INCIDENT_OPENED, {"playbook": "p"}),
            Event(1, "inc", 1, "t", "a", None, "from_the_future", {}, "", ""),
        ],
    )
    assert st.events == 2 and st.playbook_id == "p" and st.last_event is not None and st.last_event.kind is None
