"""``shell``: run a command from an argv list (never through a shell), streaming its output."""

from __future__ import annotations

import shlex

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.process import describe_failure
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class ShellParams(ActionParams):
    argv: list[str] = Field(min_length=1, description="Program and arguments, one element each.")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ok_codes: list[int] = Field(default_factory=lambda: [0], description="Exit codes that count as success.")


class ShellOutputs(ActionOutputs):
    exit_code: int
    """The command's exit code."""
    stdout: str
    """Its output (stdout and stderr, up to 1 MiB)."""
    last_line: str
    """The last non-empty line of output."""
    lines: int
    """How many lines it printed."""


def _describe(params: ShellParams) -> str:
    text = shlex.join(params.argv)
    return f"(cd {shlex.quote(params.cwd)}) {text}" if params.cwd else text


@action("shell", Effect.MUTATING, "Run a command (argv list, no shell).",
        target=lambda p: p.argv[0], describe=_describe)
def shell(ctx: StepContext, params: ShellParams) -> ShellOutputs:
    result = ctx.run_process(list(params.argv), cwd=params.cwd or None, env=params.env or None, capture=True)
    if result.timed_out or result.cancelled or result.exit_code not in params.ok_codes:
        raise ActionError(describe_failure(result))
    last = next((line for line in reversed(result.tail) if line.strip()), "")
    return ShellOutputs(exit_code=result.exit_code, stdout=result.captured or "", last_line=last, lines=result.lines)


SPECS = [shell]
