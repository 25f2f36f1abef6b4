"""Markdown/HTML/JSON exports of real incidents: complete, verifiable, and without secrets."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from runbook.core.errors import UsageError
from runbook.journal.store import Journal
from runbook.reports.exports import export_incident, render_report, verify_export
from runbook.sandbox.slack import SlackServer
from tests.notify.conftest import SECRET, TOKEN, drill_playbook, run_incident, slack_env

STEPS = ("find_backup", "drop_table", "only_prod", "restore", "flaky_check", "tell_security")


@pytest.fixture
def drilled(slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path) -> str:
    env = slack_env(slack)
    outbox = attach_outbox(env)
    incident, engine = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    engine.journal.append(incident, "note", {"text": "DB team says <b>ok</b> | pipes & all"})
    journal.append(
        incident, "drill_result", {"playbook": "drillme", "rto_achieved": 12.5, "rpo_achieved": 30.0, "verified": True}
    )
    assert outbox.flush(10) == "all sent"
    return incident


def test_exports_round_trip_and_contain_every_step_and_confirmation(
    drilled: str, journal: Journal, slack: SlackServer
) -> None:
    doc = json.loads(export_incident(journal, drilled, "json"))
    assert verify_export(doc) == (len(doc["events"]), None)

    md = export_incident(journal, drilled, "md")
    html = export_incident(journal, drilled, "html")
    for text in (md, html):
        assert "Drill report" in text
        for step in STEPS:
            assert step in text
        assert "typed" in text and "'orders'" in text.replace("&#x27;", "'")  # what was typed for the destructive step
        assert "auto-confirmed (drill)" in text
        assert "condition is false" in text  # skip with its reason
        assert "RTO" in text and "15m00s" in text and "met" in text
        assert "RPO" in text and "30s" in text  # achieved, from the drill result
        assert "api_key" in text and "secret, never recorded" in text
        assert "sent" in text  # outbox delivery section
    confirmations = [e for e in journal.events(drilled) if e.type == "confirmation_given"]
    assert confirmations
    for c in confirmations:
        assert c.actor in md and c.step in md

    blobs = [md, html, json.dumps(doc, ensure_ascii=False), json.dumps(slack.messages(), ensure_ascii=False)]
    for blob in blobs:
        assert SECRET not in blob and TOKEN not in blob


def test_markdown_has_utc_and_local_times_and_durations(drilled: str, journal: Journal) -> None:
    md = render_report(journal, drilled, "md")
    assert "## Timeline" in md and "| UTC | local |" in md
    opened = journal.events(drilled)[0].ts
    assert opened[:19].replace("T", " ") in md
    assert re.search(r"\| 1 \| Find the latest backup \(`find_backup`\) \| done \| 1 \| \d", md)
    # A note with pipes and HTML stays one table-safe line, and its HTML is text, never markup
    # (a renderer shows the entities as the characters typed).
    assert "DB team says &lt;b&gt;ok&lt;/b&gt; \\| pipes &amp; all" in md
    assert "<b>" not in md


def test_html_is_self_contained_and_escaped(drilled: str, journal: Journal) -> None:
    html = render_report(journal, drilled, "html")
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and "<svg" in html
    assert "RTO 15m00s" in html  # the target line in the chart
    assert not re.search(r"""(?:src|href)\s*=""", html), "no external resources"
    assert "<script" not in html
    assert "<b>ok</b>" not in html and "&lt;b&gt;ok&lt;/b&gt;" in html


def test_live_incident_is_a_review_draft_and_unknown_format_is_refused(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    env = slack_env(slack)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), mode="live", outbox=attach_outbox(env))
    md = render_report(journal, incident, "md")
    assert md.startswith("# Incident review draft: Restore orders database")
    with pytest.raises(UsageError):
        render_report(journal, incident, "pdf")
    with pytest.raises(UsageError):
        render_report(journal, "nope", "md")


def test_big_synthetic_incident_exports_quickly(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.bench_notify_export import make_incident

    path = tmp_path / "j.sqlite3"
    incident = make_incident(path, events=5000, steps=10)
    j = Journal(path)
    try:
        assert j.verify(incident)[1] is None
        md = render_report(j, incident, "md")
        html = render_report(j, incident, "html")
        assert md.count("\n| ") > 3000 and html.count("<tr>") > 3000
        assert "step_09" in md and "step_09" in html
    finally:
        j.close()
