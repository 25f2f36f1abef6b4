"""Deterministic data for snapshots and screenshots: a playbook, a frozen clock, fixed ids.

Nothing in the engine is stubbed: the journal's clock and the incident-id generator are replaced
by fixed sequences so the screens show the same times and ids on every run.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runbook.core.events import EventType

RESTORE_PLAYBOOK = """\
id: restore-table
title: Restore a dropped table
tier: data-loss
not_drillable: a test playbook
level: 2
rto: 15m
rpo: 1h
description: Restore one table from the newest verified dump.
params:
  table:
    type: identifier
    required: true
    help: The table to restore.
  backup_dir:
    type: path
    default: /var/backups/db
    help: Where the dumps are.
  pause:
    type: string
    pattern: "[0-9]+"
    default: "0"
  token:
    type: string
    secret: true
    help: API token (never journaled).
steps:
  - id: freeze
    title: Freeze writes
    phase: First 15 minutes
    manual: true
    description: Put the application in **maintenance mode** so nothing writes to the table.
  - id: restore
    title: Restore the table
    phase: Recovery
    description: |
      Restores the table from the newest dump in the backup directory.
      Watch the row count in the output.
    shell: [sh, -c, "echo restoring $0; echo copied 1200 rows; sleep $1", "{{ params.table }}", "{{ params.pause }}"]
    effect: mutating
  - id: drop_stale
    title: Drop the stale copy
    phase: Recovery
    description: Drops the **stale** copy left by the failed migration.
    shell: [echo, dropping, "{{ params.table }}_stale"]
    effect: destructive
    confirm: {typed: "{{ params.table }}"}
  - id: verify
    title: Verify row counts
    phase: Verify
    shell: [echo, "row counts match"]
    effect: read-only
"""

CHECK_PLAYBOOK = """\
id: disk-check
title: Disk space check
tier: maintenance
not_drillable: a test playbook
rto: 30m
steps:
  - id: df
    title: Free space
    shell: [echo, "42% used"]
    effect: read-only
"""

FIXED_NOW = datetime(2025, 11, 23, 3, 12, 0, tzinfo=UTC)
START = datetime(2025, 11, 23, 3, 0, 0, tzinfo=UTC)
INCIDENT_ID = "20251123-030000-a1b2"
INTERRUPTED_ID = "20251123-024500-c3d4"


def write_playbooks(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "restore-table.yaml").write_text(RESTORE_PLAYBOOK)
    (directory / "disk-check.yaml").write_text(CHECK_PLAYBOOK)
    return directory


def freeze(monkeypatch: Any) -> None:
    """Journal times advance one second per event from 03:00:00Z; incident ids are fixed; a step's
    measured duration is journaled as 0 (a busy machine makes `echo` take 0.1s: "done in 0.1s").
    """
    import runbook.engine.opening as opening
    import runbook.journal.store as store
    import runbook.tui.screens.home_data as home_data

    counter = itertools.count()
    monkeypatch.setattr(
        store, "utc_now", lambda: (START + timedelta(seconds=next(counter))).isoformat(timespec="microseconds")
    )
    monkeypatch.setattr(opening, "new_incident_id", lambda: INCIDENT_ID)
    monkeypatch.setattr(home_data, "sandbox_status", lambda _ctx: "down")
    append_many = store.Journal.append_many

    def no_durations(self: Any, incident: str, items: list[Any], **kwargs: Any) -> Any:
        timed = (EventType.STEP_FINISHED, EventType.STEP_FAILED)
        items = [
            (t, {**p, "duration": 0.0} if t in timed and p and p.get("duration") is not None else p, step)
            for t, p, step in items
        ]
        return append_many(self, incident, items, **kwargs)

    monkeypatch.setattr(store.Journal, "append_many", no_durations)


def make_interrupted(journal: Any, playbook: Path) -> str:
    """An incident whose `restore` step started and never finished (as after a SIGKILL)."""
    text = playbook.read_text()
    inc = INTERRUPTED_ID
    journal.append(
        inc,
        EventType.INCIDENT_OPENED,
        {
            "playbook": "restore-table",
            "playbook_path": str(playbook),
            "playbook_text": text,
            "title": "Restore a dropped table",
            "tier": "data-loss",
            "level": 2,
            "env": "sandbox",
            "mode": "live",
            "rto": 900.0,
            "rpo": 3600.0,
            "started": "20251123_024500",
            "pid": 1,
        },
    )
    journal.append(inc, EventType.PARAM_BOUND, {"name": "table", "value": "orders"})
    journal.append(inc, EventType.PARAM_BOUND, {"name": "backup_dir", "value": "/var/backups/db"})
    journal.append(inc, EventType.PARAM_BOUND, {"name": "pause", "value": "0"})
    journal.append(inc, EventType.STEP_STARTED, {"attempt": 1, "action": "manual", "effect": "manual"}, step="freeze")
    journal.append(
        inc,
        EventType.STEP_FINISHED,
        {"manual": True, "note": "maintenance page up", "outputs": {}, "duration": None},
        step="freeze",
    )
    journal.append(inc, EventType.NOTE, {"text": "restore started from dump of 02:00"})
    journal.append(
        inc,
        EventType.STEP_STARTED,
        {"attempt": 1, "action": "sh -c 'echo restoring …' orders 0", "effect": "mutating", "target": "sh"},
        step="restore",
    )
    return inc


def supervise_in_process(monkeypatch: Any, ctx: Any) -> None:
    """Snapshots freeze the clock and ids in this process: run the incident's supervisor here too.

    The same supervisor code (engine, relay, socket server, the wire protocol) runs in a thread of
    the test process instead of a detached process, so the monkeypatched clock applies to it.
    """
    import threading

    import runbook.supervisor.client as client
    from runbook.cli.supervise import build, serve_until_done

    def start(spec: dict[str, Any], home: Path, config: str | None, actor: str | None = None) -> dict[str, Any]:
        engine, relay, server = build(ctx, spec)
        threading.Thread(target=serve_until_done, args=(ctx, engine, relay, server), kwargs={"detached": False},
                         daemon=True).start()
        return {"ok": True, "incident": engine.state.id}

    monkeypatch.setattr(client, "start_supervisor", start)

