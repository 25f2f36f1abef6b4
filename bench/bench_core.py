"""Foundation benchmarks: `runbook list` start-up, durable journal appends, engine overhead per step.

Every figure is compared with a baseline measured in the same run, never with a fixed time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_of, print_rows, row  # noqa: E402


def bench_list_startup() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, RUNBOOK_HOME=home, NO_COLOR="1")
        bare = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env, check=True), 7)
        ours = best_of(
            lambda: subprocess.run([sys.executable, "-m", "runbook", "list"], env=env, check=True, capture_output=True),
            7,
        )
    over = ours - bare
    return row(
        "`runbook list` start-up over bare Python",
        f"+{over * 1000:.0f} ms",
        "≤ +250 ms",
        ours / bare,
        over <= 0.25,
        f"python -c pass {bare * 1000:.0f} ms",
    )


def bench_journal(n: int = 2000) -> dict[str, Any]:
    from runbook.journal.store import Journal

    with tempfile.TemporaryDirectory() as d:
        raw_path = Path(d) / "raw.log"
        fd = os.open(raw_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        payload = b'{"type":"step_finished","step":"s","payload":{"outputs":{}}}\n'
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, payload)
            os.fsync(fd)
        raw_rate = n / (time.perf_counter() - t0)
        os.close(fd)
        j = Journal(Path(d) / "j.sqlite3")
        j.append("inc", "incident_opened", {})
        t0 = time.perf_counter()
        for i in range(n):
            j.append("inc", "step_finished", {"outputs": {"i": i}}, step="s")
        rate = n / (time.perf_counter() - t0)
        assert j.verify("inc")[1] is None
        j.close()
    ratio = rate / raw_rate
    return row(
        "durable journal appends (hash chain, fsync'd)",
        f"{rate:,.0f}/s",
        "≥ 0.5× raw write+fsync",
        ratio,
        ratio >= 0.5,
        f"raw {raw_rate:,.0f}/s",
    )


def bench_engine(steps: int = 500) -> dict[str, Any]:
    from runbook.core.environment import Environment
    from runbook.engine.frontend import Choice, Decision
    from runbook.engine.runner import Engine
    from runbook.journal.store import Journal
    from runbook.playbook.validate import load

    class Quiet:
        def emit(self, event: Any) -> None:
            pass

        def decide(self, request: Any) -> Decision:
            return Decision(Choice.RUN)

    with tempfile.TemporaryDirectory() as d:
        true = "/bin/true" if os.path.exists("/bin/true") else "true"
        t0 = time.perf_counter()
        for _ in range(steps):
            subprocess.run([true], check=True)
        direct = time.perf_counter() - t0
        body = "".join(f"  - id: s{i}\n    shell: [{true}]\n    effect: read-only\n" for i in range(steps))
        pb = Path(d) / "bench.yaml"
        pb.write_text(f"id: bench\ntitle: Bench\ntier: maintenance\nsteps:\n{body}")
        journal = Journal(Path(d) / "j.sqlite3")
        engine = Engine(journal, Quiet(), home=Path(d), environment=Environment("bench"))
        engine.open(load(pb), {})
        t0 = time.perf_counter()
        outcome = engine.run()
        ours = time.perf_counter() - t0
        assert outcome.status == "completed", outcome
    per_step = (ours - direct) / steps
    return row(
        "engine overhead per step (500 × `true`)",
        f"{per_step * 1000:.2f} ms",
        "≤ 2 ms/step",
        ours / direct,
        per_step <= 0.002,
        f"direct {direct / steps * 1000:.2f} ms/process",
    )


def run() -> list[dict[str, Any]]:
    return [bench_list_startup(), bench_journal(), bench_engine()]


if __name__ == "__main__":
    print_rows(run())
