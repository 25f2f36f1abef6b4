"""Load and check a playbook, reporting every problem as ``file:line: message``.

Checks, in order: YAML (strict, see ``yamlload``); structure (the pydantic model: unknown keys,
wrong types); then meaning: duplicate step ids, unknown actions and their ``with:`` keys,
references to undefined params or to outputs of later steps, conditions, and confirmations
lowered below what the action requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runbook.core.effect import Effect
from runbook.playbook import yamlload
from runbook.playbook.model import IDENT, ConfirmTyped, OutputSpec, ParamSpec, Playbook, Step
from runbook.playbook.params import ParamError, coerce
from runbook.playbook.refs import RefError, has_template, parse_condition, refs_in

_IDENT = re.compile(IDENT)


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int
    message: str
    blocking: bool = True  # False: `validate` fails, but the playbook can still be run (drill coverage)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


@dataclass
class Loaded:
    """A playbook file after loading: the model when valid, and every diagnostic."""

    path: Path
    playbook: Playbook | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    raw: Any = None

    @property
    def ok(self) -> bool:
        return self.playbook is not None and not self.errors

    @property
    def errors(self) -> list[Diagnostic]:
        """Problems that stop the playbook from running (everything but drill coverage)."""
        return [d for d in self.diagnostics if d.blocking]


def line_of(raw: Any, loc: tuple[Any, ...], *, key: bool = False) -> int:
    """Best line for a location path in the raw YAML tree."""
    node = raw
    best = getattr(raw, "line", 0) or 1
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yamlload.LineDict) and part in node:
            best = node.key_lines.get(part, best) if (key or not last) else node.value_lines.get(part, best)
            if last and key:
                return best
            node = node[part]
        elif isinstance(node, yamlload.LineList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_lines[part]
            node = node[part]
        else:
            break
        inner = getattr(node, "line", 0)
        if inner and not last:
            best = inner
    return best


def _effect_default_confirm(effect: Effect) -> str:
    return {Effect.READ_ONLY: "none", Effect.MUTATING: "yes", Effect.DESTRUCTIVE: "typed"}[effect]


CONFIRM_RANK = {"none": 0, "yes": 1, "typed": 2}


def confirm_level(step: Step) -> str | None:
    if step.confirm is None:
        return None
    return "typed" if isinstance(step.confirm, ConfirmTyped) else step.confirm


def step_effect(step: Step) -> Effect:
    """The effect of a step: its action's, a shell step's declared one, none for manual steps."""
    from runbook.actions.registry import get_action

    if step.kind == "shell":
        return step.effect or Effect.MUTATING
    if step.kind == "manual":
        return Effect.READ_ONLY
    action = get_action(step.run or "")
    return action.effect if action else Effect.MUTATING


def required_confirm(step: Step) -> str:
    """The confirmation the engine will ask for: the stricter of the action's default and the step's."""
    default = "none" if step.kind == "manual" else _effect_default_confirm(step_effect(step))
    declared = confirm_level(step)
    if declared is None:
        return default
    return declared if CONFIRM_RANK[declared] >= CONFIRM_RANK[default] else default


def load(path: Path | str) -> Loaded:
    """Load and fully validate one playbook file."""
    path = Path(path)
    shown = str(path)
    try:
        raw = yamlload.load_file(path)
    except yamlload.YamlError as exc:
        return Loaded(path, None, [Diagnostic(shown, exc.line, str(exc))])
    return validate_raw(raw, path)


def validate_raw(raw: Any, path: Path) -> Loaded:
    shown = str(path)
    diags: list[Diagnostic] = []

    def add(line: int, msg: str, blocking: bool = True) -> None:
        diags.append(Diagnostic(shown, line, msg, blocking))

    if not isinstance(raw, dict):
        add(getattr(raw, "line", 1) or 1, "a playbook must be a mapping with id, title, tier and steps")
        return Loaded(path, None, diags, raw)

    try:
        pb = Playbook.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _yaml_loc(tuple(err["loc"]))
            where = ".".join(str(p) for p in loc) or "playbook"
            if err["type"] == "extra_forbidden":
                add(
                    line_of(raw, loc, key=True),
                    f"unknown key {loc[-1]!r}" + (f" in {'.'.join(map(str, loc[:-1]))}" if len(loc) > 1 else ""),
                )
            elif err["type"] == "missing":
                add(
                    line_of(raw, loc[:-1]),
                    f"missing required key {loc[-1]!r}"
                    + (f" in {'.'.join(map(str, loc[:-1]))}" if len(loc) > 1 else ""),
                )
            else:
                msg = err["msg"]
                if msg.startswith("Value error, "):
                    msg = msg[len("Value error, ") :]
                add(line_of(raw, loc), f"{where}: {msg}")
        # Deduplicate (union branches report the same place several times).
        seen: set[tuple[int, str]] = set()
        unique = []
        for d in diags:
            if (d.line, d.message) not in seen:
                seen.add((d.line, d.message))
                unique.append(d)
        return Loaded(path, None, unique, raw)

    _check_meaning(pb, raw, path, add)
    return Loaded(path, pb, diags, raw)


_UNION_TAGS = {"str", "int", "float", "bool", "ConfirmTyped", "OutputSpec"}


def _yaml_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pydantic error location as a path in the YAML: union member names (``str``,
    ``literal['none','yes','typed']``, ``function-after[…]``) are pydantic's, not the file's."""
    return tuple(
        p for p in loc if not (isinstance(p, str) and (p in _UNION_TAGS or p.startswith(("function-", "literal["))))
    )


def _check_meaning(pb: Playbook, raw: Any, path: Path, add: Any) -> None:
    from runbook.actions.registry import get_action

    if pb.id != path.stem and path.suffix in (".yaml", ".yml"):
        add(line_of(raw, ("id",)), f"id {pb.id!r} must match the file name {path.stem!r}")

    for name, spec in pb.params.items():
        line = line_of(raw, ("params", name), key=True)
        if not _IDENT.match(name):
            add(line, f"parameter name {name!r} must be lower-case letters, digits and '_'")
        _check_param(name, spec, line, add)

    _check_steps(pb.steps, ("steps",), pb, raw, add, get_action, later_ok=False)
    if pb.scenario is not None:
        sc = pb.scenario
        for key, steps in (("setup", sc.setup), ("break", sc.break_), ("verify", sc.verify)):
            _check_steps(steps, ("scenario", key), pb, raw, add, get_action, later_ok=True, scenario=True)
        scenario_ids = {s.id for s in (*sc.setup, *sc.break_)}
        for name, value in sc.params.items():
            line = line_of(raw, ("scenario", "params", name), key=True)
            if name not in pb.params:
                add(line, f"scenario sets unknown parameter {name!r}")
            try:
                for ref in refs_in(value):
                    # A drill may hand the playbook a value its setup/break produced.
                    if ref.root == "steps" and ref.parts[1] not in scenario_ids:
                        add(
                            line,
                            f"scenario parameter {name!r} refers to {ref.parts[1]!r}, "
                            "which is not a setup or break step",
                        )
                    elif ref.root not in ("steps", "env"):
                        add(
                            line,
                            f"scenario parameter {name!r} may refer to setup/break step outputs or env.*, "
                            f"not {ref.text!r}",
                        )
            except RefError as exc:
                add(line, f"scenario parameter {name!r}: {exc}")
    if pb.scenario is None and not pb.not_drillable:
        # Reported by `validate` (exit 1) but not blocking: an untested playbook can still be run.
        add(
            line_of(raw, ("steps",), key=True),
            f"playbook {pb.id!r} has no drill scenario: add `scenario:` (how `runbook drill` breaks the "
            "sandbox) or say why it cannot be drilled with `not_drillable: <reason>`",
            blocking=False,
        )
    if pb.scenario is not None and pb.not_drillable:
        add(line_of(raw, ("not_drillable",), key=True), "a playbook with a scenario cannot also be not_drillable")


def _check_param(name: str, spec: ParamSpec, line: int, add: Any) -> None:
    if spec.type == "enum" and not spec.choices:
        add(line, f"enum parameter {name!r} needs choices")
    if spec.pattern is not None:
        try:
            re.compile(spec.pattern)
        except re.error as exc:
            add(line, f"parameter {name!r} has an invalid pattern: {exc}")
            return
    if isinstance(spec.default, str) and "{{" in spec.default:
        try:
            for ref in refs_in(spec.default):
                if ref.root != "env":
                    add(line, f"default of parameter {name!r} may only refer to env.*, not {ref.text!r}")
        except RefError as exc:
            add(line, f"default of parameter {name!r}: {exc}")
    elif spec.default is not None:
        try:
            coerce(name, spec, spec.default)
        except ParamError as exc:
            add(line, f"default of {exc}")
    if spec.secret and spec.default is not None:
        add(line, f"secret parameter {name!r} must not have a default in the playbook")


@dataclass(frozen=True)
class _Where:
    """What every per-step check needs: the playbook, its raw YAML (for lines) and the sink."""

    pb: Playbook
    raw: Any
    add: Any
    ids: list[str]
    later_ok: bool
    scenario: bool


def _check_steps(
    steps: list[Step],
    base: tuple[Any, ...],
    pb: Playbook,
    raw: Any,
    add: Any,
    get_action: Any,
    *,
    later_ok: bool,
    scenario: bool = False,
) -> None:
    w = _Where(pb, raw, add, [s.id for s in pb.steps], later_ok, scenario)
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        loc = (*base, index)
        sline = line_of(raw, loc)
        if step.id in seen:
            add(line_of(raw, (*loc, "id")), f"duplicate step id {step.id!r} (first at line {seen[step.id]})")
        else:
            seen[step.id] = sline
        if not _check_kind(step, loc, sline, w):
            continue
        if step.run:
            _check_action(step, get_action(step.run), loc, w)
        _check_output_names(step, loc, w)
        _check_confirmation(step, loc, w)
        _check_step_refs(step, index, loc, w)


def _check_kind(step: Step, loc: tuple[Any, ...], sline: int, w: _Where) -> bool:
    """Exactly one of run/shell/manual, and only the keys that kind takes."""
    kinds = [k for k, v in (("run", step.run), ("shell", step.shell), ("manual", step.manual or None)) if v]
    if len(kinds) != 1:
        w.add(
            sline,
            f"step {step.id!r} needs exactly one of run, shell or manual"
            + (f" (has {', '.join(kinds)})" if kinds else ""),
        )
        return False
    if step.with_ and not step.run:
        w.add(line_of(w.raw, (*loc, "with"), key=True), f"step {step.id!r}: 'with' only applies to run steps")
    if step.effect is not None and step.kind != "shell":
        w.add(
            line_of(w.raw, (*loc, "effect"), key=True),
            f"step {step.id!r}: 'effect' only applies to shell steps (actions declare their own)",
        )
    if (step.cwd or step.env) and step.kind != "shell":
        w.add(sline, f"step {step.id!r}: 'cwd' and 'env' only apply to shell steps")
    return True


def _check_action(step: Step, action: Any, loc: tuple[Any, ...], w: _Where) -> None:
    if action is None:
        w.add(line_of(w.raw, (*loc, "run")), f"unknown action {step.run!r} in step {step.id!r}")
        return
    _check_with(step, action, loc, w.raw, w.add)
    for out_name, spec in step.outputs.items():
        src = spec.source if isinstance(spec, OutputSpec) else spec
        if src not in ("stdout", "last_line", "exit_code") and src not in action.outputs:
            w.add(
                line_of(w.raw, (*loc, "outputs", out_name)),
                f"step {step.id!r}: action {step.run!r} has no output {src!r}",
            )


def _check_output_names(step: Step, loc: tuple[Any, ...], w: _Where) -> None:
    for out_name, spec in step.outputs.items():
        if not _IDENT.match(out_name):
            w.add(
                line_of(w.raw, (*loc, "outputs", out_name), key=True),
                f"output name {out_name!r} must be lower-case letters, digits and '_'",
            )
        if isinstance(spec, OutputSpec) and spec.regex:
            try:
                re.compile(spec.regex)
            except re.error as exc:
                w.add(line_of(w.raw, (*loc, "outputs", out_name)), f"invalid regex for output {out_name!r}: {exc}")


def _check_confirmation(step: Step, loc: tuple[Any, ...], w: _Where) -> None:
    if step.kind == "shell" and step_effect(step) == Effect.DESTRUCTIVE and not isinstance(step.confirm, ConfirmTyped):
        # For a command the target is only argv[0] ("rm"): the playbook must say what to type.
        w.add(
            line_of(w.raw, (*loc, "effect")),
            f"step {step.id!r}: a destructive shell step needs confirm: {{typed: …}} naming what it destroys",
        )
    # Confirmation may be raised, never lowered.
    declared = confirm_level(step)
    if declared is not None and step.kind != "manual":
        default = _effect_default_confirm(step_effect(step))
        if CONFIRM_RANK[declared] < CONFIRM_RANK[default]:
            w.add(
                line_of(w.raw, (*loc, "confirm")),
                f"step {step.id!r}: confirm {declared!r} is lower than the {default!r} "
                f"that a {step_effect(step).value} action requires",
            )


def _check_step_refs(step: Step, index: int, loc: tuple[Any, ...], w: _Where) -> None:
    fields: list[tuple[str, Any]] = [("with", step.with_), ("shell", step.shell), ("env", step.env), ("cwd", step.cwd)]
    if isinstance(step.confirm, ConfirmTyped):
        fields.append(("confirm", step.confirm.typed))
    for key, value in fields:
        if value is None:
            continue
        try:
            for ref in refs_in(value):
                _check_ref(ref.parts, step, index, w.pb, w.ids, w.later_ok, w.scenario, w.raw, (*loc, key), w.add)
        except RefError as exc:
            w.add(line_of(w.raw, (*loc, key)), f"step {step.id!r}: {exc}")
    if step.when is not None:
        try:
            from runbook.playbook.refs import condition_refs

            for text in condition_refs(parse_condition(step.when)):
                _check_ref(
                    tuple(text.split(".")),
                    step,
                    index,
                    w.pb,
                    w.ids,
                    w.later_ok,
                    w.scenario,
                    w.raw,
                    (*loc, "when"),
                    w.add,
                )
        except RefError as exc:
            w.add(line_of(w.raw, (*loc, "when")), f"step {step.id!r}: {exc}")


def _check_with(step: Step, action: Any, loc: tuple[Any, ...], raw: Any, add: Any) -> None:
    fields = action.Params.model_fields
    aliases = {f.alias or n: n for n, f in fields.items()}
    for key in step.with_:
        if key not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            add(
                line_of(raw, (*loc, "with", key), key=True),
                f"step {step.id!r}: action {step.run!r} has no parameter {key!r} (it takes: {known})",
            )
    # Type-check literal values now; templated ones are checked when they are resolved.
    literal = {k: v for k, v in step.with_.items() if k in aliases and not has_template(v)}
    templated = {k for k, v in step.with_.items() if has_template(v)}
    try:
        action.Params.model_validate(literal)
    except ValidationError as exc:
        for err in exc.errors():
            field = err["loc"][0] if err["loc"] else None
            if err["type"] == "missing":
                if field in templated:
                    continue
                add(line_of(raw, loc), f"step {step.id!r}: action {step.run!r} needs {field!r} in 'with'")
            elif field in literal:
                msg = err["msg"].removeprefix("Value error, ")
                add(line_of(raw, (*loc, "with", field)), f"step {step.id!r}: with.{field}: {msg}")


def _check_ref(
    parts: tuple[str, ...],
    step: Step,
    index: int,
    pb: Playbook,
    ids: list[str],
    later_ok: bool,
    scenario: bool,
    raw: Any,
    loc: tuple[Any, ...],
    add: Any,
) -> None:
    from runbook.actions.registry import get_action

    line = line_of(raw, loc)
    if parts[0] == "params":
        if len(parts) > 1 and parts[1] not in pb.params:
            add(line, f"step {step.id!r} refers to undefined parameter {parts[1]!r}")
    elif parts[0] == "steps" and len(parts) >= 4:
        target_id, out = parts[1], parts[3]
        if scenario:
            return  # scenario steps may read outputs of playbook steps and of each other
        if target_id not in ids:
            add(line, f"step {step.id!r} refers to unknown step {target_id!r}")
            return
        target_index = ids.index(target_id)
        if target_index >= index and not later_ok:
            which = "itself" if target_index == index else f"the later step {target_id!r}"
            add(line, f"step {step.id!r} refers to outputs of {which}")
            return
        target = pb.steps[target_index]
        known: set[str] = set(target.outputs)
        if target.kind == "shell":
            known |= set(get_action("shell").outputs)  # type: ignore[union-attr]
        elif target.run:
            action = get_action(target.run)
            if action is None:
                return
            known |= set(action.outputs)
        if out not in known:
            add(line, f"step {step.id!r} refers to output {out!r}, which step {target_id!r} does not produce")
