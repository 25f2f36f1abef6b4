"""Durations as playbooks write them: ``90s``, ``15m``, ``1h``, ``4h``, ``30d``, ``1h30m``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (a number of seconds or a string like ``1h30m``).

    Raises:
        ValueError: One sentence saying what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError("a duration must look like 30s, 15m, 1h or 30d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration must look like 30s, 15m, 1h or 30d")
    text = value.strip().lower().replace(" ", "")
    if text.isdigit():
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration: write e.g. 30s, 15m, 1h or 30d")
    return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))


def check_duration(value: object, what: str | None = None) -> object:
    """A pydantic validator body: ``value`` unchanged if it is a duration (or None).

    Raises:
        ValueError: Not a duration; the message names ``what`` when given.
    """
    if value is not None:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}" if what else str(exc)) from None
    return value


def format_duration(seconds: float) -> str:
    """Short human form: ``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


def describe_seconds(value: object, missing: str = "—") -> str:
    """:func:`format_duration` for a journaled value that may be absent (``missing``) or not a
    number (shown as it is)."""
    if value is None:
        return missing
    try:
        return format_duration(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
