"""Time as runbook writes and reads it: always UTC.

* :func:`stamp` names things (dumps, snapshots, backups, state files): ``YYYYmmdd_HHMMSS`` in UTC,
  so names sort by time and mean the same on every host whatever its time zone.
* :func:`parse_stamp` reads such a name back; names written in local time by older versions
  still parse (as the instant they meant on this host) with ``local=True``.
* :func:`parse_utc` reads ISO 8601 from people and APIs (``Z``, an offset, or none, which means
  UTC: at 3 a.m. nobody should guess a time zone) and :func:`iso_z` writes it back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%d_%H%M%S"
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})[_-](\d{2})(\d{2})(\d{2})")


def utc_now() -> datetime:
    return datetime.now(UTC)


def stamp(when: datetime | None = None, *, sep: str = "_") -> str:
    """``YYYYmmdd_HHMMSS`` (UTC) for ``when`` (default now); ``sep`` joins date and time."""
    moment = (when or utc_now()).astimezone(UTC)
    return f"{moment:%Y%m%d}{sep}{moment:%H%M%S}"


def find_stamp(text: str, *, local: bool = False) -> datetime | None:
    """The first ``YYYYmmdd_HHMMSS`` (or ``YYYYmmdd-HHMMSS``) in ``text``, as an aware datetime.

    Parsed by hand (``strptime`` costs more than the rest of a large listing). ``local=True``
    reads it as this host's local time, for names older versions wrote in local time.
    """
    m = _STAMP.search(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = map(int, m.groups())
    try:
        if not local:
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
        return datetime(y, mo, d, h, mi, s).astimezone(UTC)  # noqa: DTZ001 - local time, on purpose
    except ValueError:
        return None


def parse_utc(value: str) -> datetime:
    """ISO 8601 → an aware UTC datetime (microseconds kept).

    Raises:
        ValueError: One sentence naming the value.
    """
    text = value.strip() if isinstance(value, str) else ""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a timestamp like 2025-11-23T10:30:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso_z(when: datetime, *, micro: bool = False) -> str:
    """``2025-11-23T10:30:00Z`` (with ``.ffffff`` when ``micro``)."""
    moment = when.astimezone(UTC)
    return moment.isoformat(timespec="microseconds" if micro else "seconds").replace("+00:00", "Z")
