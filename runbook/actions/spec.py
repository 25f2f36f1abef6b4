"""The contract every action honours: a declarative spec plus the function that runs it.

An action is one kind of thing a step can do (``shell``, ``postgres.dump``…). It is declared once,
as data, with :func:`action`::

    class DumpParams(ActionParams):
        directory: str = Field(description="Where the dump goes.")

    class DumpOutputs(ActionOutputs):
        path: str
        '''The dump file.'''

    @action("postgres.dump", Effect.MUTATING, "Dump the database (custom format).",
            target=lambda p: p.directory)
    def dump(ctx: StepContext, params: DumpParams) -> DumpOutputs:
        ...
        return DumpOutputs(path=str(path))

What the spec promises:

* ``name`` — what a playbook writes after ``run:``.
* ``effect`` — read-only, mutating or destructive: the engine derives the default confirmation
  from it (none / ``yes`` / typed) and dry-run runs only read-only actions. Declared truthfully.
* ``Params`` — the ``with:`` mapping (from the function's annotation). Validation of a playbook
  checks every step's ``with:`` against it (unknown keys, wrong types) before anything runs.
* ``Outputs`` — what the function returns (from its return annotation). The engine checks the
  return value against it, and ``{{ steps.X.outputs.Y }}`` references against its fields.
* ``target(params)`` — the thing acted on, in words an operator recognises (a database name, a
  directory). A typed confirmation asks the operator to type exactly this.
* ``describe(params)`` — the exact resolved call (argv or API call), shown before it runs.
* the function — does it, streams progress through ``ctx.log``, and raises
  :class:`~runbook.core.errors.ActionError` with one clear sentence on failure.

Spec modules stay cheap to import: heavy clients (google-cloud-*, psycopg, slack_sdk) are imported
inside the functions only. Services (the Slack outbox) come through :class:`StepContext`, never
through module globals.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from runbook.core.effect import Effect
from runbook.core.environment import Environment
from runbook.core.errors import ActionError
from runbook.stores.pool import ClientPool

if TYPE_CHECKING:
    from runbook.actions.support.process import ProcessResult

__all__ = [
    "ActionOutputs",
    "ActionParams",
    "ActionSpec",
    "Effect",
    "MessageSink",
    "NoOutputs",
    "Services",
    "StepContext",
    "action",
]


class ActionParams(BaseModel):
    """Base of every action's ``with:`` model: unknown keys are errors; models are immutable.

    A field is described by ``Field(description=…)`` or by a docstring right under it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ActionOutputs(BaseModel):
    """Base of every action's outputs: an undeclared output is an error, not a silent extra.

    Each field is described by a docstring right under it (what ``spec.outputs`` shows).
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class NoOutputs(ActionOutputs):
    """For actions whose only result is that they succeeded."""


class MessageSink(Protocol):
    """Where ``notify.slack`` queues a message: the Slack outbox (see :mod:`runbook.notify`)."""

    @property
    def default_channel(self) -> str: ...

    @property
    def security_channel(self) -> str | None: ...

    def enqueue_message(
        self, incident: str, text: str, *, channel: str | None, step: str | None, thread: bool
    ) -> str: ...

    def status(self) -> str: ...


@dataclass(frozen=True)
class Services:
    """What the process that runs the engine hands to actions (none of it is a global)."""

    messages: MessageSink | None = None  # the Slack outbox, when Slack is configured
    clients: ClientPool = field(default_factory=ClientPool)  # store clients kept between steps


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
        redact: Masks the incident's secrets in a text the action is about to send somewhere.
        services: The outbox and other services of this process.
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
    services: Services = field(default_factory=Services)

    def run_process(self, argv: list[str], **kwargs: Any) -> ProcessResult:
        """Run ``argv`` (a list, never a shell string), streaming its output to :attr:`log`.

        See :func:`runbook.actions.support.process.run_process` for the keyword arguments.
        """
        from runbook.actions.support.process import run_process

        kwargs.setdefault("timeout", self.timeout)
        return run_process(argv, log=self.log, cancelled=self.cancelled, **kwargs)


ParamsT = TypeVar("ParamsT", bound=ActionParams)
OutputsT = TypeVar("OutputsT", bound=ActionOutputs)


@dataclass(frozen=True)
class ActionSpec(Generic[ParamsT, OutputsT]):
    """One action, as data. See the module docstring for the contract."""

    name: str
    effect: Effect
    summary: str
    Params: type[ParamsT]
    Outputs: type[OutputsT]
    fn: Callable[[StepContext, ParamsT], OutputsT]
    target_fn: Callable[[ParamsT], str] | None = None
    describe_fn: Callable[[ParamsT], str] | None = None

    @property
    def outputs(self) -> Mapping[str, str]:
        """Output name → its description (for validation and the docs)."""
        return {k: f.description or "" for k, f in self.Outputs.model_fields.items()}

    def target(self, params: ParamsT) -> str:
        return self.target_fn(params) if self.target_fn is not None else self.name

    def describe(self, params: ParamsT) -> str:
        if self.describe_fn is not None:
            return self.describe_fn(params)
        args = ", ".join(f"{k}={v!r}" for k, v in params.model_dump(exclude_none=True).items())
        return f"{self.name}({args})"

    def run(self, ctx: StepContext, params: ParamsT) -> dict[str, Any]:
        """Run the action and return its outputs, checked against :attr:`Outputs`, as plain data.

        Raises:
            ActionError: The action failed, or returned something its spec does not declare.
        """
        result = self.fn(ctx, params)
        if type(result) is not self.Outputs:
            raise ActionError(
                f"action {self.name} returned {type(result).__name__}, not its declared {self.Outputs.__name__}"
            )
        try:
            checked = self.Outputs.model_validate(result.__dict__)  # cheaper than dumping first
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ActionError(
                f"action {self.name} returned an output its spec does not allow ({where}: {first['msg']})"
            ) from None
        return checked.model_dump(mode="json")


def action(
    name: str,
    effect: Effect,
    summary: str,
    *,
    target: Callable[[Any], str] | None = None,
    describe: Callable[[Any], str] | None = None,
) -> Callable[[Callable[[StepContext, Any], Any]], ActionSpec[Any, Any]]:
    """Declare an action from its run function; ``Params`` and ``Outputs`` come from its annotations."""

    def declare(fn: Callable[[StepContext, Any], Any]) -> ActionSpec[Any, Any]:
        hints = typing.get_type_hints(fn)
        names = list(hints)
        params_type = hints.get(names[1]) if len(names) >= 2 else None
        outputs_type = hints.get("return")
        if not (isinstance(params_type, type) and issubclass(params_type, ActionParams)):
            raise TypeError(
                f"action {name}: the run function's second parameter must be annotated with an ActionParams model"
            )
        if not (isinstance(outputs_type, type) and issubclass(outputs_type, ActionOutputs)):
            raise TypeError(f"action {name}: the run function must be annotated to return an ActionOutputs model")
        return ActionSpec(name, effect, summary, params_type, outputs_type, fn, target, describe)

    return declare
