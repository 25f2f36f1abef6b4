"""The contract every action honours.

An action is one kind of thing a step can do (``shell``, ``postgres.dump``, ``bigquery.snapshot``…).
It is plain data plus one ``run`` method:

* ``name`` — what a playbook writes after ``run:``.
* ``effect`` — read-only, mutating or destructive. The engine derives the default confirmation
  from it (none / ``yes`` / typed) and dry-run mode runs only read-only actions.
* ``Params`` — a pydantic model of the ``with:`` mapping. Validation of a playbook checks every
  step's ``with:`` against it (unknown keys, wrong types) before anything runs.
* ``outputs`` — the names ``run`` returns, so ``{{ steps.X.outputs.Y }}`` can be checked early.
* ``target(params)`` — the thing acted on, in words an operator recognises (a database name,
  a directory). A typed confirmation asks the operator to type exactly this.
* ``describe(params)`` — the exact resolved call (argv or API call), shown before it runs.
* ``run(ctx, params)`` — do it, stream progress through ``ctx.log``, return the outputs.
  Raise :class:`~runbook.core.errors.ActionError` with one clear sentence on failure.

Action modules must stay cheap to import: heavy clients (google-cloud-*, psycopg, slack_sdk) are
imported inside ``run`` only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from runbook.actions.process import ProcessResult
    from runbook.core.environment import Environment


class Effect(StrEnum):
    """How much an action can change the world; drives confirmations and dry-run."""

    READ_ONLY = "read-only"
    MUTATING = "mutating"
    DESTRUCTIVE = "destructive"

    @property
    def rank(self) -> int:
        return _EFFECT_RANK[self]


_EFFECT_RANK = {Effect.READ_ONLY: 0, Effect.MUTATING: 1, Effect.DESTRUCTIVE: 2}


class ActionParams(BaseModel):
    """Base for every action's ``with:`` model: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StepContext:
    """What an action gets from the engine while it runs.

    Attributes:
        incident_id: The incident this step belongs to.
        step_id: The step's id.
        mode: ``live``, ``dry-run`` or ``drill``.
        environment: The store connections of the incident's environment.
        workdir: A private per-incident directory for scratch files.
        log: Streams one line of progress/output (already redacted by the engine's sink).
        cancelled: Set by the engine when the step times out or the operator quits; long
            actions check it and stop.
        timeout: Seconds the step may take, or ``None``.
    """

    incident_id: str
    step_id: str
    mode: str
    environment: Environment
    workdir: Path
    log: Callable[[str], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None
    redact: Callable[[str], str] = field(default=lambda s: s)

    def run_process(self, argv: list[str], **kwargs: Any) -> ProcessResult:
        """Run ``argv`` (a list, never a shell string), streaming its output to :attr:`log`.

        See :func:`runbook.actions.process.run_process` for the keyword arguments.
        """
        from runbook.actions.process import run_process

        kwargs.setdefault("timeout", self.timeout)
        return run_process(argv, log=self.log, cancelled=self.cancelled, **kwargs)


@runtime_checkable
class Action(Protocol):
    """One kind of step. See the module docstring for the contract."""

    name: ClassVar[str]
    effect: ClassVar[Effect]
    summary: ClassVar[str]
    Params: ClassVar[type[ActionParams]]
    outputs: ClassVar[Mapping[str, str]]

    def target(self, params: Any) -> str: ...

    def describe(self, params: Any) -> str: ...

    def run(self, ctx: StepContext, params: Any) -> dict[str, Any]: ...


class BaseAction:
    """Convenience base: sensible ``target``/``describe`` defaults for simple actions."""

    name: ClassVar[str] = ""
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = ""
    Params: ClassVar[type[ActionParams]] = ActionParams
    outputs: ClassVar[Mapping[str, str]] = {}

    def target(self, params: Any) -> str:
        return self.name

    def describe(self, params: Any) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in params.model_dump(exclude_none=True).items())
        return f"{self.name}({args})"

    def run(self, ctx: StepContext, params: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
