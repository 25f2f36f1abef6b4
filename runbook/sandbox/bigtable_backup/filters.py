"""ListBackups' ``filter`` (an AIP-160 subset) and ``order_by``, over a backup's fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from runbook.sandbox.bigtable_backup.model import Abort, Backup, iso_to_us

_FILTER_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<cmp>(?P<field>[A-Za-z_][A-Za-z_0-9.]*)\s*(?P<op><=|>=|!=|<|>|=|:)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s()]+))'
    r"|(?P<paren>[()])|(?P<kw>AND|OR|NOT)(?![\w.])|(?P<neg>-))",
    re.IGNORECASE,
)
_STRING_FIELDS = ("name", "source_table", "source_backup", "state", "backup_type")
_TIME_FIELDS = ("start_time", "end_time", "expire_time")
_SORT_FIELDS = (*_STRING_FIELDS, *_TIME_FIELDS, "size_bytes")
_Predicate = Callable[[dict[str, Any]], bool]


def backup_fields(b: Backup) -> dict[str, Any]:
    return {
        "name": b.name,
        "source_table": b.source_table,
        "source_backup": b.source_backup,
        "state": "READY",
        "backup_type": {1: "STANDARD", 2: "HOT"}.get(b.backup_type, "BACKUP_TYPE_UNSPECIFIED"),
        "start_time": b.start_time,
        "end_time": b.end_time,
        "expire_time": b.expire_time,
        "size_bytes": b.size_bytes,
    }


def _compare(field: str, op: str, raw: str) -> _Predicate:
    """One ``field op value`` comparison; ``:`` means "contains" for strings, "equals" otherwise."""
    field = field.lower()
    value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    key: Any
    if field in _STRING_FIELDS:
        key = value.lower()
        if op == ":":
            return lambda f: key in f[field].lower()
        conv: Callable[[Any], Any] = str.lower
    elif field in _TIME_FIELDS or field == "size_bytes":
        try:
            key = int(value) if field == "size_bytes" else iso_to_us(value)
        except ValueError:
            raise Abort("INVALID_ARGUMENT", f"Invalid value for {field} in filter: {value!r}") from None
        conv = int
    else:
        raise Abort("INVALID_ARGUMENT", f"Unsupported field in filter: {field!r}")
    ops: dict[str, Callable[[Any, Any], bool]] = {
        ":": lambda a, b: a == b,
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    fn = ops[op]
    return lambda f: fn(conv(f[field]), key)


def _tokens(text: str) -> list[tuple[str, Any]]:
    """Split a filter into comparisons (already compiled), parentheses and AND/OR/NOT."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _FILTER_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise Abort("INVALID_ARGUMENT", f"Invalid filter near {text[pos:]!r}")
        pos = m.end()
        if m["cmp"]:
            tokens.append(("cmp", _compare(m["field"], m["op"], m["value"])))
        elif m["paren"]:
            tokens.append((m["paren"], None))
        elif m["kw"]:
            tokens.append((m["kw"].upper(), None))
        elif m["neg"]:
            tokens.append(("NOT", None))
    return tokens


class _Parser:
    """Recursive descent over the tokens: expression := factor (AND? factor)*,
    factor := term (OR term)*, term := NOT term | ( expression ) | comparison."""

    def __init__(self, text: str, tokens: list[tuple[str, Any]]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def invalid(self) -> Abort:
        return Abort("INVALID_ARGUMENT", f"Invalid filter {self.text!r}")

    def expression(self) -> _Predicate:  # sequence (AND sequence)* -- adjacency is an implicit AND
        parts = [self.factor()]
        while self.peek() not in (None, ")"):
            if self.peek() == "AND":
                self.i += 1
            parts.append(self.factor())
        return lambda f: all(p(f) for p in parts)

    def factor(self) -> _Predicate:  # term (OR term)*
        parts = [self.term()]
        while self.peek() == "OR":
            self.i += 1
            parts.append(self.term())
        return lambda f: any(p(f) for p in parts)

    def term(self) -> _Predicate:
        kind = self.peek()
        self.i += 1
        if kind == "NOT":
            inner = self.term()
            return lambda f: not inner(f)
        if kind == "(":
            inner = self.expression()
            if self.peek() != ")":
                raise Abort("INVALID_ARGUMENT", f"Unbalanced parentheses in filter {self.text!r}")
            self.i += 1
            return inner
        if kind == "cmp":
            predicate: _Predicate = self.tokens[self.i - 1][1]
            return predicate
        raise self.invalid()


def parse_filter(text: str) -> _Predicate:
    """Parse a ListBackups filter: comparisons joined by AND/OR/NOT/-, parentheses; OR binds tighter."""
    text = text.strip()
    tokens = _tokens(text)
    if not tokens:
        return lambda f: True
    parser = _Parser(text, tokens)
    predicate = parser.expression()
    if parser.i != len(tokens):
        raise parser.invalid()
    return predicate


def _field_key(field: str) -> Callable[[Backup], Any]:
    return lambda b: backup_fields(b)[field]


def sort_backups(backups: list[Backup], order_by: str) -> list[Backup]:
    """Sort by ``order_by`` ("field [asc|desc], ..."); default: newest ``start_time`` first."""
    keys: list[tuple[str, bool]] = []
    for part in (order_by or "").split(","):
        words = part.split()
        if not words:
            continue
        field = words[0].lower()
        if (
            field not in _SORT_FIELDS
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise Abort("INVALID_ARGUMENT", f"Invalid order_by: {order_by!r}")
        keys.append((field, len(words) == 2 and words[1].lower() == "desc"))
    if not keys:
        keys = [("start_time", True)]
    out = sorted(backups, key=lambda b: b.name)
    for field, desc in reversed(keys):  # stable sorts, least significant key first
        out.sort(key=_field_key(field), reverse=desc)
    return out
