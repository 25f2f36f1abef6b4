"""``{{ … }}`` references and ``when:`` conditions.

A reference is a dotted path, nothing more: ``params.NAME``, ``steps.ID.outputs.NAME``,
``incident.id|started|workdir``, ``env.name`` / ``env.STORE.KEY``, ``mode``. There is no code in a
template: the resolved value becomes one argv element or one API argument as it is.

``when:`` is a small expression language parsed with :mod:`ast` and evaluated by walking a
whitelist of node types (comparisons, ``and``/``or``/``not``, ``in``, literals, references).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")
ROOTS = ("params", "steps", "incident", "env", "mode")
INCIDENT_KEYS = ("id", "started", "workdir", "operator")


class RefError(ValueError):
    """A reference that is malformed or cannot be resolved."""


class Unknown:
    """Stands for a value not known yet (dry-run: the output of a step that did not run)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def __str__(self) -> str:
        return f"<{self.ref}>"

    __repr__ = __str__


class UnknownText(str):
    """Text with an :class:`Unknown` interpolated into it (dry-run): marked by type, never guessed
    from its content (a parameter may legitimately contain ``<steps.x.outputs.y>``)."""


@dataclass(frozen=True)
class Ref:
    """A parsed reference path."""

    text: str
    parts: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.parts[0]


def parse_ref(text: str) -> Ref:
    text = text.strip()
    if not PATH.match(text):
        raise RefError(f"{{{{ {text} }}}} is not a reference: write e.g. params.NAME or steps.ID.outputs.NAME")
    parts = tuple(text.split("."))
    root = parts[0]
    if root not in ROOTS:
        raise RefError(f"unknown reference {text!r}: it must start with one of {', '.join(ROOTS)}")
    if root == "params" and len(parts) != 2:
        raise RefError(f"{text!r}: write params.NAME")
    if root == "steps" and (len(parts) < 4 or parts[2] != "outputs"):
        raise RefError(f"{text!r}: write steps.ID.outputs.NAME (or steps.ID.outputs.NAME.KEY for a mapping)")
    if root == "incident" and (len(parts) != 2 or parts[1] not in INCIDENT_KEYS):
        raise RefError(f"{text!r}: incident has {', '.join(INCIDENT_KEYS)}")
    if root == "mode" and len(parts) != 1:
        raise RefError(f"{text!r}: write mode")
    if root == "env" and len(parts) < 2:
        raise RefError(f"{text!r}: write env.name or env.STORE.KEY")
    return Ref(text, parts)


def refs_in(value: Any) -> Iterator[Ref]:
    """Every reference in a value (strings inside lists and dicts too)."""
    if isinstance(value, str):
        for m in TEMPLATE.finditer(value):
            yield parse_ref(m.group(1))
    elif isinstance(value, list):
        for item in value:
            yield from refs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from refs_in(item)


def has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False


Lookup = Callable[[Ref], Any]


def render(value: Any, lookup: Lookup) -> Any:
    """Resolve references in ``value``.

    A string that is exactly one reference becomes the referenced value with its type (an int
    stays an int); references inside longer strings are interpolated as text. Lists and dicts
    are rendered item by item, so each argv element stays one element.
    """
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value.strip()) if "{{" in value else None
        if whole and value.strip() == value:
            got = lookup(parse_ref(whole.group(1)))
            if got is None:
                raise RefError(f"{value} has no value")
            return got
        if "{{" not in value:
            return value

        unknown = False

        def sub(m: re.Match[str]) -> str:
            nonlocal unknown
            got = lookup(parse_ref(m.group(1)))
            if got is None:
                raise RefError(f"{m.group(0)} has no value")
            if isinstance(got, Unknown):
                unknown = True
            return _text(got)

        text = TEMPLATE.sub(sub, value)
        return UnknownText(text) if unknown else text
    if isinstance(value, list):
        return [render(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: render(v, lookup) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def contains_unknown(value: Any) -> bool:
    if isinstance(value, Unknown | UnknownText):
        return True
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    return False


def make_lookup(
    *,
    params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    incident: Mapping[str, Any],
    env: Callable[[tuple[str, ...]], Any],
    mode: str,
    unknown_outputs: bool = False,
) -> Lookup:
    """A resolver over the live state of an incident."""

    def lookup(ref: Ref) -> Any:
        root = ref.root
        if root == "params":
            if ref.parts[1] not in params:
                raise RefError(f"unknown parameter {ref.parts[1]!r}")
            return params[ref.parts[1]]
        if root == "steps":
            step_id, name = ref.parts[1], ref.parts[3]
            step_out = outputs.get(step_id)
            if step_out is None or name not in step_out:
                if unknown_outputs:
                    return Unknown(ref.text)
                raise RefError(f"step {step_id!r} has no output {name!r} (did it run?)")
            value = step_out[name]
            for key in ref.parts[4:]:  # steps.ID.outputs.counts.datasets
                if isinstance(value, dict) and key in value:
                    value = value[key]
                elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                    value = value[int(key)]
                else:
                    raise RefError(f"{ref.text}: output {name!r} of step {step_id!r} has no {key!r}")
            return value
        if root == "incident":
            return incident[ref.parts[1]]
        if root == "mode":
            return mode
        return env(ref.parts[1:])

    return lookup


# --- when: conditions -------------------------------------------------------------------------

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Load,
    ast.List,
    ast.Tuple,
)


# Evaluation recurses once per level: a bound here keeps a hostile condition (2,000 unary minus
# signs fit in the length limit) from crashing the run with RecursionError; real ones use < 10.
MAX_CONDITION_DEPTH = 32


def _depth(tree: ast.AST) -> int:
    """How deep the expression nests (iteratively: the tree itself may be too deep to recurse)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def parse_condition(text: str) -> ast.Expression:
    """Parse a ``when:`` condition; ``{{ ref }}`` wrappers are accepted and unwrapped.

    Raises:
        RefError: Not a valid condition (with the reason).
    """
    if not isinstance(text, str):
        raise RefError("a condition must be a string")
    if len(text) > 2000:
        raise RefError("the condition is too long")
    src = TEMPLATE.sub(lambda m: m.group(1), text)
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise RefError(f"cannot parse the condition {text!r}") from None
    if _depth(tree) > MAX_CONDITION_DEPTH:
        raise RefError(f"the condition is nested more than {MAX_CONDITION_DEPTH} levels deep")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise RefError(f"the condition {text!r} uses {type(node).__name__}, which is not allowed")
        if isinstance(node, ast.Name) and node.id not in (*ROOTS, "true", "false", "null"):
            raise RefError(f"unknown name {node.id!r} in the condition {text!r}")
    for ref in condition_refs(tree):
        parse_ref(ref)
    return tree


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def condition_refs(tree: ast.AST) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name):
            dotted = _dotted(node)
            if dotted and dotted.split(".")[0] in ROOTS:
                out.append(dotted)
    # Keep only maximal paths (params.x, not params).
    return [r for r in out if not any(o != r and o.startswith(r + ".") for o in out)]


def evaluate_condition(tree: ast.Expression, lookup: Lookup) -> Any:
    """Evaluate a parsed condition. Unknown values (dry-run) make the result Unknown."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        if isinstance(node, ast.Name | ast.Attribute):
            dotted = _dotted(node)
            assert dotted is not None
            return lookup(parse_ref(dotted))
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(v, Unknown):
                return v
            if isinstance(node.op, ast.Not):
                return not v
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise RefError(f"cannot negate {v!r}")
            return -v
        if isinstance(node, ast.BoolOp):
            # Left to right, stopping as Python does: `params.x and steps.x.outputs.ok` must not
            # read the outputs of a step that was skipped because params.x is false.
            is_and = isinstance(node.op, ast.And)
            unknown: Unknown | None = None
            for operand in node.values:
                v = ev(operand)
                if isinstance(v, Unknown):
                    unknown = unknown or v
                elif is_and and not v:
                    return False
                elif not is_and and v:
                    return True
            return unknown if unknown is not None else is_and
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if isinstance(left, Unknown) or isinstance(right, Unknown):
                    return left if isinstance(left, Unknown) else right
                if not _compare(op, left, right):
                    return False
                left = right
            return True
        raise RefError(f"unsupported condition element {type(node).__name__}")

    return ev(tree)


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    # Outputs captured from text are strings; compare them to numbers as numbers.
    if isinstance(a, str) and isinstance(b, int | float) and not isinstance(b, bool):
        try:
            return float(a), b
        except ValueError:
            return a, b
    if isinstance(b, str) and isinstance(a, int | float) and not isinstance(a, bool):
        try:
            return a, float(b)
        except ValueError:
            return a, b
    return a, b


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    if isinstance(op, ast.In | ast.NotIn):
        try:
            result = a in b if isinstance(b, list | str | dict) else False
        except TypeError:
            raise RefError(f"cannot test whether {a!r} is in {b!r}") from None
        return result if isinstance(op, ast.In) else not result
    a, b = _coerce_pair(a, b)
    try:
        if isinstance(op, ast.Eq):
            return bool(a == b)
        if isinstance(op, ast.NotEq):
            return bool(a != b)
        if isinstance(op, ast.Lt):
            return bool(a < b)
        if isinstance(op, ast.LtE):
            return bool(a <= b)
        if isinstance(op, ast.Gt):
            return bool(a > b)
        if isinstance(op, ast.GtE):
            return bool(a >= b)
    except TypeError:
        raise RefError(f"cannot compare {a!r} with {b!r}") from None
    raise RefError("unsupported comparison")
