"""A step resolved into the exact call it makes: the action, its checked params, what it acts on,
how it is described to the operator and which confirmation it needs.

Resolution renders ``{{ references }}`` (each one becomes one argv element or one API argument, as
it is), validates the result against the action's ``Params`` and redacts every text a person or
the journal will see. In dry-run, references to outputs of steps that did not run stay
:class:`~runbook.playbook.refs.Unknown`; such a call is shown, never run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runbook.actions.registry import get_action
from runbook.actions.spec import ActionSpec
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.redact import Redactor
from runbook.playbook.model import ConfirmTyped, Step
from runbook.playbook.refs import contains_unknown, render
from runbook.playbook.validate import required_confirm, step_effect


@dataclass(frozen=True)
class Call:
    """What a step will do, resolved. ``spec`` is None for a manual step."""

    action: str
    params: Any  # the action's Params model; raw data while it has unknown values
    effect: str
    target: str
    confirm: str  # none | yes | typed
    describe: str
    expected: str | None  # what a typed confirmation must match
    spec: ActionSpec[Any, Any] | None

    @property
    def resolved(self) -> bool:
        """False while a value depends on outputs of steps that did not run (dry-run)."""
        return not contains_unknown(self.params)


MANUAL = Call("manual", None, Effect.READ_ONLY.value, "", "none", "manual step", None, None)


def resolve_call(step: Step, lookup: Any, redactor: Redactor) -> Call:
    """The exact call of ``step`` with the values ``lookup`` gives.

    Raises:
        ActionError: Unknown action, params the action refuses, or a typed confirmation with
            nothing to type.
        RefError: A reference cannot be resolved.
    """
    if step.kind == "manual":
        return MANUAL
    spec, raw = _render(step, lookup)
    if contains_unknown(raw):
        describe = redactor.text(_describe_unknown(spec.name, raw))
        return Call(spec.name, raw, step_effect(step).value, "", required_confirm(step), describe, None, spec)
    try:
        params = spec.Params.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError
        raise ActionError(_pydantic_sentence(spec.name, exc)) from None
    target = spec.target(params)
    confirm = required_confirm(step)
    expected = None
    if confirm == "typed":
        expected = str(render(step.confirm.typed, lookup) if isinstance(step.confirm, ConfirmTyped) else target)
        if not expected.strip():
            # An empty value would let Enter alone confirm a destructive step.
            raise ActionError("its typed confirmation has nothing to type (the target resolved to an empty value)")
    return Call(
        spec.name,
        params,
        step_effect(step).value,
        redactor.text(str(target)),
        confirm,
        redactor.text(spec.describe(params)),
        expected,
        spec,
    )


def _render(step: Step, lookup: Any) -> tuple[ActionSpec[Any, Any], Any]:
    if step.kind == "shell":
        spec = get_action("shell")
        # Every argv element is text: an int or bool param becomes its written form.
        raw: Any = {
            "argv": [argv_text(a) for a in render(step.shell, lookup)],
            "env": {k: argv_text(v) for k, v in render(step.env, lookup).items()},
        }
        if step.cwd:
            raw["cwd"] = render(step.cwd, lookup)
    else:
        spec = get_action(step.run or "")
        if spec is None:
            raise ActionError(f"unknown action {step.run!r}")
        raw = render(step.with_, lookup)
    assert spec is not None
    return spec, raw


def argv_text(value: Any) -> Any:
    """A rendered value as one argv element: text as it is, numbers and booleans written out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)  # one argv element, machine-readable
    return value


def _describe_unknown(name: str, raw: Any) -> str:
    if name == "shell" and isinstance(raw, dict):
        return " ".join(str(a) for a in raw.get("argv", []))
    return f"{name}({', '.join(f'{k}={v}' for k, v in (raw or {}).items())})"


def _pydantic_sentence(action: str, exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        errs = errors()
        if errs:
            e = errs[0]
            where = ".".join(str(p) for p in e.get("loc", ()))
            return f"action {action}: {where}: {e.get('msg', 'invalid value').removeprefix('Value error, ')}"
    return f"action {action}: {exc}"
