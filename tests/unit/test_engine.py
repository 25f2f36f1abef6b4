"""The engine through a scripted front end: real shell steps, real journal, no mocks of our code."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runbook.core import incident as S
from runbook.core.environment import Environment
from runbook.core.errors import UsageError
from runbook.engine.frontend import Ask, Choice, Decision, Journaled, OutputLine, Request
from runbook.engine.runner import Engine
from runbook.journal.store import Journal
from runbook.playbook.validate import load
from tests.conftest import write_playbook


class Scripted:
    """A front end that answers from a list of functions, recording every request and event."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)

    def decide(self, request: Request) -> Decision:
        self.requests.append(request)
        if request.ask == Ask.BEFORE_STEP:
            return Decision(Choice.RUN)
        if not self.answers:
            return Decision(Choice.QUIT)
        return self.answers.pop(0)(request)


def make(tmp_path: Path, text: str, frontend, params=None, mode="live"):
    pb = write_playbook(tmp_path / "pbs", text)
    journal = Journal(tmp_path / "home" / "journal.sqlite3")
    engine = Engine(journal, frontend, home=tmp_path / "home", environment=Environment("test"))
    st = engine.open(load(pb), params or {}, mode=mode)
    return engine, journal, st


def types(journal: Journal, incident: str) -> list[str]:
    return [e.type for e in journal.events(incident)]


def test_outputs_flow_into_later_steps_as_argv_elements(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    write_second_arg = "import sys; open(sys.argv[1],'w').write(sys.argv[2])"
    text = f"""
id: flow
title: Flow
tier: maintenance
params:
  name: {{type: string, default: "a b; rm -rf /"}}
steps:
  - id: first
    shell: [printf, "%s\\n", "{{{{ params.name }}}}"]
    effect: read-only
    outputs:
      value: last_line
  - id: second
    shell: [python3, -c, "{write_second_arg}", "{out}", "{{{{ steps.first.outputs.value }}}}"]
    effect: read-only
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe)
    outcome = engine.run()
    assert outcome.status == "completed", outcome
    assert out.read_text() == "a b; rm -rf /"  # one argv element, never a shell string
    assert any(isinstance(e, OutputLine) and e.line == "a b; rm -rf /" for e in fe.events)


def test_yes_confirmation_refused_then_given(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    text = f"""
id: conf
title: Conf
tier: maintenance
steps:
  - id: touch
    shell: [touch, "{marker}"]
"""
    calls = []

    def refuse(r):
        calls.append(r)
        return Decision(Choice.REFUSE)

    def accept(r):
        assert not marker.exists(), "ran before confirmation"
        return Decision(Choice.CONFIRM)

    fe = Scripted(refuse, accept)
    engine, journal, st = make(tmp_path, text, fe)
    assert engine.run().status == "completed"
    assert marker.exists()
    t = types(journal, st.id)
    assert t.index("confirmation_refused") < t.index("confirmation_given") < t.index("step_started")
    confirm_requests = [r for r in fe.requests if r.ask == Ask.CONFIRM]
    assert confirm_requests[0].confirm == "yes" and confirm_requests[0].effect == "mutating"


def test_typed_confirmation_mistyped_does_not_run(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("data")
    text = f"""
id: typed
title: Typed
tier: data-loss
params:
  db: {{type: identifier, default: varlor}}
steps:
  - id: drop
    shell: [rm, "{victim}"]
    effect: destructive
    confirm: {{typed: "{{{{ params.db }}}}"}}
"""
    fe = Scripted(
        lambda r: Decision(Choice.CONFIRM, typed="varlor "),
        lambda r: Decision(Choice.CONFIRM, typed="VARLOR"),
        lambda r: Decision(Choice.QUIT),
    )
    engine, journal, st = make(tmp_path, text, fe)
    outcome = engine.run()
    assert outcome.status == "paused"
    assert victim.exists()
    evs = journal.events(st.id)
    refused = [e for e in evs if e.type == "confirmation_refused"]
    assert [e.payload["typed"] for e in refused] == ["varlor ", "VARLOR"]
    assert "step_started" not in [e.type for e in evs]
    assert [r.expected for r in fe.requests if r.ask == Ask.CONFIRM][0] == "varlor"
    # Resume and type it right: now it runs.
    fe2 = Scripted(lambda r: Decision(Choice.CONFIRM, typed="varlor"))
    engine2 = Engine(journal, fe2, home=tmp_path / "home", environment=Environment("test"))
    engine2.resume(st.id)
    assert engine2.run().status == "completed"
    assert not victim.exists()
    given = [e for e in journal.events(st.id) if e.type == "confirmation_given"]
    assert given[0].payload["typed"] == "varlor" and given[0].actor == journal.actor


def test_dry_run_runs_read_only_and_only_shows_mutating(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    text = f"""
id: dry
title: Dry
tier: maintenance
steps:
  - id: look
    shell: [echo, hello]
    effect: read-only
  - id: change
    shell: [touch, "{marker}"]
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe, mode="dry-run")
    assert engine.run().status == "completed"
    assert not marker.exists()
    evs = journal.events(st.id)
    planned = [e for e in evs if e.type == "step_planned"]
    assert planned and planned[0].step == "change" and str(marker) in planned[0].payload["action"]
    assert any(e.type == "step_finished" and e.step == "look" for e in evs)


def test_timeout_stops_a_hanging_step_and_records_it(tmp_path: Path) -> None:
    text = """
id: hang
title: Hang
tier: maintenance
steps:
  - id: sleep
    shell: [sleep, "30"]
    effect: read-only
    timeout: 1s
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe)
    start = time.monotonic()
    outcome = engine.run()
    assert time.monotonic() - start < 10
    assert outcome.status == "failed"
    failed = [e for e in journal.events(st.id) if e.type == "step_failed"]
    assert failed and failed[-1].payload.get("timed_out") and "timeout" in failed[-1].payload["error"]


def test_retries_then_success(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    fail_first_two_runs = (
        "import pathlib,sys; p=pathlib.Path(sys.argv[1]); n=int(p.read_text() or 0) if p.exists() else 0; "
        "p.write_text(str(n+1)); sys.exit(0 if n>=2 else 1)"
    )
    text = f"""
id: flaky
title: Flaky
tier: maintenance
steps:
  - id: flaky
    shell: [python3, -c, "{fail_first_two_runs}", "{counter}"]
    effect: read-only
    retries: 3
    retry_delay: 0s
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe)
    assert engine.run().status == "completed"
    evs = journal.events(st.id)
    assert [e.payload["will_retry"] for e in evs if e.type == "step_failed"] == [True, True]
    assert counter.read_text() == "3"


def test_on_failure_continue_and_ask(tmp_path: Path) -> None:
    text = """
id: fail
title: Fail
tier: maintenance
steps:
  - id: soft
    shell: ["false"]
    effect: read-only
    on_failure: continue
  - id: hard
    shell: ["false"]
    effect: read-only
    on_failure: ask
  - id: after
    shell: ["true"]
    effect: read-only
"""
    fe = Scripted(lambda r: Decision(Choice.SKIP, reason="known broken, ticket OPS-1"))
    engine, journal, st = make(tmp_path, text, fe)
    outcome = engine.run()
    assert outcome.status == "completed"  # `soft` failed but the playbook accepts that (continue)
    closed = [e for e in journal.events(st.id) if e.type == "incident_closed"][0]
    assert closed.payload["failures_accepted"] == ["soft"]
    failure_requests = [r for r in fe.requests if r.ask == Ask.FAILURE]
    assert len(failure_requests) == 1 and failure_requests[0].step == "hard"
    skipped = [e for e in journal.events(st.id) if e.type == "step_skipped"]
    assert skipped[0].payload["reason"] == "known broken, ticket OPS-1"
    assert any(e.type == "step_finished" and e.step == "after" for e in journal.events(st.id))


def test_when_condition_skips(tmp_path: Path) -> None:
    text = """
id: cond
title: Cond
tier: maintenance
params:
  restore_storage: {type: bool, default: false}
steps:
  - id: count
    shell: [echo, "5"]
    effect: read-only
    outputs: {n: last_line}
  - id: big
    when: "steps.count.outputs.n > 3 and not params.restore_storage"
    shell: [echo, big]
    effect: read-only
  - id: storage
    when: params.restore_storage
    shell: [echo, storage]
    effect: read-only
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe)
    engine.run()
    evs = {(e.step, e.type) for e in journal.events(st.id)}
    assert ("big", "step_finished") in evs
    assert ("storage", "step_skipped") in evs


def test_manual_step_and_note(tmp_path: Path) -> None:
    text = """
id: manual
title: Manual
tier: full-loss
steps:
  - id: provision
    manual: true
    description: Provision a new server.
"""
    fe = Scripted(lambda r: Decision(Choice.DONE, reason="server vm-42 is up"))
    engine, journal, st = make(tmp_path, text, fe)
    engine.add_note("paged the DBA")
    assert engine.run().status == "completed"
    evs = journal.events(st.id)
    assert any(e.type == "note" and e.payload["text"] == "paged the DBA" for e in evs)
    assert any(e.type == "step_finished" and e.payload.get("manual") for e in evs)


def test_secret_params_never_in_journal_or_logs(tmp_path: Path) -> None:
    secret = "s3cr3t-Passw0rd-XYZ"
    text = """
id: sec
title: Sec
tier: security
params:
  password: {type: string, secret: true, required: true}
steps:
  - id: use
    shell: [sh, -c, 'echo "connecting with $0"; echo "$0" >&2', "{{ params.password }}"]
    effect: read-only
    outputs: {seen: last_line}
"""
    fe = Scripted()
    engine, journal, st = make(tmp_path, text, fe, params={"password": secret})
    assert engine.run().status == "completed"
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "home").glob("journal.sqlite3*"))
    assert secret.encode() not in db_bytes
    logs = list((tmp_path / "home" / "logs").rglob("*.log"))
    assert logs and all(secret.encode() not in p.read_bytes() for p in logs)
    assert "connecting with ••••••" in logs[0].read_text()
    assert all(secret not in getattr(e, "line", "") for e in fe.events)
    mode = os.stat(tmp_path / "home" / "journal.sqlite3").st_mode & 0o777
    assert mode == 0o600
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in logs)


def test_invalid_param_opens_nothing(tmp_path: Path) -> None:
    text = """
id: p
title: P
tier: maintenance
params:
  tenant: {type: identifier, required: true}
steps:
  - id: s
    shell: [echo, "{{ params.tenant }}"]
    effect: read-only
"""
    pb = write_playbook(tmp_path / "pbs", text)
    journal = Journal(tmp_path / "j.sqlite3")
    engine = Engine(journal, Scripted(), home=tmp_path, environment=Environment("test"))
    with pytest.raises(UsageError, match="identifier"):
        engine.open(load(pb), {"tenant": "../../etc"})
    assert journal.incidents() == []


def test_events_are_journaled_before_the_frontend_sees_them(tmp_path: Path) -> None:
    text = """
id: order
title: Order
tier: maintenance
steps:
  - id: a
    shell: [echo, a]
    effect: read-only
"""
    seen = []

    class Checking(Scripted):
        def emit(self, event):
            if isinstance(event, Journaled):
                # Read back through a separate connection: it must already be on disk.
                other = Journal(journal_path)
                seen.append(any(e.hash == event.event.hash for e in other.events(event.event.incident)))
                other.close()

    journal_path = tmp_path / "home" / "journal.sqlite3"
    engine, journal, st = make(tmp_path, text, Checking())
    engine.run()
    assert seen and all(seen)


def test_state_fold_marks_unfinished_step_running(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append("i1", "incident_opened", {"playbook": "x"})
    journal.append("i1", "step_started", {"attempt": 1}, step="a")
    st = S.fold("i1", journal.events("i1"))
    assert [s.id for s in st.interrupted()] == ["a"]


def test_int_and_bool_params_become_argv_text(tmp_path: Path) -> None:
    out = tmp_path / "args"
    write_joined_args = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
    text = f"""
id: ints
title: Ints
tier: maintenance
params:
  days: {{type: int, default: 30}}
  force: {{type: bool, default: true}}
steps:
  - id: write
    shell: [python3, -c, "{write_joined_args}", "{out}", "{{{{ params.days }}}}", "{{{{ params.force }}}}"]
    effect: read-only
"""
    engine, journal, st = make(tmp_path, text, Scripted())
    assert engine.run().status == "completed"
    assert out.read_text() == "30 true"


def test_step_log_is_readable_while_the_step_runs(tmp_path: Path) -> None:
    from runbook.journal.logs import StepLog

    log = StepLog(tmp_path / "s.log")
    log.write("first line")
    assert (tmp_path / "s.log").read_text() == "first line\n"  # flushed without close
    log.close()


def test_mapping_outputs_can_be_indexed_and_passed_as_json(tmp_path: Path) -> None:
    out = tmp_path / "got"
    write_second_arg = "import sys, json; open(sys.argv[1], 'w').write(sys.argv[2])"
    text = f"""
id: maps
title: Maps
tier: maintenance
not_drillable: fixture
steps:
  - id: count
    run: file.check_size
    with: {{path: "{tmp_path}", min_bytes: 0}}
  - id: use
    when: "steps.count.outputs.size >= 0"
    shell: ["{{{{ env.python }}}}", -c, "{write_second_arg}", "{out}", "{{{{ steps.count.outputs.ok }}}}"]
    effect: read-only
"""
    engine, journal, st = make(tmp_path, text, Scripted())
    assert engine.run().status == "completed"
    assert out.read_text() == "true"


def test_dict_output_reference_resolves_keys() -> None:
    from runbook.playbook.refs import make_lookup, render

    lookup = make_lookup(
        params={},
        outputs={"c": {"counts": {"datasets": 600}, "names": ["a", "b"]}},
        incident={},
        env=lambda p: None,
        mode="live",
    )
    assert render("{{ steps.c.outputs.counts.datasets }}", lookup) == 600
    assert render("{{ steps.c.outputs.names.1 }}", lookup) == "b"
    assert render("n={{ steps.c.outputs.counts }}", lookup) == "n={'datasets': 600}"
