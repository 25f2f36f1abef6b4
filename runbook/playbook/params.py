"""Typed playbook parameters: coercion of user values, and the checks that keep them safe.

Every value an operator gives (``-p k=v``, the TUI form) passes through :func:`coerce` before an
incident opens, so nothing runs with an invalid value. Strings refuse control characters and the
invisible Unicode that can make two different values look alike on a screen.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from runbook.core.durations import parse_duration
from runbook.core.timestamps import iso_z, parse_utc
from runbook.playbook.model import ParamSpec, ParamType

MAX_LEN = 4096
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Bidi overrides, zero-width characters and other format characters (Unicode category Cf).
_INVISIBLE_CATEGORIES = {"Cf", "Co", "Cs"}


class ParamError(ValueError):
    """A parameter value is not acceptable; the message is one sentence."""


def check_text(name: str, value: str, *, allow_newlines: bool = False) -> str:
    """Refuse over-long values, control characters and invisible/format characters."""
    if len(value) > MAX_LEN:
        raise ParamError(f"parameter {name!r} is too long ({len(value)} characters, at most {MAX_LEN})")
    for ch in value:
        cat = unicodedata.category(ch)
        if cat == "Cc" and not (ch == "\t" or (allow_newlines and ch == "\n")):
            raise ParamError(f"parameter {name!r} contains a control character (U+{ord(ch):04X})")
        if cat in _INVISIBLE_CATEGORIES:
            raise ParamError(f"parameter {name!r} contains an invisible Unicode character (U+{ord(ch):04X})")
    return value


def coerce(name: str, spec: ParamSpec, raw: Any) -> Any:
    """Turn ``raw`` (a string from the command line, or a YAML value) into the parameter's type.

    Raises:
        ParamError: One sentence naming the parameter and what is wrong.
    """
    t = spec.type
    # A secret's value must not appear in an error message (terminal, CI logs).
    show = _hidden if spec.secret else _show
    if raw is None:
        raise ParamError(f"parameter {name!r} has no value")
    if t == ParamType.BOOL:
        return _bool(name, raw, show)
    if t == ParamType.INT:
        return _int(name, spec, raw, show)
    if isinstance(raw, bool | int | float) and t in (ParamType.STRING, ParamType.DURATION):
        raw = str(raw) if not isinstance(raw, bool) else str(raw).lower()
    if not isinstance(raw, str):
        raise ParamError(f"parameter {name!r} must be text, not {type(raw).__name__}")
    value = _checked_text(name, spec, check_text(name, raw), show)
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        raise ParamError(f"parameter {name!r} does not match the pattern {spec.pattern!r}: {show(value)}")
    return value


def _bool(name: str, raw: Any, show: Callable[[Any], str]) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "y", "1", "on"):
        return True
    if text in ("false", "no", "n", "0", "off"):
        return False
    raise ParamError(f"parameter {name!r} must be true or false, not {show(raw)}")


def _int(name: str, spec: ParamSpec, raw: Any, show: Callable[[Any], str]) -> int:
    if isinstance(raw, bool):
        raise ParamError(f"parameter {name!r} must be a whole number, not {show(raw)}")
    try:
        value = int(str(raw).strip(), 10) if not isinstance(raw, int) else raw
    except ValueError:
        raise ParamError(f"parameter {name!r} must be a whole number, not {show(raw)}") from None
    if spec.min is not None and value < spec.min:
        raise ParamError(f"parameter {name!r} must be at least {spec.min}, not {show(value)}")
    if spec.max is not None and value > spec.max:
        raise ParamError(f"parameter {name!r} must be at most {spec.max}, not {show(value)}")
    return value


def _checked_text(name: str, spec: ParamSpec, value: str, show: Callable[[Any], str]) -> str:
    """A text value checked against its type (identifier, path, enum, duration, timestamp)."""
    t = spec.type
    if t == ParamType.IDENTIFIER and (not IDENTIFIER.match(value) or value in (".", "..")):
        raise ParamError(
            f"parameter {name!r} must be an identifier (letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit), not {show(value)}"
        )
    if t == ParamType.PATH:
        if not value.strip():
            raise ParamError(f"parameter {name!r} must be a path, not an empty value")
        if "\n" in value:
            raise ParamError(f"parameter {name!r} must be a path on one line")
        if ".." in value.replace("\\", "/").split("/"):
            raise ParamError(f"parameter {name!r} must not contain '..' (path traversal)")
    elif t == ParamType.ENUM and value not in (spec.choices or []):
        raise ParamError(f"parameter {name!r} must be one of {', '.join(spec.choices or [])}, not {show(value)}")
    elif t == ParamType.DURATION:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ParamError(f"parameter {name!r}: {exc}") from None
    elif t == ParamType.TIMESTAMP:
        return normalize_timestamp(name, value)
    return value


def normalize_timestamp(name: str, value: str) -> str:
    """ISO 8601 (``2025-11-23 10:30:00``, ``…T10:30:00Z``, ``…+02:00``) → UTC ``…T10:30:00Z``.

    A time without an offset is taken as UTC: at 3 a.m. nobody should guess a time zone.
    """
    try:
        parsed = parse_utc(value)
    except ValueError:
        raise ParamError(
            f"parameter {name!r} must be a timestamp like 2025-11-23T10:30:00Z, not {_show(value)}"
        ) from None
    return iso_z(parsed)


def _hidden(_value: Any) -> str:
    return "the value given"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def bind(specs: dict[str, ParamSpec], given: dict[str, Any], env_lookup: Any = None) -> dict[str, Any]:
    """Bind the given values and defaults to a playbook's params.

    Defaults may refer to the environment (``default: "{{ env.storage.root }}"``); ``env_lookup``
    resolves those.

    Raises:
        ParamError: An unknown parameter, a missing required one, or a bad value (the first found).
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        known = ", ".join(sorted(specs)) or "none"
        raise ParamError(f"unknown parameter {unknown[0]!r} (this playbook takes: {known})")
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            out[name] = coerce(name, spec, given[name])
        elif spec.default is not None:
            default = spec.default
            if isinstance(default, str) and "{{" in default:
                if env_lookup is None:
                    raise ParamError(f"parameter {name!r} has a default that needs an environment")
                from runbook.playbook.refs import RefError, make_lookup, render

                lookup = make_lookup(params={}, outputs={}, incident={}, env=env_lookup, mode="")
                try:
                    default = render(default, lookup)
                except (RefError, RuntimeError, ValueError) as exc:
                    raise ParamError(f"default of parameter {name!r}: {exc}") from None
                except Exception as exc:  # ActionError: the environment lacks that setting
                    raise ParamError(f"default of parameter {name!r} cannot be resolved: {exc}") from None
            out[name] = coerce(name, spec, default)
        elif spec.required:
            hint = f" ({spec.help})" if spec.help else ""
            raise ParamError(f"parameter {name!r} is required{hint}: pass -p {name}=VALUE")
        else:
            out[name] = None
    return out
