"""The Slack outbox against the local Slack server, with real incidents run by the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook import notify
from runbook.core.environment import Environment
from runbook.core.errors import ActionError
from runbook.core.redact import scrub
from runbook.journal.store import Journal
from runbook.notify.messages import MAX_SECTION, MAX_TEXT, fit_message
from runbook.notify.settings import settings_from
from runbook.sandbox.slack import SlackServer
from runbook.stores.config import Config
from tests.notify.conftest import (
    SECRET,
    TOKEN,
    TOKEN_ENV,
    assert_delivered_once,
    drill_playbook,
    notification_events,
    posts,
    run_incident,
    slack_env,
    wait_until,
)


def test_slack_down_for_a_whole_drill_then_up_delivers_everything_once_in_order(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    slack.set_fault("down")
    env = slack_env(slack)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)

    queued, sent, failed = notification_events(journal, incident)
    assert sent == [] and failed, "nothing can be delivered while Slack is down"
    assert posts(slack) == []
    assert "waiting" in outbox.status() and "Slack unreachable" in outbox.status()
    kinds = [q["kind"] for q in queued]
    assert kinds[0] == "parent" and "reply" in kinds and "update" in kinds and "message" in kinds
    assert all(q["text"].startswith("[DRILL]") for q in queued)

    slack.clear_faults()
    assert outbox.flush(10) == "all sent"
    assert_delivered_once(slack, journal, incident)

    msgs = {m["ts"]: m for m in slack.messages()}
    parent = next(m for m in slack.messages() if m["thread_ts"] is None and m["channel_name"] == "incidents")
    assert parent["blocks"][0]["type"] == "header" and "[DRILL]" in parent["blocks"][0]["text"]["text"]
    # chat.update carried the final status (the playbook accepts flaky_check's failure: completed)
    assert parent["edited"] >= 1 and "completed" in parent["text"]
    fields = json.dumps(parent["blocks"][1])
    for want in ("data-loss", "level 2", "sandbox", "drill", "15m", incident):
        assert want in fields
    thread = [m["text"] for m in msgs.values() if m["thread_ts"] == parent["ts"]]
    joined = "\n".join(thread)
    assert "Find the latest backup" in joined and "Orders restored" in joined  # notify steps
    assert "confirmed by" in joined and "typed “orders”" in joined  # the destructive confirmation
    assert "skipped by the engine" in joined and "condition is false" in joined
    assert "Step Check replication (`flaky_check`) failed" in joined  # a final failure
    assert "RTO: achieved" in joined and "vs target 15m" in joined  # the close
    security = slack.messages("#security")
    assert len(security) == 1 and security[0]["text"].startswith("[DRILL] [" + incident)
    everything = json.dumps(slack.messages()) + json.dumps(journal.events_of_type("notification_queued"), default=str)
    assert SECRET not in everything and TOKEN not in everything


def test_a_429_storm_is_honoured(slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path) -> None:
    env = slack_env(slack)
    slack.set_fault("rate_limited", retry_after=1, count=3)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    assert outbox.flush(15) == "all sent"
    stats = slack.stats()
    assert stats["by_status"].get("429") == 3
    assert stats["within_retry_after"] == 0  # nothing sent while a Retry-After window was open
    assert_delivered_once(slack, journal, incident)
    _, _, failed = notification_events(journal, incident)
    assert any(f["error"] == "ratelimited" and f["retry_after"] == 1 for f in failed)


def test_5xx_backs_off_and_recovers(slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path) -> None:
    env = slack_env(slack)
    slack.set_fault("status_500", status=503, count=4)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    assert outbox.flush(10) == "all sent"
    assert_delivered_once(slack, journal, incident)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({"channel": "#no-such-channel"}, "channel_not_found"), ({"token_env": "RB_TEST_WRONG_TOKEN"}, "invalid_auth")],
)
def test_permanent_errors_show_a_clear_status_and_are_delivered_on_resume(
    slack: SlackServer,
    journal: Journal,
    attach_outbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict,
    error: str,
) -> None:
    monkeypatch.setenv("RB_TEST_WRONG_TOKEN", "xoxb-0000-wrong-token-value")
    env = slack_env(slack, **overrides)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    wait_until(lambda: outbox.status().startswith("failing since"))
    status = outbox.status()
    assert error in status and "waiting" in status, status
    _, sent, failed = notification_events(journal, incident)
    assert any(f["error"] == error and f["kind"] == "permanent" for f in failed)
    incidents_sent = [s for s in sent if s.get("ts") and s.get("channel") != "C0SECURITY"]
    assert incidents_sent == []  # nothing in the incident channel; nothing lost either
    assert "xoxb-0000-wrong-token-value" not in json.dumps([e.payload for e in journal.events(incident)])
    assert outbox.flush(0.3).endswith("delivered on resume")
    notify.detach(outbox)

    # Fixed configuration, new outbox (as a new process would): everything queued goes out once.
    fixed = attach_outbox(slack_env(slack))
    assert fixed.resume_pending() > 0
    assert fixed.flush(10) == "all sent"
    assert_delivered_once(slack, journal, incident)
    # And a third attach finds nothing left to send.
    notify.detach(fixed)
    again = attach_outbox(slack_env(slack))
    assert again.resume_pending() == 0


def test_missing_token_variable_is_a_clear_permanent_failure(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    outbox = attach_outbox(slack_env(slack))
    incident, _ = run_incident(journal, slack_env(slack), drill_playbook(tmp_path), outbox=outbox)
    wait_until(lambda: outbox.status().startswith("failing since"))
    assert f"{TOKEN_ENV} (token_env) is not set" in outbox.status()
    assert posts(slack) == []
    assert notification_events(journal, incident)[0]


def test_oversized_messages_are_split_to_fit_slack(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    pb = drill_playbook(
        tmp_path,
        """
id: bigmsg
title: Big message
tier: maintenance
steps:
  - id: gen
    shell: [sh, -c, 'yes "a long line of output from a chatty tool" | head -c 63000']
    effect: read-only
  - id: say
    run: notify.slack
    with:
      text: "{{ steps.gen.outputs.stdout }}"
""",
    )
    outbox = attach_outbox(slack_env(slack))
    incident, _ = run_incident(journal, slack_env(slack), pb, {}, mode="live", outbox=outbox)
    assert outbox.flush(10) == "all sent"
    assert_delivered_once(slack, journal, incident)
    parts = [m for m in slack.messages() if "(part " in m["text"]]
    assert len(parts) == 2 and all(len(m["text"]) <= MAX_TEXT for m in parts)
    assert parts[0]["thread_ts"] == parts[1]["thread_ts"] is not None
    for m in slack.messages():
        for b in m["blocks"] or []:
            if b["type"] == "section" and "text" in b:
                assert len(b["text"]["text"]) <= MAX_SECTION


def test_fit_message_truncates_beyond_five_parts_with_a_note() -> None:
    parts = fit_message("z" * 300_000, [{"type": "section", "text": {"type": "mrkdwn", "text": "z" * 300_000}}])
    assert len(parts) == 5 and all(len(t) <= MAX_TEXT for t, _ in parts)
    assert "more characters not sent" in parts[-1][0] and "journal" in parts[-1][0]
    assert len(parts[0][1]) == 1 and len(parts[0][1][0]["text"]["text"]) <= MAX_SECTION
    assert all(b is None for _, b in parts[1:])


def test_fit_message_limits() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 7000}}] + [{"type": "divider"}] * 60
    ((text, out),) = fit_message("short", blocks)
    assert len(out) == 50 and out[-1]["type"] == "context" and "more blocks" in out[-1]["elements"][0]["text"]
    assert out[0]["text"]["text"] == "y" * MAX_SECTION and len(out[2]["text"]["text"]) == 1000


def test_webhook_mode_says_it_cannot_thread_or_update(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_TEST_WEBHOOK", slack.webhook_url("incidents"))
    env = Environment(
        "sandbox",
        stores={"slack": {"webhook_url_env": "RB_TEST_WEBHOOK", "channel": "#incidents", "retry_cap": 0.2}},
        sandbox=True,
    )
    outbox = attach_outbox(env)
    assert outbox.settings.via == "webhook"
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    assert outbox.flush(10) == "all sent"
    queued, sent, _ = notification_events(journal, incident)
    assert {q["kind"] for q in queued} <= {"parent", "reply", "message"}  # no updates possible
    msgs = slack.messages()
    assert len(msgs) == len(queued) and all(m["via"] == "webhook" and m["thread_ts"] is None for m in msgs)
    assert "no thread and no status updates" in json.dumps(msgs[0]["blocks"])
    assert all(f"[{incident}]" in m["text"] for m in msgs[1:])
    assert slack.webhook_url("incidents") not in json.dumps([e.payload for e in journal.events(incident)])


def test_secret_in_step_output_never_reaches_slack(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    pb = drill_playbook(
        tmp_path,
        """
id: leaky
title: Leaky output
tier: security
params:
  api_key: {type: string, secret: true}
steps:
  - id: leak
    shell: [sh, -c, 'echo "token=$0 xoxp-1111111111-2222222222-abcdef"', '{{ params.api_key }}']
    effect: read-only
    notify: true
""",
    )
    outbox = attach_outbox(slack_env(slack))
    incident, _ = run_incident(journal, slack_env(slack), pb, outbox=outbox)
    assert outbox.flush(10) == "all sent"
    blob = json.dumps(slack.messages(), ensure_ascii=False)
    assert SECRET not in blob and "xoxp-1111111111" not in blob and TOKEN not in blob
    assert "••••••" in blob  # masked, not dropped


def test_scrub_patterns() -> None:
    text = (
        "password=hunter22 postgres://u:pw123@db/x Bearer auth: Authorization: Bearer abc.def.ghi "
        "xoxb-12345678-abc AKIAABCDEFGHIJKLMNOP"
    )
    out = scrub(text, ["topsecretvalue"])
    for bad in ("hunter22", "pw123", "abc.def.ghi", "xoxb-12345678", "AKIAABCDEFGHIJKLMNOP"):
        assert bad not in out
    assert scrub("nothing to see here") == "nothing to see here"


def test_notify_action_needs_slack_configured(journal: Journal, tmp_path: Path, rb_home: Path) -> None:
    from runbook.actions.registry import get_action
    from runbook.actions.spec import StepContext

    action = get_action("notify.slack")
    assert action is not None and action.effect.value == "mutating"
    ctx = StepContext("inc", "s", "live", Environment("prod"), tmp_path, log=lambda _line: None)
    with pytest.raises(ActionError, match="Slack is not configured"):
        action.run(ctx, action.Params.model_validate({"text": "hi"}))


def test_settings_resolution_prefers_the_environment_store(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config(notify={"slack": {"channel": "#global", "token_env": "A", "security_channel": "#sec"}})
    env = Environment("prod", stores={"slack": {"channel": "#prod-incidents"}})
    s = settings_from(cfg, env)
    assert s is not None and s.channel == "#prod-incidents" and s.token_env == "A" and s.security_channel == "#sec"
    assert settings_from(Config(), Environment("x")) is None
    assert settings_from(Config(notify={"slack": {"channel": "#c"}}), None) is None  # no token_env nor webhook
    assert notify.attach(Journal.__new__(Journal), Config(), Environment("x")) is None


def test_enqueue_never_blocks_on_a_slow_slack(slack: SlackServer, journal: Journal, attach_outbox) -> None:
    import time

    slack.set_fault("slow", delay=2.0)
    outbox = attach_outbox(slack_env(slack, timeout=5))
    inc = "20250101-000000-abcd"
    journal.append(
        inc, "incident_opened", {"playbook": "p", "title": "T", "mode": "live", "env": "sandbox", "playbook_text": ""}
    )
    t0 = time.perf_counter()
    for i in range(20):
        outbox.enqueue_message(inc, f"message {i}")
    assert time.perf_counter() - t0 < 0.5
    slack.clear_faults()
    assert outbox.flush(15) == "all sent"
    texts = [m["text"] for m in slack.messages() if m["thread_ts"]]
    assert texts == [f"message {i}" for i in range(20)]


def test_take_over_is_announced_and_the_parent_shows_the_new_operator(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    env = slack_env(slack)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    # What the engine journals when another operator takes the incident over.
    journal.append(incident, "take_over", {"from": "alice@host1", "from_pid": 4242, "since": "x"}, actor="bob@host2")
    assert outbox.flush(10) == "all sent"
    texts = [m["text"] for m in slack.messages()]
    assert any("taken over by bob@host2" in t and "alice@host1" in t for t in texts)
    parent = (
        slack.messages()[0]
        if slack.messages()[0]["thread_ts"] is None
        else next(m for m in slack.messages() if m["channel_name"] == "incidents" and m["thread_ts"] is None)
    )
    assert "bob@host2" in json.dumps(parent["blocks"])
    assert_delivered_once(slack, journal, incident)


def test_dry_run_posts_nothing(slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path) -> None:
    env = slack_env(slack)
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), mode="dry-run", outbox=outbox)
    assert outbox.flush(2) == "all sent"
    assert notification_events(journal, incident)[0] == [] and slack.messages() == []


def test_flush_leaves_undelivered_messages_for_resume(
    slack: SlackServer, journal: Journal, attach_outbox, tmp_path: Path
) -> None:
    env = slack_env(slack)
    slack.stop()  # connection refused for the whole run
    outbox = attach_outbox(env)
    incident, _ = run_incident(journal, env, drill_playbook(tmp_path), outbox=outbox)
    status = outbox.flush(0.5)
    queued = notification_events(journal, incident)[0]
    assert status.startswith(f"{outbox.waiting()} waiting") and status.endswith("delivered on resume"), status
    assert "connection refused" in status
    assert outbox.waiting() == len(queued) > 0
