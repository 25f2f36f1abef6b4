"""SIGKILL a drill's recovery at 50 random points across several playbooks; resume each to the end.

Only kills that land after the incident opened count, and most must (see MIN_LANDED_SHARE).
After every kill: no acknowledged event is lost, the hash chain verifies, no step was re-run
without an explicit choice (every extra start of a step matches a journaled `retry` decision or an
automatic retry the playbook declares), and once resumed the data is exactly back.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from runbook.core import incident as S
from runbook.drills.drill import Drill
from runbook.journal.store import Journal
from runbook.playbook.validate import load
from tests.conftest import REPO

DRIVER = Path(__file__).with_name("drive.py")
CANDIDATES = [
    "storage-restore-tenant",
    "db-restore-full",
    "storage-restore-full",
    "db-restore-tables",
    "storage-restore-dataset",
    "dr-accidental-deletion",
]
PLAYBOOKS = [p for p in CANDIDATES if (REPO / "playbooks" / f"{p}.yaml").exists()]
TOTAL_KILLS = 50
MIN_LANDED_SHARE = 0.6


def driver(home: Path, sandbox: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, RUNBOOK_HOME=str(home), RUNBOOK_SANDBOX_DIR=str(sandbox), NO_COLOR="1")
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kills_for(playbook: str) -> int:
    share, extra = divmod(TOTAL_KILLS, len(PLAYBOOKS))
    return share + (1 if PLAYBOOKS.index(playbook) < extra else 0)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_random_kills_then_resume(playbook: str, rb_home: Path) -> None:
    loaded = load(REPO / "playbooks" / f"{playbook}.yaml")
    journal = Journal(rb_home / "journal.sqlite3")
    rng = random.Random(f"kill-{playbook}")
    with Drill(journal, loaded, home=rb_home, echo=lambda m: None) as drill:
        drill.prepare()
        try:
            # One undisturbed run to learn how long recovery takes.
            drill.break_sandbox()
            proc = driver(rb_home, drill.sandbox_dir, "run", playbook)
            assert proc.stdout is not None
            proc.stdout.readline()  # "incident: ID": printed once the incident is open
            t0 = time.monotonic()
            out, err = proc.communicate(timeout=300)
            recovery = time.monotonic() - t0  # from the opened incident to the end of the run
            assert proc.returncode == 0, out + err
            assert drill.check() == []
            landed = 0  # kills that hit an open incident: the only ones that test recovery
            for _ in range(kills_for(playbook)):
                drill.break_sandbox()
                known = set(journal.incidents())
                proc = driver(rb_home, drill.sandbox_dir, "run", playbook)
                # Most kills wait for the incident to open (a kill before proves nothing about
                # recovery); one in five lands during start-up, whenever it happens to.
                if rng.random() >= 0.2:
                    assert proc.stdout is not None
                    proc.stdout.readline()
                time.sleep(rng.uniform(0.0, recovery))
                proc.send_signal(signal.SIGKILL)
                out, _ = proc.communicate()
                acknowledged = {line.split()[1] for line in out.splitlines() if line.startswith("✓ ")}
                opened = [
                    i
                    for i in journal.incidents()
                    if i not in known and S.fold(i, journal.events(i)).playbook_id == playbook
                ]
                if opened:
                    landed += 1
                if not opened:
                    # Killed before the incident was even opened: nothing was journaled, start it again.
                    assert not acknowledged
                    r = driver(rb_home, drill.sandbox_dir, "run", playbook)
                    r.communicate(timeout=300)
                    opened = [
                        i
                        for i in journal.incidents()
                        if i not in known and S.fold(i, journal.events(i)).playbook_id == playbook
                    ]
                incident = opened[0]
                finished = {e.step for e in journal.events(incident) if e.type == "step_finished"}
                assert acknowledged <= finished
                assert journal.verify(incident)[1] is None
                for _attempt in range(5):
                    st = S.fold(incident, journal.events(incident))
                    if st.status == "completed":
                        break
                    retry = ["--retry"] if st.interrupted() else []
                    r = driver(rb_home, drill.sandbox_dir, "resume", incident, *retry)
                    out, err = r.communicate(timeout=300)
                    assert "Traceback" not in err, err
                st = S.fold(incident, journal.events(incident))
                assert st.status == "completed", (playbook, st.status, [e.type for e in journal.events(incident)][-8:])
                assert journal.verify(incident)[1] is None
                events = journal.events(incident)
                starts = Counter(e.step for e in events if e.type == "step_started")
                chosen = Counter(
                    e.step for e in events if e.type == "interrupted_resolved" and e.payload["choice"] == "retry"
                )
                automatic = Counter(e.step for e in events if e.type == "step_failed" and e.payload.get("will_retry"))
                for step, n in starts.items():
                    assert n == 1 + chosen[step] + automatic[step], (step, n, chosen[step], automatic[step])
                assert drill.check() == [], f"data not restored after a kill in {playbook}"
            # A kill before the incident opens proves nothing: most must land on a running recovery.
            assert landed >= MIN_LANDED_SHARE * kills_for(playbook), (playbook, landed, kills_for(playbook))
        finally:
            drill.teardown()
