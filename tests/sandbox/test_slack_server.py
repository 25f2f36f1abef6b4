"""The Slack stand-in, exercised through the real slack_sdk clients (no mocks)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from runbook.sandbox.slack import (
    MAX_TEXT,
    MESSAGES_FILE,
    SlackServer,
    read_messages,
    token_fingerprint,
    webhook_path,
)

TOKEN = "xoxb-test-1234567890-secretvalue"
OTHER_TOKEN = "xoxb-test-other-secretvalue"


@pytest.fixture
def server(tmp_path: Path):
    with SlackServer(state_dir=tmp_path / "state", tokens={"bot": TOKEN, "other": OTHER_TOKEN}) as srv:
        yield srv


@pytest.fixture
def client(server: SlackServer) -> WebClient:
    # No retry handlers unless a test asks: each call is then exactly one request.
    return WebClient(token=TOKEN, base_url=server.url, retry_handlers=[])


def _http(
    method: str, url: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _ts(value: str) -> tuple[int, int]:
    sec, frac = value.split(".")
    assert len(frac) == 6
    return int(sec), int(frac)


# ----------------------------------------------------------------- Web API


def test_auth_test_ok_invalid_auth_and_not_authed(server: SlackServer, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True and resp["user_id"] and resp["team_id"]

    with pytest.raises(SlackApiError) as bad:
        WebClient(token="xoxb-wrong", base_url=server.url, retry_handlers=[]).auth_test()
    assert bad.value.response["error"] == "invalid_auth"
    assert bad.value.response.status_code == 200  # Slack reports auth errors in the body

    with pytest.raises(SlackApiError) as none:
        WebClient(base_url=server.url, retry_handlers=[]).auth_test()
    assert none.value.response["error"] == "not_authed"


def test_post_message_blocks_and_thread_replies_recorded_in_order(
    server: SlackServer, client: WebClient
) -> None:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "INC-1"}}, {"type": "divider"}]
    parent = client.chat_postMessage(channel="#incidents", text="INC-1 opened", blocks=blocks)
    assert parent["channel"] == "C0INCIDENTS"
    assert parent["message"]["ts"] == parent["ts"]
    assert parent["message"]["blocks"] == blocks
    reply1 = client.chat_postMessage(channel="C0INCIDENTS", text="step 1 done", thread_ts=parent["ts"])
    # A reply to a reply joins the root's thread, as in Slack.
    reply2 = client.chat_postMessage(channel="incidents", text="step 2 done", thread_ts=reply1["ts"])
    assert reply1["message"]["thread_ts"] == parent["ts"]

    msgs = server.messages()
    assert [m["text"] for m in msgs] == ["INC-1 opened", "step 1 done", "step 2 done"]
    assert [m["ts"] for m in msgs] == [parent["ts"], reply1["ts"], reply2["ts"]]
    assert _ts(parent["ts"]) < _ts(reply1["ts"]) < _ts(reply2["ts"])
    assert [m["thread_ts"] for m in msgs] == [None, parent["ts"], parent["ts"]]
    assert msgs[0]["blocks"] == blocks
    assert all(m["via"] == "api" and m["token"] == "bot" for m in msgs)
    assert msgs[0]["token_fingerprint"] == token_fingerprint(TOKEN)
    assert server.messages("#security") == []

    with pytest.raises(SlackApiError) as lost:
        client.chat_postMessage(channel="#incidents", text="orphan", thread_ts="1.000001")
    assert lost.value.response["error"] == "thread_not_found"


def test_each_message_gets_a_unique_increasing_ts(server: SlackServer, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="#security", text=str(i))["ts"] for i in range(20)]
    assert len(set(stamps)) == 20
    assert [_ts(s) for s in stamps] == sorted(_ts(s) for s in stamps)


def test_chat_update_changes_recorded_message(server: SlackServer, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="#incidents", text="INC-2 open", blocks=[{"type": "divider"}])
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="INC-2 closed, RTO met")
    assert updated["ts"] == posted["ts"]
    assert updated["text"] == "INC-2 closed, RTO met"
    assert updated["message"]["edited"]["ts"]

    (msg,) = server.messages()
    assert msg["text"] == "INC-2 closed, RTO met"
    assert msg["blocks"] == [{"type": "divider"}]  # blocks left out keep their value
    assert msg["edited"] == 1

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel=posted["channel"], ts="1700000000.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as elsewhere:
        client.chat_update(channel="#security", ts=posted["ts"], text="x")
    assert elsewhere.value.response["error"] == "message_not_found"


def test_channel_not_found_and_limits(server: SlackServer, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as chan:
        client.chat_postMessage(channel="#nope", text="hi")
    assert chan.value.response["error"] == "channel_not_found"

    with pytest.raises(SlackApiError) as long:
        client.chat_postMessage(channel="#incidents", text="x" * (MAX_TEXT + 1))
    assert long.value.response["error"] == "msg_too_long"

    with pytest.raises(SlackApiError) as many:
        client.chat_postMessage(channel="#incidents", text="t", blocks=[{"type": "divider"}] * 51)
    assert many.value.response["error"] == "invalid_blocks"

    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning, match="text"):
        client.chat_postMessage(channel="#incidents")
    assert empty.value.response["error"] == "no_text"
    assert server.messages() == []

    # Exactly at the limits is accepted.
    client.chat_postMessage(channel="#incidents", text="x" * MAX_TEXT, blocks=[{"type": "divider"}] * 50)
    assert len(server.messages()) == 1


def test_form_encoded_body_and_conversations_list(server: SlackServer, client: WebClient) -> None:
    # api_call(data=...) makes slack_sdk send application/x-www-form-urlencoded, blocks as JSON text.
    resp = client.api_call(
        "chat.postMessage",
        data={"channel": "#security", "text": "form", "blocks": json.dumps([{"type": "divider"}])},
    )
    assert resp["ok"] and resp["channel"] == "C0SECURITY"
    assert server.messages()[0]["blocks"] == [{"type": "divider"}]

    # A token in the form, no Authorization header.
    status, body = _http(
        "POST",
        server.url + "chat.postMessage",
        f"token={OTHER_TOKEN}&channel=C0SECURITY&text=raw".encode(),
        "application/x-www-form-urlencoded",
    )
    assert status == 200 and json.loads(body)["ok"] is True
    assert server.messages()[-1]["token"] == "other"

    channels = client.conversations_list()["channels"]
    assert {(c["id"], c["name"]) for c in channels} == {
        ("C0INCIDENTS", "incidents"),
        ("C0SECURITY", "security"),
    }


# ----------------------------------------------------------------- faults


def test_down_is_a_connection_error_for_slack_sdk(server: SlackServer) -> None:
    server.set_fault("down")
    default_client = WebClient(token=TOKEN, base_url=server.url)  # default: retries connection errors once
    with pytest.raises(ConnectionError):
        default_client.chat_postMessage(channel="#incidents", text="lost")
    stats = server.stats()
    assert stats["by_method"] == {"chat.postMessage": 2}
    assert stats["by_status"] == {"dropped": 2}
    assert server.messages() == []

    server.clear_faults()
    assert default_client.chat_postMessage(channel="#incidents", text="back")["ok"]


def test_status_500(server: SlackServer, client: WebClient) -> None:
    server.set_fault("status_500", count=1)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="#incidents", text="x")
    assert err.value.response.status_code == 500
    assert server.messages() == []
    assert client.chat_postMessage(channel="#incidents", text="x")["ok"]  # count=1 used up


def test_rate_limited_429_with_retry_after(server: SlackServer, client: WebClient) -> None:
    server.set_fault("rate_limited", retry_after=1, count=2)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="#incidents", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    # Calling again at once ignores Retry-After, and the server counts it.
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="#incidents", text="x")
    assert server.stats()["within_retry_after"] == 1
    assert server.messages() == []


def test_rate_limit_retry_handler_waits_then_succeeds(server: SlackServer) -> None:
    server.set_fault("rate_limited", retry_after=1, count=1)
    patient = WebClient(
        token=TOKEN, base_url=server.url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]
    )
    started = time.monotonic()
    resp = patient.chat_postMessage(channel="#incidents", text="after the storm")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0

    stats = server.stats()
    assert stats["by_method"] == {"chat.postMessage": 2}
    assert stats["by_status"] == {"429": 1, "200": 1}
    assert stats["within_retry_after"] == 0  # nothing arrived inside the window
    first, second = stats["log"]
    assert second["t"] - first["t"] >= 1.0
    assert [m["text"] for m in server.messages()] == ["after the storm"]


def test_error_fault_limited_to_methods(server: SlackServer, client: WebClient) -> None:
    server.set_fault("error", error="channel_not_found", methods=["chat.postMessage"], count=1)
    assert client.auth_test()["ok"]  # not a targeted method: untouched, fault not used up
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="#incidents", text="x")
    assert err.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="#incidents", text="x")["ok"]

    server.set_fault("error", error="invalid_auth")
    with pytest.raises(SlackApiError) as auth:
        client.auth_test()
    assert auth.value.response["error"] == "invalid_auth"


def test_slow_fault_times_the_client_out(server: SlackServer) -> None:
    server.set_fault("slow", delay=1.5, count=1)
    impatient = WebClient(token=TOKEN, base_url=server.url, timeout=1, retry_handlers=[])
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        impatient.auth_test()


def test_control_over_http(server: SlackServer, client: WebClient) -> None:
    status, body = _http("POST", server.base_url + "/_control", {"fault": "rate_limited", "retry_after": 1})
    assert status == 200 and json.loads(body)["fault"]["fault"] == "rate_limited"
    with pytest.raises(SlackApiError) as err:
        client.auth_test()
    assert err.value.response.status_code == 429
    status, body = _http("GET", server.base_url + "/_control")
    assert json.loads(body)["fault"]["retry_after"] == 1

    status, body = _http("POST", server.base_url + "/_control", {"fault": "clear", "reset_stats": True})
    assert status == 200 and json.loads(body)["fault"] is None
    client.chat_postMessage(channel="#incidents", text="seen over http")

    status, body = _http("GET", server.base_url + "/_messages")
    data = json.loads(body)
    assert [m["text"] for m in data["messages"]] == ["seen over http"]
    assert data["stats"]["requests"] == 1
    status, body = _http("GET", server.base_url + "/_stats")
    assert json.loads(body)["by_method"] == {"chat.postMessage": 1}

    status, body = _http("POST", server.base_url + "/_control", {"fault": "meteor"})
    assert status == 400 and json.loads(body)["ok"] is False


# ----------------------------------------------------------------- webhooks


def test_webhook_ok_bad_payload_and_unknown_path(server: SlackServer) -> None:
    resp = WebhookClient(server.webhook_url("incidents")).send(
        text="via webhook", blocks=[{"type": "divider"}]
    )
    assert (resp.status_code, resp.body) == (200, "ok")
    (msg,) = server.messages()
    assert (msg["via"], msg["webhook"], msg["channel"], msg["token"]) == (
        "webhook",
        "incidents",
        "C0INCIDENTS",
        None,
    )
    assert msg["blocks"] == [{"type": "divider"}]
    assert server.webhook_url("incidents").endswith(webhook_path("incidents"))

    status, body = _http("POST", server.webhook_url("incidents"), b"{not json")
    assert (status, body) == (400, b"invalid_payload")

    unknown = WebhookClient(server.base_url + "/services/T000/B000/XXXXXXXX").send(text="x")
    assert (unknown.status_code, unknown.body) == (404, "no_service")
    assert len(server.messages()) == 1

    server.set_fault("rate_limited", retry_after=1, count=1)
    limited = WebhookClient(server.webhook_url("incidents")).send(text="x")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"


# ----------------------------------------------------------------- state and process


def test_state_dir_jsonl_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with SlackServer(state_dir=state, tokens=[TOKEN]) as first:
        c = WebClient(token=TOKEN, base_url=first.url, retry_handlers=[])
        posted = c.chat_postMessage(channel="#incidents", text="open")
        c.chat_postMessage(channel="#incidents", text="reply", thread_ts=posted["ts"])
        c.chat_update(channel=posted["channel"], ts=posted["ts"], text="closed")
    lines = [json.loads(line) for line in (state / MESSAGES_FILE).read_text().splitlines()]
    assert [line["event"] for line in lines] == ["post", "post", "update"]
    assert [m["text"] for m in read_messages(state)] == ["closed", "reply"]
    assert TOKEN not in (state / MESSAGES_FILE).read_text()

    # A restarted server knows the earlier messages and keeps ts increasing.
    with SlackServer(state_dir=state, tokens=[TOKEN]) as second:
        c = WebClient(token=TOKEN, base_url=second.url, retry_handlers=[])
        assert c.chat_update(channel=posted["channel"], ts=posted["ts"], text="reopened")["ok"]
        later = c.chat_postMessage(channel="#incidents", text="later")
        assert _ts(later["ts"]) > _ts(posted["ts"])
    assert [m["text"] for m in read_messages(state)] == ["reopened", "reply", "later"]


def test_tokens_are_never_logged(
    server: SlackServer, client: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.chat_postMessage(channel="#incidents", text="x")
    with pytest.raises(SlackApiError):
        WebClient(token="xoxb-bad-secret", base_url=server.url, retry_handlers=[]).auth_test()
    server_logs = [r.getMessage() for r in caplog.records if r.name.startswith("runbook")]
    assert server_logs  # the server does log requests at debug level...
    assert not any(TOKEN in line or "xoxb-bad-secret" in line for line in server_logs)  # ...but no token


def test_module_import_is_cheap() -> None:
    code = (
        "import sys, runbook.sandbox.slack; "
        "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_subprocess_serves_records_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runbook.sandbox.slack",
            "--port",
            "0",
            "--state-dir",
            str(state),
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("listening http://127.0.0.1:")
        base = line.split(" ", 1)[1]
        assert int(base.rsplit(":", 1)[1]) > 0

        client = WebClient(token=TOKEN, base_url=base + "/api/", retry_handlers=[])
        posted = client.chat_postMessage(channel="#incidents", text="from the test")
        assert [(m["ts"], m["text"]) for m in read_messages(state)] == [(posted["ts"], "from the test")]
        info = json.loads((state / "slack-server.json").read_text())
        assert info["url"] == base + "/api/"

        # Faults can be set from this process over HTTP.
        _http("POST", base + "/_control", {"fault": "error", "error": "invalid_auth", "count": 1})
        with pytest.raises(SlackApiError) as err:
            client.auth_test()
        assert err.value.response["error"] == "invalid_auth"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        out, errs = proc.communicate(timeout=5)
        assert TOKEN not in out + errs
        with pytest.raises(urllib.error.URLError):  # the port is released: connection refused
            urllib.request.urlopen(base + "/_stats", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
