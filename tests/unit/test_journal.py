"""Journal: durable hash chain, tamper detection, locks, permissions."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.journal.store import Journal, LockedError, LostLockError


def filled(tmp_path: Path) -> tuple[Journal, Path]:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.append("inc", "incident_opened", {"playbook": "x", "title": "T"})
    for i in range(5):
        j.append("inc", "step_started", {"attempt": 1, "i": i}, step=f"s{i}")
        j.append("inc", "step_finished", {"outputs": {"n": i}}, step=f"s{i}")
    j.append("other", "incident_opened", {"playbook": "y"})
    return j, path


def test_chain_verifies(tmp_path: Path) -> None:
    j, _ = filled(tmp_path)
    count, bad, _ = j.verify("inc")
    assert (count, bad) == (11, None)
    assert [e.n for e in j.events("inc")] == list(range(11))


@pytest.mark.parametrize("column", ["payload", "ts", "actor", "type", "step"])
def test_editing_any_field_of_any_event_fails_verify_at_that_event(tmp_path: Path, column: str) -> None:
    j, path = filled(tmp_path)
    for target_n in (0, 4, 10):
        db = sqlite3.connect(path)
        (orig,) = db.execute(f"SELECT {column} FROM events WHERE incident='inc' AND n=?", (target_n,)).fetchone()
        changed = (orig or "x")[:-1] + ("Z" if not (orig or "x").endswith("Z") else "Y")
        db.execute(f"UPDATE events SET {column}=? WHERE incident='inc' AND n=?", (changed, target_n))
        db.commit()
        _, bad, reason = Journal(path).verify("inc")
        assert bad is not None and bad.n == target_n, (column, target_n, reason)
        db.execute(f"UPDATE events SET {column}=? WHERE incident='inc' AND n=?", (orig, target_n))
        db.commit()
        db.close()
    assert Journal(path).verify("inc")[1] is None


def test_every_byte_of_an_event_payload_is_covered(tmp_path: Path) -> None:
    j, path = filled(tmp_path)
    db = sqlite3.connect(path)
    (payload,) = db.execute("SELECT payload FROM events WHERE incident='inc' AND n=3").fetchone()
    for i in range(len(payload)):
        flipped = payload[:i] + chr(ord(payload[i]) ^ 1) + payload[i + 1 :]
        db.execute("UPDATE events SET payload=? WHERE incident='inc' AND n=3", (flipped,))
        db.commit()
        _, bad, _ = Journal(path).verify("inc")
        assert bad is not None and bad.n == 3, i
    db.execute("UPDATE events SET payload=? WHERE incident='inc' AND n=3", (payload,))
    db.commit()


def test_deleting_an_event_is_detected(tmp_path: Path) -> None:
    j, path = filled(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM events WHERE incident='inc' AND n=5")
    db.commit()
    _, bad, reason = Journal(path).verify("inc")
    assert bad is not None and bad.n == 6 and "missing" in reason


def test_cli_verify_names_the_bad_event(tmp_path: Path, rb_home: Path, rb) -> None:
    j = Journal(rb_home / "journal.sqlite3")
    for i in range(4):
        j.append("20260101-000000-abcd", "note" if i else "incident_opened", {"text": f"n{i}"})
    r = rb("verify", "20260101-000000-abcd")
    assert r.returncode == 0 and "intact: 4 events" in r.stdout
    db = sqlite3.connect(rb_home / "journal.sqlite3")
    db.execute('UPDATE events SET payload=\'{"text":"forged"}\' WHERE n=2')
    db.commit()
    r = rb("verify", "20260101-000000")  # a unique prefix works too
    assert r.returncode == 1
    assert "event 2 (note" in r.stderr and "does not match its hash" in r.stderr
    assert "Traceback" not in r.stderr


def test_files_are_private(tmp_path: Path) -> None:
    j, path = filled(tmp_path)
    for p in tmp_path.glob("j.sqlite3*"):
        assert p.stat().st_mode & 0o077 == 0, p


def test_an_existing_home_made_readable_by_all_is_tightened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runbook.core.paths import home
    from runbook.journal.logs import StepLog

    top = tmp_path / "home"
    (top / "logs").mkdir(parents=True)
    (top / "journal.sqlite3").touch()
    for p, mode in ((top, 0o755), (top / "logs", 0o755), (top / "journal.sqlite3", 0o644)):
        p.chmod(mode)
    monkeypatch.setenv("RUNBOOK_HOME", str(top))
    assert home() == top
    Journal(top / "journal.sqlite3").close()
    StepLog(top / "logs" / "s.log").close()
    # No reading or writing by others; entering stays (the sandbox lets `postgres` reach its data).
    assert [oct(p.stat().st_mode & 0o777) for p in (top, top / "logs", top / "journal.sqlite3")] == [
        "0o711", "0o711", "0o600"
    ]


def test_export_is_never_written_through_a_symlink(tmp_path: Path, rb_home: Path, rb) -> None:
    journal = Journal(rb_home / "journal.sqlite3")
    journal.append("20260101-000000", "incident_opened", {"playbook": "x", "title": "T"})
    journal.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "report.md"
    link.symlink_to(victim)
    r = rb("export", "20260101-000000", "--format", "md", "-o", str(link))
    assert r.returncode == 2 and "symbolic link" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert victim.read_text() == "keep me\n"
    r = rb("export", "20260101-000000", "--format", "md", "-o", str(tmp_path / "real.md"))
    assert r.returncode == 0 and (tmp_path / "real.md").stat().st_mode & 0o777 == 0o600


def test_lock_refuses_second_live_process_and_take_over_is_explicit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from runbook.journal.store import Journal; j=Journal(sys.argv[1]); j.acquire('inc'); "
            "print('locked', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        me = Journal(path)
        with pytest.raises(LockedError, match="take it over"):
            me.acquire("inc")
        previous = me.acquire("inc", take_over=True)
        assert previous is not None and previous.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_dead_pid_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from runbook.journal.store import Journal; Journal(sys.argv[1]).acquire('inc')",
            str(path),
        ],
        check=True,
    )
    me = Journal(path)
    previous = me.acquire("inc")  # the holder is dead: no refusal
    assert previous is not None and previous.pid != os.getpid() and not previous.alive()


def test_taken_over_writer_stops(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    a = Journal(path)
    a.acquire("inc")
    a.append("inc", "incident_opened", {})
    b = Journal(path)
    b.acquire("inc", take_over=True)
    with pytest.raises(LostLockError):
        a.append("inc", "note", {"text": "late"})
    b.append("inc", "take_over", {})
    assert b.verify("inc")[1] is None


def test_events_appended_together_survive_together_or_not_at_all(tmp_path: Path) -> None:
    """An incident's opening (incident_opened + every param_bound) is one transaction."""
    j = Journal(tmp_path / "j.sqlite3")
    j.append("inc-1", "incident_opened", {"playbook": "p"})
    with pytest.raises(Exception, match="not valid UTF-8"):
        j.append_many(
            "inc-1",
            [
                ("param_bound", {"name": "a", "value": "1"}, None),
                ("param_bound", {"name": "b", "value": "\udcff"}, None),
            ],
        )
    assert [e.type for e in j.events("inc-1")] == ["incident_opened"]  # the first of the pair was rolled back
    events = j.append_many("inc-1", [("param_bound", {"name": "a", "value": "1"}, None), ("step_started", {}, "s1")])
    assert [(e.n, e.type, e.step) for e in events] == [(1, "param_bound", None), (2, "step_started", "s1")]
    assert events[1].prev == events[0].hash and j.verify("inc-1")[1] is None
    assert [e.type for e in j.events("inc-1")] == ["incident_opened", "param_bound", "step_started"]


def test_a_non_durable_append_is_chained_and_leaves_later_appends_durable(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.append("inc", "incident_opened", {"a": 1})
    j.append_many("inc", [("process_started", {"pid": 1}, "s")], durable=False)
    assert j._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again for everything else
    j.append("inc", "note", {"text": "after"})
    other = Journal(tmp_path / "j.sqlite3")  # another connection sees it, in the chain
    assert [e.type for e in other.events("inc")] == ["incident_opened", "process_started", "note"]
    assert other.verify("inc")[1] is None


def test_a_damaged_journal_says_what_actually_helps(rb_home: Path, rb) -> None:
    """`runbook verify` cannot read a damaged file either: the sentence names the steps that work."""
    path = rb_home / "journal.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    r = rb("incidents")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "damaged" in r.stderr and ".recover" in r.stderr and f"{path}.damaged" in r.stderr, r.stderr
    assert "run `runbook verify`" not in r.stderr
