"""Fixtures for notification tests: the local Slack server, an environment pointing at it, and
real incidents driven by the real engine with the headless front end."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runbook import notify
from runbook.actions.spec import Services
from runbook.core.environment import Environment
from runbook.engine.runner import Engine
from runbook.headless import HeadlessAnswers, HeadlessFrontend
from runbook.journal.store import Journal
from runbook.playbook.validate import load
from runbook.sandbox.slack import MESSAGES_FILE, SlackServer
from runbook.stores.config import Config
from tests.conftest import write_playbook

TOKEN = "xoxb-4242424242-4242424242424-notifytestsecret"
TOKEN_ENV = "RB_TEST_SLACK_TOKEN"
SECRET = "Sup3rS3cretParamValue"

DRILL_PLAYBOOK = """
id: drillme
title: Restore orders database
tier: data-loss
level: 2
rto: 15m
rpo: 1h
params:
  dataset: {type: identifier, default: orders}
  api_key: {type: string, secret: true}
steps:
  - id: find_backup
    title: Find the latest backup
    shell: [sh, -c, 'echo "using key $0"; echo backup-42', '{{ params.api_key }}']
    effect: read-only
    notify: true
  - id: drop_table
    title: Drop the broken table
    shell: [echo, dropping, '{{ params.dataset }}']
    effect: destructive
    confirm: {typed: '{{ params.dataset }}'}
  - id: only_prod
    shell: [echo, prod]
    effect: read-only
    when: "params.dataset == 'customers'"
  - id: restore
    title: Restore from backup
    shell: [echo, restored]
    notify: "Orders restored"
  - id: flaky_check
    title: Check replication
    shell: [sh, -c, 'echo lag too high; exit 4']
    effect: read-only
    on_failure: continue
  - id: tell_security
    run: notify.slack
    with: {text: "key {{ params.api_key }} used for a restore of {{ params.dataset }}", security: true}
"""


@pytest.fixture
def slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackServer]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with SlackServer(state_dir=tmp_path / "slack", tokens={"bot": TOKEN}) as server:
        yield server


def slack_env(server: SlackServer, **overrides: Any) -> Environment:
    settings = {
        "channel": "#incidents",
        "token_env": TOKEN_ENV,
        "base_url": server.url,
        "security_channel": "#security",
        "retry_cap": 0.2,
        "permanent_retry": 0.5,
        "flush_seconds": 5,
    }
    settings.update(overrides)
    return Environment(name="sandbox", stores={"slack": settings}, sandbox=True)


@pytest.fixture
def journal(rb_home: Path) -> Iterator[Journal]:
    j = Journal(rb_home / "journal.sqlite3")
    yield j
    j.close()


@pytest.fixture
def attach_outbox(journal: Journal) -> Iterator[Callable[..., notify.Outbox]]:
    made: list[notify.Outbox] = []

    def make(env: Environment, config: Config | None = None) -> notify.Outbox:
        outbox = notify.attach(journal, config or Config(), env)
        assert outbox is not None
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        notify.detach(outbox)


def run_incident(
    journal: Journal,
    env: Environment,
    pb: Path,
    params: dict[str, Any] | None = None,
    *,
    mode: str = "drill",
    outbox: notify.Outbox | None = None,
) -> tuple[str, Engine]:
    """Open and run an incident with the real engine, auto-confirming like a drill."""
    loaded = load(pb)
    assert loaded.ok, loaded.diagnostics
    frontend = HeadlessFrontend(HeadlessAnswers(auto=True, quiet_output=True), console=Console(file=io.StringIO()))
    engine = Engine(journal, frontend, home=journal.path.parent, environment=env, services=Services(messages=outbox))
    if outbox is not None:
        outbox.use_redactor(engine.redactor)
    st = engine.open(loaded, params if params is not None else {"api_key": SECRET}, mode=mode)
    engine.run()
    return st.id, engine


def drill_playbook(tmp_path: Path, text: str = DRILL_PLAYBOOK) -> Path:
    return write_playbook(tmp_path / "pbs", text)


def posts(server: SlackServer) -> list[dict[str, Any]]:
    """Every chat.postMessage / webhook post the server accepted, in order (updates excluded)."""
    assert server.state_dir is not None
    path = server.state_dir / MESSAGES_FILE
    if not path.exists():
        return []
    return [r for r in (json.loads(line) for line in path.read_text().splitlines()) if r["event"] == "post"]


def notification_events(
    journal: Journal, incident: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    evs = journal.events(incident)
    return (
        [e.payload for e in evs if e.type == "notification_queued"],
        [e.payload for e in evs if e.type == "notification_sent"],
        [e.payload for e in evs if e.type == "notification_failed"],
    )


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def assert_delivered_once(server: SlackServer, journal: Journal, incident: str) -> None:
    """Every queued notification was delivered exactly once, in queue order, threads right."""
    queued, sent, _ = notification_events(journal, incident)
    sent_ids = [s["id"] for s in sent]
    assert len(sent_ids) == len(set(sent_ids)), "a notification was journaled as sent twice"
    assert set(sent_ids) == {q["id"] for q in queued}, "a queued notification was never delivered"
    delivered = {s["id"]: s for s in sent if s.get("ts") and "updated" not in s}
    server_posts = posts(server)
    assert len(server_posts) == len(delivered), "Slack received a message twice (or one was lost)"
    by_ts = {p["ts"]: p for p in server_posts}
    parent = next(q for q in queued if q["kind"] == "parent")
    parent_ts = delivered[parent["id"]]["ts"]
    last_ts = {}
    for q in queued:
        if q["id"] not in delivered:
            continue
        post = by_ts[delivered[q["id"]]["ts"]]
        assert post["text"] == q["text"]
        if q["kind"] == "reply":
            assert post["thread_ts"] == parent_ts  # threaded under its incident's parent
        key = q["channel"]
        # In order per channel: Slack's ts grows with arrival.
        assert post["ts"] > last_ts.get(key, ""), "delivered out of order"
        last_ts[key] = post["ts"]
