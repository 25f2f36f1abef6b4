"""``shell``: run a command from an argv list (never through a shell), streaming its output."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.actions.process import describe_failure
from runbook.core.errors import ActionError


class ShellParams(ActionParams):
    argv: list[str] = Field(min_length=1, description="Program and arguments, one element each.")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ok_codes: list[int] = Field(default_factory=lambda: [0], description="Exit codes that count as success.")


class ShellAction(BaseAction):
    """Runs a program. Its effect is declared by the step (``effect:``), mutating by default."""

    name: ClassVar[str] = "shell"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Run a command (argv list, no shell)."
    Params = ShellParams
    outputs: ClassVar[dict[str, str]] = {
        "exit_code": "The command's exit code.",
        "stdout": "Its output (stdout and stderr, up to 1 MiB).",
        "last_line": "The last non-empty line of output.",
        "lines": "How many lines it printed.",
    }

    def target(self, params: ShellParams) -> str:
        return params.argv[0]

    def describe(self, params: ShellParams) -> str:
        import shlex

        text = shlex.join(params.argv)
        if params.cwd:
            text = f"(cd {shlex.quote(params.cwd)}) {text}"
        return text

    def run(self, ctx: StepContext, params: ShellParams) -> dict[str, Any]:
        result = ctx.run_process(list(params.argv), cwd=params.cwd or None, env=params.env or None, capture=True)
        if result.timed_out or result.cancelled or result.exit_code not in params.ok_codes:
            raise ActionError(describe_failure(result))
        last = next((line for line in reversed(result.tail) if line.strip()), "")
        return {
            "exit_code": result.exit_code,
            "stdout": result.captured or "",
            "last_line": last,
            "lines": result.lines,
        }


ACTIONS = [ShellAction]
