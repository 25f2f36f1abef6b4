"""Detached execution benchmarks: attaching, and a decision's round trip through the supervisor.

* Attach: ``runbook attach ID`` (the real CLI entry, TUI, headless) to an incident running
  detached, until the first frame showing its live output has painted; against ``runbook``
  starting to its interactive home screen, in the same run, interleaved, each a fresh process.
* Decision round trip: from a front end answering "run this step" to that front end seeing the
  step's ``step_started`` event. In process (the engine calls the front end directly, as before
  detached execution) against through a supervisor (answer over the socket, the engine in another
  process, the event back over the socket); 60 steps each, interleaved runs; the p95 difference.

Run ``python bench/bench_attach.py`` for a table; ``run()`` returns the rows.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_tui import RUNBOOK_CHILD, _env, p95  # noqa: E402
from bench.common import print_rows, row  # noqa: E402

TICKER = (
    "id: ticker\ntitle: Ticks\ntier: maintenance\nnot_drillable: a benchmark\nsteps:\n"
    "  - id: tick\n    shell: [sh, -c, 'while true; do echo tick; sleep 0.05; done']\n    effect: read-only\n"
)

ATTACH_CHILD = """
import sys, time
import runbook.tui.app as tui_app
from runbook.tui.screens.run import RunScreen

seen = {}
original = RunScreen._flush

def flush(self):
    original(self)
    if "ready" not in seen and any(line.startswith("tick") for line in self.query_one("#output").lines):
        def ready():
            seen["ready"] = "%r %r" % (time.time(), time.process_time())
            self.app.exit()
        seen["ready"] = None
        self.call_after_refresh(ready)

RunScreen._flush = flush
tui_app._run = lambda app: app.run(headless=True)
sys.argv = ["runbook", "attach", sys.argv[1]]
import runbook.cli.incidents as incidents
incidents.sys.stdin.isatty = lambda: True
incidents.sys.stdout.isatty = lambda: True
from runbook.entry import main
try:
    main()
finally:
    sys.stderr.write("READY %s\\n" % seen.get("ready"))
"""


def bench_attach(repeat: int = 11) -> dict[str, Any]:
    """Wall time from spawning ``runbook attach`` to the first frame with live output."""
    with tempfile.TemporaryDirectory() as home:
        env = _env(home)
        pbs = Path(home) / "pbs"
        pbs.mkdir()
        (pbs / "ticker.yaml").write_text(TICKER)
        started = subprocess.run([sys.executable, "-m", "runbook", "run", str(pbs / "ticker.yaml"), "--headless",
                                  "--detach"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"could not start the incident: {started.stderr[-1000:]}")
        incident = started.stdout.split()[1]

        def child(*args: str) -> float:
            t0 = time.time()
            done = subprocess.run([sys.executable, "-c", *args], env=env, cwd=REPO, capture_output=True,
                                  text=True, timeout=60)
            line = next((ln for ln in done.stderr.splitlines() if ln.startswith("READY ")), "READY None")
            if line == "READY None":
                raise RuntimeError(f"child never became ready ({done.returncode}): {done.stderr[-2000:]}")
            return float(line.split()[1]) - t0

        try:
            child(ATTACH_CHILD, incident)
            child(RUNBOOK_CHILD)
            ours, plain = [], []
            for _ in range(repeat):  # interleaved
                plain.append(child(RUNBOOK_CHILD))
                ours.append(child(ATTACH_CHILD, incident))
        finally:
            subprocess.run([sys.executable, "-m", "runbook", "attach", incident, "--cancel", "tick"], env=env,
                           cwd=REPO, capture_output=True, timeout=60)
    a, b = statistics.median(ours), statistics.median(plain)
    return row("attach to a detached incident → first frame of its live output (TUI, fresh process)",
               f"{a * 1000:.0f} ms", "≤ 1.25× `runbook` start", a / b, a / b <= 1.25,
               f"`runbook` to its interactive home {b * 1000:.0f} ms (medians of {repeat} interleaved runs)")


# -- decision round trip -------------------------------------------------------------------------

STEPS = 60


class _Timing:
    """A front end that answers RUN at once and notes when each step's start comes back."""

    def __init__(self) -> None:
        self.answered: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.done = threading.Event()

    def emit(self, event: Any) -> None:
        from runbook.engine.frontend import Journaled

        if isinstance(event, Journaled) and event.event.type == "step_started" and event.event.step:
            self.started.setdefault(event.event.step, time.perf_counter())

    def decide(self, request: Any) -> Any:
        from runbook.engine.frontend import Choice, Decision

        self.answered.setdefault(request.step or "", time.perf_counter())
        return Decision(Choice.RUN)

    def trips(self) -> list[float]:
        return [self.started[s] - self.answered[s] for s in self.answered if s in self.started]


def _playbook(directory: Path) -> Path:
    steps = "".join(f"  - id: s{i}\n    shell: ['true']\n    effect: read-only\n" for i in range(STEPS))
    path = directory / "trips.yaml"
    path.write_text(f"id: trips\ntitle: Trips\ntier: maintenance\nnot_drillable: a benchmark\nsteps:\n{steps}")
    return path


def _in_process(home: Path, pb: Path) -> list[float]:
    from runbook.engine.runner import Engine
    from runbook.journal.store import Journal
    from runbook.playbook.validate import load
    from runbook.sandbox.environment import sandbox_environment

    timing = _Timing()
    journal = Journal(home / "journal.sqlite3")
    try:
        engine = Engine(journal, timing, home=home, environment=sandbox_environment())
        engine.open(load(pb), {})
        engine.run()
    finally:
        journal.close()
    return timing.trips()


def _supervised(home: Path, pb: Path) -> list[float]:
    from runbook.journal.store import Journal
    from runbook.supervisor.client import SupervisedEngine, start_supervisor

    timing = _Timing()
    journal = Journal(home / "journal.sqlite3")
    try:
        spec = {"action": "open", "playbook": str(pb), "params": {}, "env": "sandbox", "mode": "live"}
        incident = str(start_supervisor(spec, home, None)["incident"])
        client = SupervisedEngine(timing, journal, home)
        client.attach(incident, interactive=True)
        outcome = client.run()
        if outcome.status != "completed":
            raise RuntimeError(outcome.message)
    finally:
        journal.close()
    return timing.trips()


def bench_round_trip(rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["RUNBOOK_HOME"] = str(home)
        pb = _playbook(Path(tmp))
        local: list[float] = []
        remote: list[float] = []
        for _ in range(rounds):  # interleaved
            local += _in_process(home, pb)
            remote += _supervised(home, pb)
    added = p95(remote) - p95(local)
    return row("decision round trip (answer → step started, seen by the front end), p95 added by the supervisor",
               f"{added * 1000:.2f} ms", "≤ 5 ms", p95(remote) / p95(local), added <= 0.005,
               f"in process p95 {p95(local) * 1000:.2f} ms, through the supervisor p95 {p95(remote) * 1000:.2f} ms "
               f"({len(local)} and {len(remote)} steps)")


def run() -> list[dict[str, Any]]:
    return [bench_attach(), bench_round_trip()]


if __name__ == "__main__":
    print_rows(run())
    if "--json" in sys.argv:
        print(json.dumps(run()))
