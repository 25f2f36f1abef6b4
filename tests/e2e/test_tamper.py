"""A journal edited behind runbook's back is never acted on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import runbook, write_playbook


def test_a_tampered_incident_is_never_resumed(rb_home: Path, tmp_path: Path) -> None:
    """Someone edits the journaled playbook of a paused incident: resume refuses and runs nothing."""
    import sqlite3

    canary = tmp_path / "canary"
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: gated
title: Gated
tier: maintenance
steps:
  - id: gate
    shell: ["true"]
    effect: destructive
    confirm: {typed: gate}
""",
    )
    r = runbook(rb_home, "run", str(pb), "--headless")
    assert r.returncode == 3, r.stderr
    incident = r.stdout.split()[1]
    db = sqlite3.connect(rb_home / "journal.sqlite3")
    payload = db.execute("SELECT payload FROM events WHERE incident=? AND n=0", (incident,)).fetchone()[0]
    forged = payload.replace('shell: [\\"true\\"]', f'shell: [touch, \\"{canary}\\"]')
    assert forged != payload
    db.execute("UPDATE events SET payload=? WHERE incident=? AND n=0", (forged, incident))
    db.commit()
    db.close()
    r = runbook(rb_home, "resume", incident, "--headless", "--confirm", "gate=gate")
    assert r.returncode == 1 and "does not verify" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not canary.exists()


def test_a_secret_given_on_resume_is_masked_everywhere_after(rb_home: Path, tmp_path: Path) -> None:
    """The value arrives only at resume; a later step prints it: no sink may hold it, WAL included."""
    pb = write_playbook(
        tmp_path / "pbs",
        """
id: latesecret
title: Late secret
tier: security
params:
  token: {type: string, secret: true, required: true}
steps:
  - id: gate
    manual: true
  - id: use
    shell: [sh, -c, 'echo "token=$0"', "{{ params.token }}"]
    effect: read-only
""",
    )
    value = "R3sum3d-S3cret-Value-64"
    r = runbook(rb_home, "run", str(pb), "--headless", "-p", f"token={value}")
    assert r.returncode == 3, r.stderr
    incident = r.stdout.split()[1]
    # Held open, this reader keeps SQLite from folding the WAL back in and deleting it at exit.
    reader = sqlite3.connect(rb_home / "journal.sqlite3")
    reader.execute("SELECT count(*) FROM events").fetchone()
    # The second process learns the value only now, from the resume's command line.
    r = runbook(rb_home, "resume", incident, "--headless", "--confirm", "gate=done", "-p", f"token={value}")
    assert r.returncode == 0, r.stderr
    assert "token=••••••" in r.stdout
    sinks = [r.stdout.encode(), r.stderr.encode()]
    sinks += [f.read_bytes() for f in rb_home.rglob("*") if f.is_file()]
    assert any(f.name == "journal.sqlite3-wal" for f in rb_home.rglob("*")), "the WAL is part of what is read"
    reader.close()
    assert not [s for s in sinks if value.encode() in s]
