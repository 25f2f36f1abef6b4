"""SIGKILL a headless run at several points: the journal stays intact and nothing re-runs blindly."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from runbook.core import incident as S
from runbook.journal.store import Journal
from tests.conftest import cli_env, kill_run, runbook, write_playbook


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
    )


def wait_for(pred, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def incident_of(home: Path) -> str:
    j = Journal(home / "journal.sqlite3")
    try:
        return j.incidents()[0]
    finally:
        j.close()


def events(home: Path, incident: str):
    j = Journal(home / "journal.sqlite3")
    try:
        return j.events(incident)
    finally:
        j.close()


def test_kill_during_long_step_then_resume_needs_a_choice(rb_home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: longstep
title: Long step
tier: maintenance
steps:
  - id: before
    shell: [echo, before]
    effect: read-only
  - id: long
    shell: [sh, -c, 'echo run >> "$0"; echo started; sleep 30', "{counter}"]
    effect: read-only
  - id: after
    shell: [echo, after]
    effect: read-only
""",
    )
    proc = start(rb_home, "run", str(pb), "--headless")
    first = proc.stdout.readline()
    assert first.startswith("incident: ")
    incident = first.split()[1]
    wait_for(lambda: counter.exists())
    wait_for(lambda: any(e.type == "step_started" and e.step == "long" for e in events(rb_home, incident)))
    kill_run(proc, signal.SIGKILL)

    r = runbook(rb_home, "verify", incident)
    assert r.returncode == 0, r.stderr
    r = runbook(rb_home, "resume", incident, "--headless")
    assert r.returncode == 3
    assert "interrupted" in r.stderr and "--retry-interrupted" in r.stderr
    assert counter.read_text().count("run") == 1  # not re-run without a choice

    r = runbook(rb_home, "resume", incident, "--headless", "--skip")
    assert r.returncode == 2 and "--reason" in r.stderr

    # Retry this time; make the step quick by replacing nothing: the retry runs the same argv.
    # (sleep 30 would be slow, so skip with a reason instead and check it is journaled.)
    r = runbook(rb_home, "resume", incident, "--headless", "--skip", "--reason", "checked by hand: data is there")
    assert r.returncode == 0, r.stderr
    evs = events(rb_home, incident)
    resolved = [e for e in evs if e.type == "interrupted_resolved"]
    assert (
        resolved
        and resolved[0].payload["choice"] == "skip"
        and resolved[0].payload["reason"] == "checked by hand: data is there"
    )
    assert any(e.type == "step_finished" and e.step == "after" for e in evs)
    assert counter.read_text().count("run") == 1
    assert runbook(rb_home, "verify", incident).returncode == 0


def test_kill_then_retry_interrupted_reruns_it(rb_home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    counter = tmp_path / "runs"
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: retryme
title: Retry me
tier: maintenance
steps:
  - id: work
    shell: [sh, -c, 'echo run >> "$1"; if [ -e "$0" ]; then exit 0; fi; touch "$0"; sleep 30', "{flag}", "{counter}"]
    effect: read-only
""",
    )
    proc = start(rb_home, "run", str(pb), "--headless")
    incident = proc.stdout.readline().split()[1]
    wait_for(flag.exists)
    kill_run(proc)
    r = runbook(rb_home, "resume", incident, "--headless", "--retry-interrupted")
    assert r.returncode == 0, r.stderr
    assert counter.read_text().count("run") == 2
    st = S.fold(incident, events(rb_home, incident))
    assert st.status == "completed" and st.steps["work"].attempts == 2


def test_kill_right_after_confirmation_asks_again(rb_home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: confirmkill
title: Confirm kill
tier: data-loss
steps:
  - id: slow_check
    shell: [sleep, "0"]
    effect: read-only
  - id: drop
    shell: [sh, -c, 'sleep 30; rm "$0"', "{victim}"]
    effect: destructive
    confirm: {{typed: victim}}
""",
    )
    proc = start(rb_home, "run", str(pb), "--headless", "--confirm", "drop=victim")
    incident = proc.stdout.readline().split()[1]
    wait_for(lambda: any(e.type == "confirmation_given" for e in events(rb_home, incident)))
    kill_run(proc)
    evs = events(rb_home, incident)
    assert runbook(rb_home, "verify", incident).returncode == 0
    started = any(e.type == "step_started" and e.step == "drop" for e in evs)
    r = runbook(rb_home, "resume", incident, "--headless")
    assert r.returncode == 3
    # Whether the kill landed before or after the step started, a person must choose again.
    assert ("interrupted" in r.stderr) if started else ("typed confirmation" in r.stderr)
    assert victim.exists()


def test_random_kills_never_lose_acknowledged_events(rb_home: Path, tmp_path: Path) -> None:
    steps = "\n".join(
        f'  - id: s{i}\n    shell: [sh, -c, \'echo {i} >> "$0"; sleep 0.0{i % 5}\', "{tmp_path / "ran"}"]\n'
        "    effect: read-only"
        for i in range(30)
    )
    pb = write_playbook(tmp_path / "pbs", f"id: many\ntitle: Many\ntier: maintenance\nsteps:\n{steps}\n")
    rng = random.Random(7)
    for _round in range(4):
        proc = start(rb_home, "run", str(pb), "--headless")
        incident = proc.stdout.readline().split()[1]
        time.sleep(rng.uniform(0.05, 0.6))
        out, _ = kill_run(proc)
        acknowledged = [line.split()[1] for line in out.splitlines() if line.startswith("✓ ")]
        evs = events(rb_home, incident)
        finished = {e.step for e in evs if e.type == "step_finished"}
        assert set(acknowledged) <= finished
        assert runbook(rb_home, "verify", incident).returncode == 0
        # Resume to the end, retrying whatever was interrupted; every step then ran to completion.
        r = runbook(rb_home, "resume", incident, "--headless", "--retry-interrupted")
        if r.returncode == 0 or "already completed" in r.stderr:
            st = S.fold(incident, events(rb_home, incident))
            assert st.status == "completed"
            assert all(s.status == S.StepStatus.DONE for s in st.steps.values()) and len(st.steps) == 30
        else:
            raise AssertionError(r.stderr)


def test_headless_json_outputs(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(
        tmp_path / "pbs",
        "id: tiny\ntitle: Tiny\ntier: maintenance\nrto: 5m\n"
        "steps:\n  - id: a\n    shell: [echo, hi]\n    effect: read-only\n",
    )
    r = runbook(rb_home, "run", str(pb), "--headless")
    assert r.returncode == 0 and r.stdout.startswith("incident: ")
    incident = r.stdout.split()[1]
    rows = json.loads(runbook(rb_home, "incidents", "--json").stdout)
    assert rows[0]["id"] == incident and rows[0]["status"] == "completed" and rows[0]["rto"] == 300
    doc = json.loads(runbook(rb_home, "export", incident, "--format", "json").stdout)
    from runbook.reports.exports import verify_export

    assert verify_export(doc) == (len(doc["events"]), None)


def test_second_operator_is_refused_then_takes_over(rb_home: Path, tmp_path: Path) -> None:
    """B may not drive A's incident without --take-over; with it, B drives the same run: no second engine."""
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: takeover
title: Take over
tier: maintenance
steps:
  - id: wait
    shell: [sh, -c, 'echo run >> "$0"; sleep 3', "{tmp_path / 'runs'}"]
    effect: read-only
  - id: after
    shell: [echo, done]
    effect: read-only
""",
    )
    proc = start(rb_home, "run", str(pb), "--headless")
    incident = proc.stdout.readline().split()[1]
    wait_for(lambda: any(e.type == "step_started" for e in events(rb_home, incident)))
    r = runbook(rb_home, "resume", incident, "--headless")
    assert r.returncode == 1
    assert "is being driven by" in r.stderr and "--take-over" in r.stderr
    r = runbook(rb_home, "resume", incident, "--headless", "--take-over")
    assert r.returncode == 0, r.stderr
    assert "incident completed" in r.stdout
    proc.wait(timeout=30)
    evs = events(rb_home, incident)
    take = [e for e in evs if e.type == "take_over"]
    assert take and take[0].payload["from_pid"] == proc.pid
    # The step was never interrupted, and ran once: the same engine went on under its new driver.
    assert [e.type for e in evs if e.step == "wait" and e.type.startswith("step_")] == ["step_started", "step_finished"]
    assert (tmp_path / "runs").read_text().count("run") == 1
    assert proc.returncode == 1  # a script can tell it did not see the run to its end
    assert "taken over by" in proc.stderr.read()
    assert runbook(rb_home, "verify", incident).returncode == 0
    r = runbook(rb_home, "timeline", incident)
    assert r.returncode == 0 and "taken over from" in r.stdout


def test_resume_can_retry_a_failed_step(rb_home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: failonce
title: Fail once
tier: maintenance
not_drillable: fixture
steps:
  - id: check
    shell: [test, -e, "{flag}"]
    effect: read-only
  - id: after
    shell: [echo, after]
    effect: read-only
""",
    )
    r = runbook(rb_home, "run", str(pb), "--headless")
    assert r.returncode == 1 and "Step 'check' failed" in r.stderr
    incident = r.stdout.split()[1]
    r = runbook(rb_home, "resume", incident, "--headless")
    assert r.returncode == 3 and "--retry-failed" in r.stderr
    flag.write_text("fixed by hand")
    r = runbook(rb_home, "resume", incident, "--headless", "--retry-failed", "--reason", "disk remounted")
    assert r.returncode == 0, r.stderr
    evs = events(rb_home, incident)
    assert any(e.type == "step_retry_requested" and e.payload["reason"] == "disk remounted" for e in evs)
    assert S.fold(incident, evs).status == "completed"


def test_a_param_named_password_survives_resume(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: pwparam
title: Password param
tier: security
not_drillable: fixture
params:
  password: {type: string, secret: true, required: true}
steps:
  - id: check
    shell: [sh, -c, 'test -n "$0"', "{{ params.password }}"]
    effect: read-only
  - id: confirm_rotation
    manual: true
""",
    )
    r = runbook(rb_home, "run", str(pb), "--headless", RUNBOOK_PARAM_PASSWORD="Rot4ted-Secret-99")
    assert r.returncode == 3 and "confirm_rotation=done" in r.stderr
    incident = r.stdout.split()[1]
    r = runbook(
        rb_home,
        "resume",
        incident,
        "--headless",
        "--confirm",
        "confirm_rotation=done",
        RUNBOOK_PARAM_PASSWORD="Rot4ted-Secret-99",
    )
    assert r.returncode == 0, r.stderr
    assert S.fold(incident, events(rb_home, incident)).status == "completed"
    assert b"Rot4ted-Secret-99" not in (rb_home / "journal.sqlite3").read_bytes()
