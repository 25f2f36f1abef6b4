"""The code stays easy to live in: small modules and functions, one vocabulary for event types.

Exceptions are listed here, each with its reason; an exception that no longer applies fails too,
so the list cannot silently grow stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

from runbook.core.events import EventType
from tests.conftest import REPO

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# path (relative to the repository) -> why it may be longer
MODULE_EXCEPTIONS: dict[str, str] = {}
# "path:function" -> why it may be longer
FUNCTION_EXCEPTIONS: dict[str, str] = {}

SOURCES = sorted((REPO / "runbook").rglob("*.py"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_modules_are_short() -> None:
    long = {}
    for path in SOURCES:
        rel = str(path.relative_to(REPO))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            long[rel] = lines
    assert set(long) == set(MODULE_EXCEPTIONS), f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def test_functions_are_short() -> None:
    long = {}
    for path in SOURCES:
        rel = str(path.relative_to(REPO))
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            size = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if size > MAX_FUNCTION_LINES:
                long[f"{rel}:{fn.name}"] = size
    assert set(long) == set(FUNCTION_EXCEPTIONS), f"functions over {MAX_FUNCTION_LINES} lines: {long}"


_VALUES = {t.value for t in EventType}
_PREFIXES = ("step_", "notification_", "incident_", "confirmation_")
_SINGLE_WORDS = {v for v in _VALUES if "_" not in v}  # note, paused, resumed, reopened: also ordinary words


def _event_literals(path: Path) -> list[str]:
    """String constants that name an event type (or a family of them) outside core/events.py.

    Multi-word types (``step_started``) are found anywhere but in dict keys (payload keys may share
    a word); one-word types only where they are compared with something's ``type``/``kind``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keys = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k is not None}
    compared: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr in ("type", "kind") for s in sides):
                compared |= {id(c) for s in sides for c in ast.walk(s)}
    found = []
    for n in ast.walk(tree):
        if not (isinstance(n, ast.Constant) and isinstance(n.value, str)) or id(n) in keys:
            continue
        v = n.value
        if (v in _VALUES and v not in _SINGLE_WORDS) or v in _PREFIXES or (v in _SINGLE_WORDS and id(n) in compared):
            found.append(f"{path.relative_to(REPO)}:{n.lineno}: {v!r}")
    return found


def test_event_types_are_named_only_through_the_enum() -> None:
    found = [
        hit
        for path in SOURCES
        if path.name != "events.py" or path.parent.name != "core"
        for hit in _event_literals(path)
    ]
    assert not found, "use runbook.core.events.EventType instead of:\n" + "\n".join(found)


def test_the_event_literal_check_can_fail(tmp_path: Path) -> None:
    bad = REPO / "runbook" / "_structure_probe.py"
    bad.write_text(
        'def f(ev):\n    return ev.type == "step_started" or ev.kind == "note" or ev.type.startswith("step_")\n'
    )
    try:
        assert len(_event_literals(bad)) == 3
    finally:
        bad.unlink()
