"""SIGKILL a headless drill while its Slack messages are queued; a new process delivers them once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from runbook.journal.store import Journal
from runbook.sandbox.slack import SlackServer
from tests.conftest import cli_env, kill_run, write_playbook
from tests.notify.conftest import TOKEN, TOKEN_ENV, assert_delivered_once, posts, wait_until

DRIVER = Path(__file__).with_name("driver.py")

PLAYBOOK = """
id: killme
title: Kill me mid-drill
tier: component
rto: 10m
steps:
  - id: first
    title: First
    shell: [echo, one]
    effect: read-only
    notify: true
  - id: wipe
    title: Wipe the cache
    shell: [echo, wiping, cache]
    effect: destructive
    confirm: {typed: cache}
  - id: second
    shell: [echo, two]
    effect: read-only
    notify: true
  - id: long
    shell: [sleep, "4"]
    effect: read-only
  - id: never
    shell: [echo, never]
    effect: read-only
    notify: true
"""


def _config(tmp_path: Path, server: SlackServer) -> Path:
    cfg = tmp_path / "runbook.toml"
    cfg.write_text(
        f"""
[environments.sandbox.slack]
channel = "#incidents"
token_env = "{TOKEN_ENV}"
base_url = "{server.url}"
retry_cap = 0.3
flush_seconds = 1
"""
    )
    return cfg


def _queued(home: Path) -> list[dict]:
    j = Journal(home / "journal.sqlite3")
    try:
        return [e.payload for e in j.events_of_type("notification_queued")]
    finally:
        j.close()


def _started_long(home: Path) -> bool:
    j = Journal(home / "journal.sqlite3")
    try:
        return any(e.step == "long" for e in j.events_of_type("step_started"))
    finally:
        j.close()


def test_kill_9_with_queued_messages_then_resume_delivers_all_once(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(tmp_path / "pbs", PLAYBOOK)
    with SlackServer(state_dir=tmp_path / "slack", tokens={"bot": TOKEN}) as server:
        server.set_fault("down")
        cfg = _config(tmp_path, server)
        env = cli_env(rb_home, **{TOKEN_ENV: TOKEN})
        proc = subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "--config",
                str(cfg),
                "run",
                str(pb),
                "--headless",
                "--mode",
                "drill",
                "--confirm",
                "wipe=cache",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            first = proc.stdout.readline() if proc.stdout else ""
            assert first.startswith("incident: "), first + (proc.stderr.read() if proc.stderr else "")
            incident = first.split()[1]
            wait_until(lambda: _started_long(rb_home), timeout=20)
            wait_until(lambda: len(_queued(rb_home)) >= 5, timeout=10)
            wait_until(lambda: server.stats()["requests"] > 0, timeout=3)  # it tried; Slack was down
        finally:
            kill_run(proc, signal.SIGKILL)  # the supervisor (the engine and its outbox) and the client
        queued_before = _queued(rb_home)
        assert posts(server) == []
        assert {q["kind"] for q in queued_before} >= {"parent", "reply", "update"}

        server.clear_faults()
        # `runbook resume` in a new process (with the cli.py wiring): the dead run's messages go
        # out first, then the resumed run's own, and at exit the outbox reports.
        out = subprocess.run(
            [
                sys.executable,
                str(DRIVER),
                "--config",
                str(cfg),
                "resume",
                incident,
                "--headless",
                "--skip",
                "--reason",
                "killed in test",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        assert "slack: all sent" in out.stderr, out.stdout + out.stderr

        j = Journal(rb_home / "journal.sqlite3")
        try:
            assert_delivered_once(server, j, incident)
            assert j.verify(incident)[1] is None
        finally:
            j.close()
        delivered = len(posts(server))
        texts = [p["text"] for p in posts(server)]
        assert any("skipped by" in t and "killed in test" in t for t in texts)  # the resumed run's own
        assert any("`never`" in t for t in texts) and "Incident completed" in texts[-1]
        assert all(t.startswith("[DRILL]") for t in texts)
        assert any("typed “cache”" in t for t in texts)

        # Another process finds nothing left: nothing is ever sent twice.
        again = subprocess.run(
            [sys.executable, str(DRIVER), "deliver", str(cfg)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert "queued 0" in again.stdout and len(posts(server)) == delivered
        assert TOKEN not in json.dumps(_queued(rb_home))


def test_headless_cli_run_flushes_at_exit(rb_home: Path, tmp_path: Path) -> None:
    pb = write_playbook(tmp_path / "pbs", PLAYBOOK.replace('shell: [sleep, "4"]', "shell: [echo, quick]"))
    with SlackServer(state_dir=tmp_path / "slack", tokens={"bot": TOKEN}) as server:
        cfg = _config(tmp_path, server)
        env = cli_env(rb_home, **{TOKEN_ENV: TOKEN})
        r = subprocess.run(
            [
                sys.executable,
                str(DRIVER),
                "--config",
                str(cfg),
                "run",
                str(pb),
                "--headless",
                "--mode",
                "drill",
                "--confirm",
                "wipe=cache",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        assert "slack: all sent" in r.stderr
        incident = r.stdout.split()[1]
        j = Journal(rb_home / "journal.sqlite3")
        try:
            assert_delivered_once(server, j, incident)
        finally:
            j.close()
