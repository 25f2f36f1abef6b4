"""A step survives its terminal, never outlives its supervisor unseen, and never runs twice.

Real processes, real signals: the headless client is killed (the step goes on), or the incident's
supervisor is killed while a step's shell runs a ``sleep`` in the background (a grandchild, which
a death signal on the direct child would miss).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from runbook.core import incident as S
from runbook.core.procs import pid_alive
from tests.conftest import cli_env, kill_run, runbook, supervisor_of, write_playbook
from tests.e2e.test_kill_resume import events, start, wait_for

# The step writes "start <sh pid>", runs sleep in the background (its pid to a file), and waits;
# with the flag file present it only writes start/end and returns at once.
STEP = (
    'echo "start $$" >> "$1"; if [ -e "$0" ]; then echo "end $$" >> "$1"; exit 0; fi; '
    'sleep 60 & echo $! > "$2"; wait; echo "end $$" >> "$1"'
)


def _playbook(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    flag, runs, sleeper = tmp_path / "flag", tmp_path / "runs", tmp_path / "sleeper.pid"
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: longwork
title: Long work
tier: maintenance
steps:
  - id: work
    shell: [sh, -c, '{STEP}', "{flag}", "{runs}", "{sleeper}"]
    effect: mutating
""",
    )
    return pb, flag, runs, sleeper


def _started_step(home: Path, pb: Path, sleeper: Path) -> tuple[subprocess.Popen[str], str, int]:
    """A headless run whose step is running: the process, the incident id, the background sleep's pid."""
    proc = start(home, "run", str(pb), "--headless", "--yes")
    assert proc.stdout is not None
    incident = proc.stdout.readline().split()[1]
    wait_for(lambda: sleeper.exists() and sleeper.read_text().strip().isdigit())
    wait_for(lambda: any(e.type == "process_started" for e in events(home, incident)))  # journaled after Popen
    return proc, incident, int(sleeper.read_text())


def test_a_killed_supervisor_takes_its_step_commands_with_it(rb_home: Path, tmp_path: Path) -> None:
    pb, flag, runs, sleeper = _playbook(tmp_path)
    for sig_index, sig in enumerate((signal.SIGKILL, signal.SIGHUP, signal.SIGTERM)):
        sleeper.unlink(missing_ok=True)
        proc, incident, sleep_pid = _started_step(rb_home, pb, sleeper)
        journaled = [e for e in events(rb_home, incident) if e.type == "process_started"]
        assert journaled and journaled[0].payload["program"] == "sh" and journaled[0].step == "work"
        assert journaled[0].payload["started"] is not None
        supervisor = supervisor_of(proc.pid)
        if sig == signal.SIGHUP:  # a supervisor ignores hang-ups (it has no terminal): kill it for real
            supervisor.send_signal(sig)
            assert supervisor.is_running() and pid_alive(sleep_pid)
            sig = signal.SIGKILL
        supervisor.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "stopped before the incident ended" in err, err
        # The reaper stops the whole group: the shell and the sleep it left in the background.
        wait_for(lambda pid=sleep_pid: not pid_alive(pid), timeout=10)
        wait_for(lambda pid=journaled[0].payload["pid"]: not pid_alive(pid), timeout=10)
        # Nothing is left: the retry runs at once, and once.
        flag.touch()
        r = runbook(rb_home, "resume", incident, "--headless", "--yes", "--retry-interrupted")
        assert r.returncode == 0, r.stderr
        flag.unlink()
        assert runs.read_text().count("end") == runs.read_text().count("start") - 1 - sig_index
        assert runbook(rb_home, "verify", incident).returncode == 0


def test_a_killed_client_changes_nothing(rb_home: Path, tmp_path: Path) -> None:
    """SIGKILL, SIGHUP (the SSH connection dropped) or SIGTERM of the client: the step runs on, once."""
    runs = tmp_path / "runs"
    pb = write_playbook(
        tmp_path / "pbs",
        f"""
id: ontheside
title: On the side
tier: maintenance
steps:
  - id: work
    shell: [sh, -c, 'echo "start $$" >> "$0"; sleep 1.5; echo "end $$" >> "$0"; echo finished', "{runs}"]
    effect: mutating
  - id: after
    shell: [echo, after]
    effect: read-only
""",
    )
    for n, sig in enumerate((signal.SIGKILL, signal.SIGHUP, signal.SIGTERM), 1):
        # The client leads its own session, as a login shell's job does: the signal goes to the whole
        # process group, as a terminal hang-up would send it.
        proc = subprocess.Popen([sys.executable, "-m", "runbook", "run", str(pb), "--headless", "--yes"],
                                env=cli_env(rb_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=rb_home.parent, start_new_session=True)
        assert proc.stdout is not None
        incident = proc.stdout.readline().split()[1]
        wait_for(lambda n=n: runs.exists() and runs.read_text().count("start") == n)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=10)
        r = runbook(rb_home, "attach", incident, "--headless")
        assert r.returncode == 0, r.stderr
        # What happened before the attach, then the rest, live: the step's end and the incident's.
        assert "▶ work" in r.stdout and "✓ work" in r.stdout and "incident completed" in r.stdout
        assert runs.read_text().count("start") == n and runs.read_text().count("end") == n
        st = S.fold(incident, events(rb_home, incident))
        assert st.status == "completed" and st.steps["work"].attempts == 1
        assert runbook(rb_home, "verify", incident).returncode == 0


def _reaper_of(proc_pid: int) -> psutil.Process:
    kids = [c for c in psutil.Process(proc_pid).children() if "-I" in c.cmdline() and "-S" in c.cmdline()]
    assert len(kids) == 1, [c.cmdline()[:3] for c in psutil.Process(proc_pid).children()]
    return kids[0]


def test_a_step_still_running_is_never_retried_beside_itself(rb_home: Path, tmp_path: Path) -> None:
    pb, flag, runs, sleeper = _playbook(tmp_path)
    proc, incident, sleep_pid = _started_step(rb_home, pb, sleeper)
    # The worst case: the reaper dies too (say the OOM killer took both), and the step goes on.
    _reaper_of(supervisor_of(proc.pid).pid).kill()
    kill_run(proc)
    assert pid_alive(sleep_pid)

    flag.touch()  # a retry, if one ran, would finish at once and leave its "start" line
    r = runbook(rb_home, "resume", incident, "--headless", "--yes", "--retry-interrupted")
    assert r.returncode == 3, r.stderr
    assert "still running" in r.stderr and "--stop-interrupted" in r.stderr and "never run twice" in r.stderr
    assert "Traceback" not in r.stderr
    assert runs.read_text().count("start") == 1 and pid_alive(sleep_pid)

    r = runbook(rb_home, "resume", incident, "--headless", "--yes", "--stop-interrupted", "--retry-interrupted")
    assert r.returncode == 0, r.stderr
    assert not pid_alive(sleep_pid)
    assert runs.read_text().count("start") == 2
    evs = events(rb_home, incident)
    # In this order: the leftovers stopped (and found gone), then the retry chosen, then it started.
    order = [(e.type, e.payload.get("choice") or e.payload.get("attempt")) for e in evs
             if e.type in ("interrupted_resolved", "step_started")]
    assert order == [("step_started", 1), ("interrupted_resolved", "terminate"), ("interrupted_resolved", "retry"),
                     ("step_started", 2)]
    assert "sh, pid" in next(e.payload["reason"] for e in evs if e.type == "interrupted_resolved")
    st = S.fold(incident, evs)
    assert st.status == "completed" and st.steps["work"].attempts == 2
    assert runbook(rb_home, "verify", incident).returncode == 0


def test_a_reused_pid_is_not_mistaken_for_the_step() -> None:
    """A record whose pid now belongs to another process (different start time) is not a leftover."""
    from runbook.core.procs import start_time, still_running

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = {"pid": child.pid, "pgid": child.pid, "program": "sleep", "started": start_time(child.pid)}
        assert [r["alive"] for r in still_running([record])] == [[child.pid]]  # started when recorded
        older = {**record, "started": record["started"] - 3600}
        assert still_running([older]) == []  # the same pid, but not the process the step started
    finally:
        child.kill()
        child.wait()
    assert still_running([record]) == []


def test_ctrl_c_detaches_and_cancelling_is_a_separate_choice(rb_home: Path, tmp_path: Path) -> None:
    pb, flag, runs, sleeper = _playbook(tmp_path)
    proc, incident, sleep_pid = _started_step(rb_home, pb, sleeper)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"Detached from incident {incident}" in err and f"runbook attach {incident}" in err
    assert "Traceback" not in err and pid_alive(sleep_pid)  # the step goes on

    r = runbook(rb_home, "attach", incident, "--cancel", "wrok")
    assert r.returncode == 2 and "Nothing was stopped" in r.stderr and "'work' is running" in r.stderr
    assert pid_alive(sleep_pid)
    r = runbook(rb_home, "attach", incident, "--cancel", "work")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not pid_alive(sleep_pid), timeout=10)
    # Journaled as a failure by the operator; the step's on_failure (stop, by default) decides the rest.
    wait_for(lambda: any(e.type == "incident_closed" for e in events(rb_home, incident)))
    failed = [e.payload["error"] for e in events(rb_home, incident) if e.type == "step_failed"]
    assert failed == ["it was stopped by the operator."]
    assert runs.read_text().count("start") == 1


def test_a_closed_stdout_never_stops_the_run(rb_home: Path, tmp_path: Path) -> None:
    """`runbook run … --headless | head -1`: the reader leaves after the first line; the run completes."""
    pb, flag, runs, sleeper = _playbook(tmp_path)
    flag.touch()
    proc = start(rb_home, "run", str(pb), "--headless", "--yes")
    assert proc.stdout is not None
    incident = proc.stdout.readline().split()[1]
    proc.stdout.close()  # like `head -1` exiting
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    st = S.fold(incident, events(rb_home, incident))
    assert st.status == "completed" and runs.read_text().count("end") == 1


def test_take_over_never_runs_a_second_copy_beside_the_first(rb_home: Path, tmp_path: Path) -> None:
    """Operator A's step runs; B takes over: B drives the same run (no retry, no second copy), A is told at once."""
    pb, flag, runs, sleeper = _playbook(tmp_path)
    proc, incident, sleep_pid = _started_step(rb_home, pb, sleeper)
    b = start(rb_home, "resume", incident, "--headless", "--yes", "--take-over", "--retry-interrupted")
    wait_for(lambda: any(e.type == "take_over" for e in events(rb_home, incident)))
    _, err = proc.communicate(timeout=1.0)  # told within a second, not at its next write
    assert proc.returncode == 1 and "taken over by" in err
    assert runs.read_text().count("start") == 1 and pid_alive(sleep_pid)
    psutil.Process(sleep_pid).kill()  # the step's work ends; its shell writes "end"
    out, err = b.communicate(timeout=30)
    assert b.returncode == 0, err
    assert "incident completed" in out
    assert runs.read_text().count("start") == 1 and runs.read_text().count("end") == 1
    evs = events(rb_home, incident)
    assert [e.payload["from_pid"] for e in evs if e.type == "take_over"] == [proc.pid]
    order = [(e.type, e.payload.get("attempt")) for e in evs if e.type in ("step_started", "step_finished")]
    assert order == [("step_started", 1), ("step_finished", None)]
    assert runbook(rb_home, "verify", incident).returncode == 0
