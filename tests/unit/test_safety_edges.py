"""Edge cases of the safety rules: skip from a confirmation, accepted failures after resume,
conditions that short-circuit, masking of secrets in odd forms, empty typed targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.core import incident as S
from runbook.core.environment import Environment
from runbook.core.redact import MASK, Redactor
from runbook.engine.frontend import Ask, Choice, Decision
from runbook.engine.runner import Engine
from runbook.playbook.model import ParamSpec
from runbook.playbook.params import ParamError, coerce
from runbook.playbook.refs import RefError, evaluate_condition, make_lookup, parse_condition
from tests.unit.test_engine import Scripted, make


def test_skip_from_the_confirmation_never_runs_the_step(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"""
id: skipconf
title: T
tier: maintenance
not_drillable: fixture
steps:
  - id: touch
    shell: [touch, "{marker}"]
  - id: after
    shell: [echo, after]
    effect: read-only
"""
    fe = Scripted(lambda r: Decision(Choice.SKIP, reason="done by hand already"))
    engine, journal, st = make(tmp_path, text, fe)
    assert engine.run().status == "completed"
    assert not marker.exists()
    types = [(e.type, e.step) for e in journal.events(st.id)]
    assert ("step_skipped", "touch") in types and ("step_started", "touch") not in types


def test_an_accepted_failure_stays_accepted_after_resume(tmp_path: Path) -> None:
    text = """
id: acc
title: T
tier: maintenance
not_drillable: fixture
steps:
  - id: soft
    shell: ["false"]
    effect: read-only
    on_failure: continue
  - id: manual
    manual: true
"""
    engine, journal, st = make(tmp_path, text, Scripted(lambda r: Decision(Choice.QUIT)))
    assert engine.run().status == "paused"
    folded = S.fold(st.id, journal.events(st.id))
    assert folded.steps["soft"].continued
    fe = Scripted(lambda r: Decision(Choice.DONE, reason="checked"))
    engine2 = Engine(journal, fe, home=tmp_path / "home", environment=Environment("test"))
    engine2.resume(st.id)
    assert engine2.run().status == "completed"
    assert not [r for r in fe.requests if r.ask == Ask.FAILURE]  # not asked again about `soft`


def test_conditions_short_circuit_and_type_errors_are_sentences() -> None:
    lookup = make_lookup(
        params={"do_x": False, "n": 3, "s": "abc"}, outputs={}, incident={}, env=lambda p: None, mode="live"
    )
    assert evaluate_condition(parse_condition("params.do_x and steps.x.outputs.ok == 'yes'"), lookup) is False
    assert evaluate_condition(parse_condition("not params.do_x or steps.x.outputs.ok"), lookup) is True
    for bad in ("params.n in params.s", "-params.s == 1"):
        with pytest.raises(RefError):
            evaluate_condition(parse_condition(bad), lookup)


def test_secrets_in_odd_forms_are_masked() -> None:
    red = Redactor([4242, "hunter22"])
    assert red.text("pin 4242 ok") == f"pin {MASK} ok"
    for line in (
        "PGPASSWORD=abc123 pg_dump",
        "DB_PASSWORD: xyz",
        "postgresql+psycopg://u:pw9@h/db",
        "https://bot:tok3n@git.example/x",
    ):
        masked = red.text(line)
        assert MASK in masked, line
        assert not any(s in masked for s in ("abc123", "xyz", "pw9", "tok3n"))


def test_a_secret_value_is_never_echoed_in_an_error() -> None:
    spec = ParamSpec(type="string", secret=True, pattern="[a-z]+")
    with pytest.raises(ParamError) as err:
        coerce("api_key", spec, "S3cret-Value")
    assert "S3cret-Value" not in str(err.value)


def test_empty_typed_target_fails_the_step_instead_of_accepting_enter(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    text = f"""
id: emptytyped
title: T
tier: data-loss
not_drillable: fixture
params:
  name: {{type: string, default: ""}}
steps:
  - id: drop
    shell: [rm, "{victim}"]
    effect: destructive
    confirm: {{typed: "{{{{ params.name }}}}"}}
"""
    engine, journal, st = make(tmp_path, text, Scripted(lambda r: Decision(Choice.CONFIRM, typed="")))
    assert engine.run().status == "failed"
    assert victim.exists()
    failed = [e for e in journal.events(st.id) if e.type == "step_failed"]
    assert "nothing to type" in failed[0].payload["error"]


def test_encoded_forms_of_a_secret_are_masked_too() -> None:
    """#13: base64 (of the value and of user:value, standard and URL-safe, at any offset), URL
    encoding, JSON escaping and other cases of a secret are masked like the secret itself."""
    import base64
    import json
    from urllib.parse import quote, quote_plus

    from runbook.core.redact import MASK, Redactor

    secret = "s3cr3t-Pa55/word+x"
    red = Redactor([secret])
    b64 = base64.b64encode
    leaks = {
        "base64": b64(secret.encode()).decode(),
        "base64 of user:value": b64(b"admin:" + secret.encode()).decode(),
        "base64 inside more": b64(b"prefix " + secret.encode() + b" suffix").decode(),
        "url-safe base64": base64.urlsafe_b64encode(b"u:" + secret.encode()).decode(),
        "curl -v Basic header": "> Authorization: Basic " + b64(b"svc:" + secret.encode()).decode(),
        "url-encoded": "GET /login?p=" + quote(secret, safe=""),
        "form-encoded": "p=" + quote_plus(secret),
        "json": json.dumps({"password_field": secret}),
        "upper case": secret.upper(),
        "lower case": secret.lower(),
    }
    for name, text in leaks.items():
        out = red.text(text)
        assert MASK in out, name
        for form in (secret, secret.upper(), b64(secret.encode()).decode().rstrip("="), quote(secret, safe="")):
            assert form not in out, (name, out)
    plain = "restored 1200 rows into public.orders in 0.4 s (dGVzdA==)"
    assert red.text(plain) == plain  # nothing else is touched


def test_slack_fallback_text_is_escaped_like_the_blocks() -> None:
    """#13 item 12: `<!channel>`, `<@U…>` and `<url|x>` from step output never ping or link."""
    from runbook.notify.messages import IncidentInfo, fit_message, parent_message, reply_message

    info = IncidentInfo(incident="20261203-000000-abcd", playbook="p<!here>", title="T <!channel>", env="prod",
                        mode="live")
    hostile = "done <!channel> <@U123ABC> <https://evil.example|click> & more"
    for text, _blocks in [reply_message(info, "✅", "step <!everyone>", hostile), parent_message(info)]:
        for part, _ in fit_message(text, None):
            assert "<" not in part and ">" not in part, part
    text, _ = reply_message(info, "✅", "ok", hostile)
    assert "&lt;!channel&gt;" in text and "&amp; more" in text and "&amp;lt;" not in text
