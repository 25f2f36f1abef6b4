"""Notification and export benchmarks.

* Export of a synthetic 100,000-event incident as JSON, Markdown and HTML (target ≤ 2 s each).
* Enqueue cost of one notification on the operator's path (target ≤ 1 ms), against a bare
  durable journal append measured in the same run (the enqueue is one append plus a queue push).

Run ``python bench/bench_notify_export.py`` for a table; ``run()`` returns the rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_rows, row  # noqa: E402

EVENTS = 100_000

_PLAYBOOK = """id: synthetic
title: Synthetic restore
tier: data-loss
level: 2
rto: 1h
rpo: 15m
steps:
{steps}
"""


def make_incident(
    journal_path: Path, incident: str = "20250101-000000-beef", events: int = EVENTS, steps: int = 40
) -> str:
    """Write a synthetic incident of ``events`` events with a valid hash chain, in one transaction.

    A real engine appends one fsync'd event at a time (~0.1 ms each); a bulk insert keeps the
    benchmark's set-up short while producing exactly what the journal would hold.
    """
    from runbook.journal.store import GENESIS, Journal, canonical, chain_hash

    Journal(journal_path).close()  # schema and permissions
    db = sqlite3.connect(journal_path)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    prev = GENESIS
    rows = []
    step_ids = [f"step_{i:02d}" for i in range(steps)]
    text = _PLAYBOOK.format(
        steps="\n".join(
            f"  - id: {s}\n    title: Step {s}\n    shell: [echo, {s}]\n    notify: {str(i % 5 == 0).lower()}"
            for i, s in enumerate(step_ids)
        )
    )
    actor = "oncall@host"

    def add(n: int, type_: str, payload: dict[str, Any], step: str | None = None) -> None:
        nonlocal prev
        ts = (start + timedelta(milliseconds=37 * n)).isoformat(timespec="microseconds")
        body = canonical(payload)
        digest = chain_hash(incident, n, ts, actor, step, type_, body, prev)
        rows.append((incident, n, ts, actor, step, type_, body, prev, digest))
        prev = digest

    add(
        0,
        "incident_opened",
        {
            "playbook": "synthetic",
            "playbook_text": text,
            "title": "Synthetic restore",
            "tier": "data-loss",
            "level": 2,
            "env": "sandbox",
            "mode": "drill",
            "rto": 3600.0,
            "rpo": 900.0,
        },
    )
    add(1, "param_bound", {"name": "dataset", "value": "orders"})
    add(2, "param_bound", {"name": "api_key", "secret": True, "provided": True})
    n = 3
    per_step = max(4, (events - 5) // steps)
    for s in step_ids:
        add(
            n,
            "step_started",
            {"attempt": 1, "action": f"echo {s}", "effect": "mutating", "target": "echo", "log": f"/logs/{s}.1.log"},
            s,
        )
        n += 1
        add(
            n,
            "confirmation_given",
            {
                "level": "typed",
                "typed": "orders",
                "action": f"echo {s}",
                "target": "orders",
                "effect": "destructive",
                "how": "operator",
            },
            s,
        )
        n += 1
        for k in range(per_step - 3):
            if n >= events - 2:
                break
            if k % 3 == 0:
                add(n, "note", {"text": f"progress {k} on {s}: copied {k * 1000} rows | ok"}, None)
            elif k % 3 == 1:
                add(
                    n,
                    "notification_queued",
                    {
                        "id": f"{incident}#{n}",
                        "channel": "#incidents",
                        "kind": "reply",
                        "via": "api",
                        "text": f"[DRILL] {s} progress {k}",
                        "blocks": None,
                        "thread": f"{incident}#parent",
                        "update_of": None,
                    },
                    s,
                )
            else:
                add(
                    n,
                    "notification_sent",
                    {"id": f"{incident}#{n - 1}", "channel": "C0INCIDENTS", "ts": f"1735689600.{n:06d}", "attempts": 1},
                    None,
                )
            n += 1
        if n >= events - 2:
            break
        add(
            n,
            "step_finished",
            {"outputs": {"last_line": "done"}, "duration": 1.5, "log_sha256": "0" * 64, "lines": 3},
            s,
        )
        n += 1
    while n < events - 1:
        add(n, "note", {"text": f"filler {n}"})
        n += 1
    add(n, "incident_closed", {"status": "completed", "elapsed": 3000.0, "rto_target": 3600.0, "rto_met": True})
    with db:
        db.executemany(
            "INSERT INTO events (incident, n, ts, actor, step, type, payload, prev, hash) VALUES (?,?,?,?,?,?,?,?,?)",
            rows,
        )
    db.close()
    return incident


def bench_exports(events: int = EVENTS) -> list[dict[str, Any]]:
    from runbook.journal.store import Journal
    from runbook.reports.exports import export_incident, verify_export

    out = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "journal.sqlite3"
        incident = make_incident(path, events=events)
        journal = Journal(path)
        t0 = time.perf_counter()
        count = sum(1 for _ in journal.iter_events(incident))
        read = time.perf_counter() - t0
        assert count == events, count
        for fmt in ("json", "md", "html"):
            t0 = time.perf_counter()
            text = export_incident(journal, incident, fmt)
            took = time.perf_counter() - t0
            if fmt == "json":
                assert verify_export(json.loads(text))[1] is None
            out.append(
                row(
                    f"export {events:,}-event incident as {fmt}",
                    f"{took:.2f} s",
                    "≤ 2 s",
                    took / read if read else None,
                    took <= 2.0,
                    f"reading the events {read:.2f} s; {len(text) / 1e6:.1f} MB",
                )
            )
        journal.close()
    return out


def bench_enqueue(n: int = 1000) -> dict[str, Any]:
    from runbook.journal.store import Journal
    from runbook.notify.outbox import Outbox
    from runbook.notify.settings import SlackSettings

    with tempfile.TemporaryDirectory() as d:
        journal = Journal(Path(d) / "journal.sqlite3")
        inc = "20250101-000000-cafe"
        journal.append(
            inc, "incident_opened", {"playbook": "p", "title": "T", "mode": "live", "env": "prod", "playbook_text": ""}
        )
        payload = {
            "id": "x",
            "channel": "#incidents",
            "kind": "message",
            "via": "api",
            "text": "bench message " * 4,
            "blocks": None,
            "thread": None,
            "update_of": None,
        }
        base = []
        for _ in range(n):
            t0 = time.perf_counter()
            journal.append(inc, "note", payload)
            base.append(time.perf_counter() - t0)
        # Slack unreachable (nothing listens on port 9): the sender backs off and the queue grows,
        # the worst case for the operator's path.
        os.environ["RUNBOOK_BENCH_SLACK_TOKEN"] = "xoxb-bench-000000000000"
        settings = SlackSettings(
            channel="#incidents",
            token_env="RUNBOOK_BENCH_SLACK_TOKEN",
            base_url="http://127.0.0.1:9/api/",
            retry_cap=5.0,
        )
        outbox = Outbox(journal, settings).start()
        journal.subscribe(outbox.on_event)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            outbox.enqueue_message(inc, f"bench message {i}")
            times.append(time.perf_counter() - t0)
        waiting = outbox.waiting()
        outbox.close()
        journal.close()
    enq, bare = statistics.median(times), statistics.median(base)
    p99 = sorted(times)[int(len(times) * 0.99) - 1]
    assert waiting >= n
    return row(
        "notification enqueue on the operator's path",
        f"{enq * 1000:.3f} ms",
        "≤ 1 ms",
        enq / bare,
        enq <= 0.001,
        f"bare journal append {bare * 1000:.3f} ms; p99 {p99 * 1000:.3f} ms",
    )


def run() -> list[dict[str, Any]]:
    """All figures of this benchmark, as rows for bench/report.py."""
    return [*bench_exports(), bench_enqueue()]


if __name__ == "__main__":
    print_rows(run())
