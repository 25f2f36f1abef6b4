"""run_process: the one way actions run commands (argv lists, streamed, stoppable)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runbook.actions.support.process import describe_failure, run_process
from runbook.core.errors import ActionError


def test_stdout_and_stderr_are_merged_line_by_line() -> None:
    lines: list[str] = []
    result = run_process(["sh", "-c", "echo one; echo two >&2; exit 3"], log=lines.append, capture=True)
    assert sorted(lines) == ["one", "two"] and result.exit_code == 3 and not result.ok
    assert result.captured is not None and "one" in result.captured


def test_stdout_to_a_file_streams_only_stderr(tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "out"
    with open(out, "wb") as f:
        result = run_process(
            ["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo record $i; i=$((i+1)); done; echo oops >&2; exit 2"],
            log=lines.append,
            stdout_to=f,
        )
    assert out.read_text().splitlines()[-1] == "record 499" and len(out.read_text().splitlines()) == 500
    assert lines == ["oops"] and result.tail == ["oops"] and result.lines == 1
    assert describe_failure(result) == "sh exited with code 2: oops."


def test_a_log_that_fails_stops_the_command(tmp_path: Path) -> None:
    """A step whose log cannot be written (a full disk) must not leave its command running."""
    pidfile = tmp_path / "pid"

    def log(line: str) -> None:
        raise ActionError("the step's log could not be written")

    started = time.monotonic()
    with open(tmp_path / "out", "wb") as f, pytest.raises(ActionError):
        run_process(["sh", "-c", f"echo $$ > {pidfile}; echo hello >&2; exec sleep 60"], log=log, stdout_to=f)
    assert time.monotonic() - started < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_not_a_list_and_missing_programs_are_sentences() -> None:
    with pytest.raises(ActionError, match="non-empty list"):
        run_process("echo hi", log=print)  # type: ignore[arg-type]
    with pytest.raises(ActionError, match="Command not found: 'no-such-program-xyz'"):
        run_process(["no-such-program-xyz"], log=print)
