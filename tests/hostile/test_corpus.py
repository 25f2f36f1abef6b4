"""The hostile-input corpus: one data file per case in cases/. Each case gets one clear sentence
(or runs safely), never a traceback, and nothing is executed for an invalid input.

Case file keys: description, args (CLI args with {playbook}, {config}, {canary}, {big:N}),
expect_exit, expect (substring of stdout+stderr), playbook (YAML text), playbook_pad (bytes of
comment padding), playbook_latin1 (encode the playbook as Latin-1), config (runbook.toml text),
canary_may_exist (the case is expected to run; the canary proves nothing else ran), secret_absent
(a value that must appear in no output and no file under RUNBOOK_HOME).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import runbook

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 80


def expand(text: str, values: dict[str, str]) -> str:
    text = re.sub(r"\{big:(\d+)\}", lambda m: "a" * int(m.group(1)), text)
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_hostile_case(case_file: Path, rb_home: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(case_file.read_text())
    canary = tmp_path / "CANARY"
    values = {
        "canary": str(canary),
        "playbook": str(tmp_path / "pbs" / "target.yaml"),
        "config": str(tmp_path / "runbook.toml"),
    }
    if "playbook" in case:
        (tmp_path / "pbs").mkdir()
        text = expand(case["playbook"], values)
        if case.get("playbook_pad"):
            text += "#" + "x" * int(case["playbook_pad"]) + "\n"
        data = text.encode("latin-1") if case.get("playbook_latin1") else text.encode()
        if case.get("playbook_latin1"):
            data = data.replace(b"\\xe9", b"\xe9")
        Path(values["playbook"]).write_bytes(data)
    if "config" in case:
        Path(values["config"]).write_text(case["config"])
    args = [expand(a, values) for a in case["args"]]
    r = runbook(rb_home, *args, timeout=120)
    both = r.stdout + r.stderr
    assert "Traceback" not in both, both[-3000:]
    assert r.returncode == case["expect_exit"], (r.returncode, both[-2000:])
    assert case["expect"] in both, both[-2000:]
    if r.returncode != 0:
        # One clear sentence: a single error line (validate prints one line per error found).
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) <= 2, r.stderr
    if case.get("secret_absent"):
        secret = case["secret_absent"].encode()
        assert secret not in (r.stdout + r.stderr).encode()
        for f in rb_home.rglob("*"):
            if f.is_file():
                assert secret not in f.read_bytes(), f
    if not case.get("canary_may_exist"):
        assert not canary.exists(), "something ran for an invalid input"
