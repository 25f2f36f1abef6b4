"""`runbook validate`: every error as file:line: message, and the shipped JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.playbook.validate import load
from tests.conftest import REPO, write_playbook

GOOD = """\
id: demo
title: Demo
tier: component
level: 1
rto: 15m
params:
  db:
    type: identifier
    default: varlor
steps:
  - id: first
    shell: [echo, "{{ params.db }}"]
    effect: read-only
    outputs:
      word: {from: stdout, regex: "(\\\\w+)"}
  - id: second
    shell: [echo, "{{ steps.first.outputs.word }}"]
not_drillable: unit-test fixture
"""


def diags(tmp_path: Path, text: str) -> list[str]:
    path = write_playbook(tmp_path, text, name="demo")
    return [str(d) for d in load(path).diagnostics]


def test_good_playbook_is_valid(tmp_path: Path) -> None:
    assert diags(tmp_path, GOOD) == []


@pytest.mark.parametrize(
    ("mutate", "line", "fragment"),
    [
        (lambda t: t.replace("level: 1", "level: 1\ncolour: red"), 5, "unknown key 'colour'"),
        (
            lambda t: t.replace("    effect: read-only\n", "    effect: read-only\n    retrys: 2\n"),
            14,
            "unknown key 'retrys'",
        ),
        (lambda t: t.replace("level: 1", "level: high"), 4, "level"),
        (lambda t: t.replace("id: second", "id: first"), 16, "duplicate step id 'first'"),
        (
            lambda t: t.replace('shell: [echo, "{{ steps.first.outputs.word }}"]', "run: postgres.nuke"),
            17,
            "unknown action 'postgres.nuke'",
        ),
        (lambda t: t.replace("params.db }}", "params.dbx }}"), 12, "undefined parameter 'dbx'"),
        (
            lambda t: t.replace('[echo, "{{ params.db }}"]', '[echo, "{{ steps.second.outputs.stdout }}"]'),
            12,
            "outputs of the later step 'second'",
        ),
        (lambda t: t.replace("steps.first.outputs.word", "steps.first.outputs.nothing"), 17, "does not produce"),
        (
            lambda t: t.replace("    effect: read-only\n", "    effect: destructive\n    confirm: yes\n"),
            14,
            "lower than the 'typed'",
        ),
        (lambda t: t.replace("tier: component", "tier: catastrophe"), 3, "tier"),
        (lambda t: t.replace("rto: 15m", "rto: soon"), 5, "not a duration"),
        (
            lambda t: t.replace("  - id: second\n", "  - id: second\n    when: \"__import__('os')\"\n"),
            17,
            "not allowed",
        ),
        (lambda t: t.replace("id: demo", "id: other"), 1, "must match the file name"),
    ],
)
def test_each_error_has_file_and_line(tmp_path: Path, mutate, line: int, fragment: str) -> None:
    out = diags(tmp_path, mutate(GOOD))
    assert out, "expected an error"
    assert any(f"demo.yaml:{line}:" in d and fragment in d for d in out), out


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = GOOD.replace("level: 1", "level: 1\ncolour: red").replace(
        "    effect: read-only\n", "    effect: read-only\n    retrys: 2\n"
    )
    out = diags(tmp_path, text)
    assert len(out) == 2
    text2 = GOOD.replace("id: second", "id: first").replace("params.db }}", "params.nope }}")
    out2 = diags(tmp_path, text2)
    assert any("duplicate" in d for d in out2) and any("'nope'" in d for d in out2)


def test_missing_drill_scenario_fails_validate_but_does_not_block_a_run(tmp_path: Path, rb) -> None:
    text = GOOD.replace("not_drillable: unit-test fixture\n", "")
    path = write_playbook(tmp_path / "pbs", text)
    loaded = load(path)
    assert loaded.ok and len(loaded.diagnostics) == 1
    assert "has no drill scenario" in str(loaded.diagnostics[0]) and "demo.yaml:10:" in str(loaded.diagnostics[0])
    r = rb("validate", str(path))
    assert r.returncode == 1 and "not_drillable" in r.stdout
    r = rb("run", str(path), "--headless", "--yes")
    assert r.returncode == 0, r.stderr


def test_malformed_yaml_gives_line(tmp_path: Path) -> None:
    out = diags(tmp_path, "id: demo\ntitle: [unclosed\ntier: component\n")
    assert len(out) == 1 and "demo.yaml:" in out[0] and "malformed YAML" in out[0]


def test_with_keys_checked_against_action(tmp_path: Path) -> None:
    text = GOOD.replace(
        'shell: [echo, "{{ steps.first.outputs.word }}"]',
        "run: file.check_size\n    with:\n      path: /tmp\n      min_bytez: 3",
    )
    out = diags(tmp_path, text)
    assert any("demo.yaml:20:" in d and "no parameter 'min_bytez'" in d for d in out), out


def test_cli_validate_exit_codes(tmp_path: Path, rb) -> None:
    bad = write_playbook(tmp_path / "pbs", GOOD.replace("level: 1", "level: 1\ncolour: red"))
    r = rb("validate", str(bad))
    assert r.returncode == 1
    assert f"{bad}:5: unknown key 'colour'" in r.stdout
    assert "Traceback" not in r.stderr
    good = write_playbook(tmp_path / "ok", GOOD)
    r = rb("validate", str(good))
    assert r.returncode == 0, r.stdout + r.stderr


def test_bundled_playbooks_are_valid_and_match_the_shipped_schema() -> None:
    import jsonschema

    from runbook.playbook import yamlload
    from runbook.playbook.model import json_schema

    shipped = json.loads((REPO / "runbook" / "playbook" / "playbook.schema.json").read_text())
    assert shipped == json_schema(), "run `python -m runbook.playbook.schema` to regenerate the schema"
    files = sorted((REPO / "playbooks").glob("*.yaml"))
    assert files
    validator = jsonschema.Draft202012Validator(shipped)
    for f in files:
        loaded = load(f)
        assert loaded.diagnostics == [], loaded.diagnostics
        errors = list(validator.iter_errors(json.loads(json.dumps(yamlload.load_file(f)))))
        assert errors == [], (f, errors[:1])


def test_schema_rejects_what_validation_rejects() -> None:
    import jsonschema

    shipped = json.loads((REPO / "runbook" / "playbook" / "playbook.schema.json").read_text())
    bad = {"id": "x", "title": "t", "tier": "component", "steps": [{"id": "a", "shell": ["true"], "bogus": 1}]}
    assert list(jsonschema.Draft202012Validator(shipped).iter_errors(bad))


def test_plan_shows_steps_whose_condition_is_false_as_skipped(tmp_path: Path, rb) -> None:
    path = write_playbook(
        tmp_path / "pbs",
        "id: planwhen\ntitle: P\ntier: maintenance\nnot_drillable: fixture\n"
        "params:\n  restore_files: {type: bool, default: false}\n"
        "steps:\n  - id: files\n    when: params.restore_files\n    shell: [echo, files]\n    effect: read-only\n"
        "  - id: always\n    shell: [echo, always]\n    effect: read-only\n",
    )
    out = rb("plan", str(path)).stdout
    assert "skipped: condition is false" in out and "echo always" in out
    out = rb("plan", str(path), "-p", "restore_files=true").stdout
    assert "skipped" not in out and "echo files" in out
