"""A journal edited behind runbook's back is never acted on."""

from __future__ import annotations

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
