"""Detached execution: the supervisor owns the run; clients come and go (real processes, real signals).

* a question that comes up while nobody drives waits, journaled as ``waiting`` with who drove last;
* 50 random kill points across client *and* supervisor never give two overlapping executions of a
  step, never an execution without a journaled start, never a process of the step alive after its
  supervisor died, and the chain verifies after every resume;
* watchers see live output and cannot decide; the socket is private and speaks one version.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from runbook.core import incident as S
from runbook.core.procs import pid_alive
from runbook.engine.frontend import Choice, Decision, Journaled, OutputLine, Request
from runbook.journal.store import Journal
from runbook.supervisor import protocol as W
from runbook.supervisor.client import SupervisedEngine, start_supervisor, supervisor_state
from tests.conftest import runbook, supervisors, write_playbook
from tests.e2e.test_kill_resume import events, start, wait_for


class Scripted:
    """An interactive front end answering from a script: (ask, step) -> Decision; records what it saw."""

    def __init__(self, answers: dict[tuple[str, str | None], Decision]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str | None]] = []
        self.lines: list[str] = []
        self.events: list[str] = []

    def emit(self, event) -> None:
        if isinstance(event, OutputLine):
            self.lines.append(event.line)
        elif isinstance(event, Journaled):
            self.events.append(event.event.type)

    def decide(self, request: Request) -> Decision:
        key = (request.ask.value, request.step)
        self.asked.append(key)
        return self.answers.get(key, Decision(Choice.QUIT))


def _two_steps(tmp_path: Path) -> Path:
    return write_playbook(
        tmp_path / "pbs",
        """
id: twosteps
title: Two steps
tier: maintenance
steps:
  - id: first
    shell: [sh, -c, 'echo first-line; sleep 1']
    effect: read-only
  - id: second
    shell: [echo, second-line]
    effect: read-only
""",
    )


def test_a_question_waits_for_someone_to_attach(rb_home: Path, tmp_path: Path) -> None:
    pb = _two_steps(tmp_path)
    journal = Journal(rb_home / "journal.sqlite3")
    try:
        spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live",
                "driver": "alice@bastion (pid 1)"}
        incident = str(start_supervisor(spec, rb_home, None)["incident"])
        alice = Scripted({("before_step", "first"): Decision(Choice.RUN)})
        client = SupervisedEngine(alice, journal, rb_home)
        client.attach(incident, interactive=True, since_n=-1)
        runner = threading.Thread(target=client.run, daemon=True)
        runner.start()
        wait_for(lambda: "first-line" in alice.lines)
        client.detach()  # alice's terminal goes away while `first` runs
        runner.join(5)
        # `first` ends without her; `second`'s question waits for somebody, journaled with who drove last.
        wait_for(lambda: any(e.type == "waiting" for e in journal.events(incident)))
        evs = journal.events(incident)
        assert any(e.type == "step_finished" and e.step == "first" for e in evs)
        waiting = [e for e in evs if e.type == "waiting"]
        assert waiting[0].step == "second" and waiting[0].payload["ask"] == "before_step"
        assert "pid" in waiting[0].payload["last_driver"]
        state = supervisor_state(rb_home, incident)
        assert state is not None and state["driver"] is None and state["waiting"]["step"] == "second"
        # Bob attaches from another terminal: he is asked the waiting question and the run ends.
        bob = Scripted({("before_step", "second"): Decision(Choice.RUN)})
        client = SupervisedEngine(bob, journal, rb_home)
        client.attach(incident, interactive=True, since_n=-1)
        outcome = client.run()
        assert outcome.status == "completed", outcome.message
        assert bob.asked == [("before_step", "second")] and "second-line" in bob.lines
        assert "step_finished" in bob.events  # the history he missed, replayed from the journal
        assert journal.verify(incident)[1] is None
    finally:
        journal.close()


def test_watchers_see_live_output_and_cannot_decide(rb_home: Path, tmp_path: Path) -> None:
    pb = _two_steps(tmp_path)
    journal = Journal(rb_home / "journal.sqlite3")
    try:
        spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live",
                "detached": True}
        incident = str(start_supervisor(spec, rb_home, None)["incident"])
        watcher = Scripted({})
        client = SupervisedEngine(watcher, journal, rb_home)
        client.attach(incident, role="watch", interactive=True, since_n=-1)
        client._send("decision", id=1, choice="run")  # a watcher's answer is ignored
        time.sleep(0.5)
        assert not [e for e in journal.events(incident) if e.type == "step_started"]
        assert watcher.asked == []
        driver = Scripted({("before_step", "first"): Decision(Choice.RUN),
                           ("before_step", "second"): Decision(Choice.RUN)})
        drive = SupervisedEngine(driver, journal, rb_home)
        drive.attach(incident, interactive=True)
        threading.Thread(target=drive.run, daemon=True).start()
        outcome = client.run()
        assert outcome.status == "completed"
        assert "first-line" in watcher.lines and "second-line" in watcher.lines and watcher.asked == []
    finally:
        journal.close()


def test_the_socket_is_private_and_speaks_one_version(rb_home: Path, tmp_path: Path) -> None:
    pb = _two_steps(tmp_path)
    spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live", "detached": True}
    incident = str(start_supervisor(spec, rb_home, None)["incident"])
    path = W.socket_path(rb_home, incident)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sock = W.connect(path)
    sock.sendall(W.encode("hello", v=99, role="drive", who="x", pid=1))
    reply = next(W.LineReader(sock).messages())
    sock.close()
    assert reply["t"] == "refused" and "protocol version 1" in reply["message"]
    state = supervisor_state(rb_home, incident)  # still serving, the question still waiting
    assert state is not None and state["waiting"]["ask"] == "before_step"


def test_a_peer_of_another_user_is_refused(rb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SO_PEERCRED, not the peer's word, decides (the home is 0700 too: this is the second lock)."""
    from runbook.supervisor import server as server_module
    from runbook.supervisor.relay import Relay

    ours, theirs = socket.socketpair()
    assert W.peer_uid(ours) == os.getuid()
    monkeypatch.setattr(server_module.W, "peer_uid", lambda s: os.getuid() + 1)
    srv = object.__new__(server_module.Server)
    srv.relay = Relay(None, "x")
    srv._serve(ours)
    reply = json.loads(theirs.recv(4096).decode())
    assert reply["t"] == "refused" and "Only the user" in reply["message"]
    assert srv.relay.clients == []


# -- 50 random kill points across client and supervisor ---------------------------------------------

STEP = ('exec 9>>"$0"; flock -n 9 || { echo "overlap $$" >> "$1"; exit 1; }; '
        'echo "start $$" >> "$1"; sleep 0.4; echo "end $$" >> "$1"')
KILL_POINTS = 50


def _kill_playbook(tmp_path: Path) -> tuple[Path, Path]:
    lock, runs = tmp_path / "step.lock", tmp_path / "runs"
    steps = "\n".join(f"  - id: s{i}\n    shell: [sh, -c, '{STEP}', \"{lock}\", \"{runs}\"]\n    effect: mutating"
                      for i in range(4))
    text = f"id: killpoints\ntitle: Kill points\ntier: maintenance\nsteps:\n{steps}\n"
    return write_playbook(tmp_path / "pbs", text), runs


def _step_pids(home: Path, incident: str) -> list[int]:
    return [e.payload["pid"] for e in events(home, incident) if e.type == "process_started"]


def test_random_kills_across_client_and_supervisor(rb_home: Path, tmp_path: Path) -> None:
    pb, runs = _kill_playbook(tmp_path)
    rng = random.Random(12)
    incident: str | None = None
    journaled_pids: set[int] = set()
    for _point in range(KILL_POINTS):
        if incident is None:
            proc = start(rb_home, "run", str(pb), "--headless", "--yes")
            incident = proc.stdout.readline().split()[1]
        else:
            proc = start(rb_home, "resume", incident, "--headless", "--yes", "--retry-interrupted",
                         "--stop-interrupted")
        time.sleep(rng.uniform(0.0, 1.2))
        target = rng.choice(["client", "supervisor"])
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
        live = supervisors(rb_home)
        if target == "supervisor" and live:
            for sup in live:
                sup.send_signal(signal.SIGKILL if sig == signal.SIGHUP else sig)  # it ignores hang-ups
            for sup in live:
                sup.wait(timeout=20)
            # No process of the step outlives its supervisor (the reaper's grace is 3 s).
            for pid in _step_pids(rb_home, incident):
                wait_for(lambda pid=pid: not pid_alive(pid), timeout=10)
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.communicate(timeout=30)
        j = Journal(rb_home / "journal.sqlite3")
        try:
            assert j.verify(incident)[1] is None
            st = S.fold(incident, j.events(incident))
        finally:
            j.close()
        journaled_pids |= set(_step_pids(rb_home, incident))
        if st.status == S.IncidentStatus.COMPLETED:
            wait_for(lambda: not supervisors(rb_home), timeout=10)
            incident = None
    completed = sum(1 for i in Journal(rb_home / "journal.sqlite3").incidents()
                    if S.fold(i, events(rb_home, i)).status == S.IncidentStatus.COMPLETED)
    if incident is not None:  # the last one, resumed to its end without more kills
        r = runbook(rb_home, "resume", incident, "--headless", "--yes", "--retry-interrupted", "--stop-interrupted")
        assert r.returncode == 0, r.stderr
        completed += 1
    assert completed >= 3  # the kills interrupted runs, they did not just stop them from starting
    lines = runs.read_text().splitlines() if runs.exists() else []
    assert not [line for line in lines if line.startswith("overlap")], lines
    started = {int(line.split()[1]) for line in lines if line.startswith("start")}
    assert started and started <= journaled_pids | set(_step_pids(rb_home, incident or "")), "a start not journaled"
    assert all(not pid_alive(pid) for pid in started)


def test_headless_pipe_closed_then_the_run_completes(rb_home: Path, tmp_path: Path) -> None:
    """`runbook run … --headless | head -1`: the id is printed, the run completes without any reader."""
    pb = _two_steps(tmp_path)
    proc = start(rb_home, "run", str(pb), "--headless")
    incident = proc.stdout.readline().split()[1]
    proc.stdout.close()
    proc.wait(timeout=30)
    for sup in supervisors(rb_home):
        sup.wait(timeout=30)
    assert S.fold(incident, events(rb_home, incident)).status == "completed"


def test_detach_returns_at_once_and_attach_streams_to_the_end(rb_home: Path, tmp_path: Path) -> None:
    pb = _two_steps(tmp_path)
    t0 = time.monotonic()
    r = runbook(rb_home, "run", str(pb), "--headless", "--detach")
    assert r.returncode == 0 and r.stdout.startswith("incident: ")
    assert time.monotonic() - t0 < 20
    incident = r.stdout.split()[1]
    assert f"runbook attach {incident}" in r.stderr
    r = runbook(rb_home, "attach", incident, "--headless")
    assert r.returncode == 0, r.stderr
    assert "incident completed" in r.stdout and "second-line" in r.stdout
    r = runbook(rb_home, "attach", incident, "--headless")  # it ended: what happened, and exit 0
    assert r.returncode == 0 and "incident completed" in r.stdout, r.stderr


def test_a_driver_leaving_an_open_question_leaves_it_waiting(rb_home: Path, tmp_path: Path) -> None:
    pb = _two_steps(tmp_path)
    journal = Journal(rb_home / "journal.sqlite3")
    try:
        spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live"}
        incident = str(start_supervisor(spec, rb_home, None)["incident"])
        never = threading.Event()

        class Away(Scripted):
            def decide(self, request: Request) -> Decision:
                self.asked.append((request.ask.value, request.step))
                never.wait(30)  # the operator looks at the question and the connection drops
                return Decision(Choice.QUIT)

        alice = Away({})
        client = SupervisedEngine(alice, journal, rb_home)
        client.attach(incident, interactive=True)
        threading.Thread(target=client.run, daemon=True).start()
        wait_for(lambda: alice.asked == [("before_step", "first")])
        assert not [e for e in journal.events(incident) if e.type == "waiting"]
        client.detach()
        wait_for(lambda: any(e.type == "waiting" for e in journal.events(incident)))
        waiting = [e for e in journal.events(incident) if e.type == "waiting"]
        assert waiting[0].step == "first" and f"pid {os.getpid()}" in waiting[0].payload["last_driver"]
        never.set()  # its late answer goes nowhere: the question still waits
        time.sleep(0.3)
        assert not [e for e in journal.events(incident) if e.type in ("paused", "step_started")]
    finally:
        journal.close()


def test_hostile_clients_never_take_the_supervisor_down(rb_home: Path, tmp_path: Path) -> None:
    """Wrong types, an answer nobody was offered, bad standing answers, a nesting bomb: all ignored."""
    pb = _two_steps(tmp_path)
    spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live", "detached": True}
    incident = str(start_supervisor(spec, rb_home, None)["incident"])
    path = W.socket_path(rb_home, incident)
    wait_for(lambda: (supervisor_state(rb_home, incident) or {}).get("waiting") is not None)
    hostile = [
        W.encode("hello", v=1, role="watch", who=["x"], pid="not a pid")
        + W.encode("decision", id=1, choice="run")  # a watcher's
        + b"[" * 100_000 + b"\n",
        b"\xff\xfe not json\n",
        W.encode("hello", v=1, role="drive", who="mallory", pid=True, interactive=True)
        + W.encode("decision", id="abc", choice="run")
        + W.encode("decision", id=1, choice="confirm", typed=7)  # not offered before a step
        + W.encode("decision", id=True, choice="stop")
        + W.encode("decision", id=1, choice="no such choice")
        + W.encode("cancel", step=["x"]) + W.encode("note", text={"a": 1}),
    ]
    for data in hostile:
        sock = W.connect(path)
        try:
            sock.sendall(data)
            time.sleep(0.3)
        finally:
            sock.close()
    state = supervisor_state(rb_home, incident)
    assert state is not None and state["waiting"]["ask"] == "before_step"  # alive, still waiting
    kinds = [e.type for e in events(rb_home, incident)]
    assert "step_started" not in kinds and "incident_closed" not in kinds and "paused" not in kinds
    # A headless driver whose flags arrive mangled: each bad field is dropped, never acted on.
    sock = W.connect(path)
    sock.sendall(W.encode("hello", v=1, role="drive", who="x", pid=1,
                          answers={"interrupted": "rm -rf", "yes": "yes", "confirms": {"a": 1}, "auto": 1}))
    for message in W.LineReader(sock).messages():
        if message["t"] == "outcome":
            assert message["status"] == "completed"  # two read-only steps: the defaults run them
            break
    sock.close()
    log = (rb_home / "run" / "supervisor.log").read_text()
    assert "Traceback" not in log, log[-2000:]


def test_a_secret_target_never_crosses_the_socket(rb_home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-Zq9"
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: secrettarget
title: Secret target
tier: maintenance
params:
  token: {type: string, secret: true, required: true}
steps:
  - id: use
    shell: [sh, -c, 'test -n "$0"', "{{ params.token }}"]
    effect: destructive
    confirm: {typed: "{{ params.token }}"}
""",
    )
    monkeypatch.setenv("RUNBOOK_PARAM_TOKEN", secret)
    journal = Journal(rb_home / "journal.sqlite3")
    try:
        spec = {"action": "open", "playbook": str(pb), "params": {"token": secret}, "env": "sandbox",
                "mode": "live"}
        incident = str(start_supervisor(spec, rb_home, None)["incident"])
        sup = supervisors(rb_home)[0]
        assert not [k for k in sup.environ() if k.startswith("RUNBOOK_PARAM_")]  # the spec carried it
        seen: list[Request] = []

        class Confirming(Scripted):
            def decide(self, request: Request) -> Decision:
                seen.append(request)
                if request.ask.value == "confirm":
                    assert request.matches(secret) and not request.matches(secret.upper())
                    return Decision(Choice.CONFIRM, typed=secret)
                return Decision(Choice.RUN)

        client = SupervisedEngine(Confirming({}), journal, rb_home)
        client.attach(incident, interactive=True)
        assert client.run().status == "completed"
        confirm = next(r for r in seen if r.ask.value == "confirm")
        assert confirm.expected is None and confirm.expected_sha256 and secret not in repr(seen)
        assert confirm.expected_is_secret()
    finally:
        journal.close()
