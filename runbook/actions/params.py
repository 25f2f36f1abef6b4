"""The parameter vocabulary every action shares, so playbooks say the same thing the same way.

* :data:`Duration` — ``90s``, ``15m``, ``4h``, ``30d`` (or a number of seconds); kept as written,
  so a step's description shows what the playbook said; :func:`seconds` turns it into a number.
* :class:`Retention` — every prune action's parameters: ``older_than``, ``keep_latest`` (never
  fewer than one: the newest backup is never pruned) and ``dry_run``; :meth:`Retention.split`
  decides, the action only deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field

from runbook.actions.spec import ActionParams
from runbook.core.durations import check_duration, parse_duration


def _duration(value: str | int | float) -> str | int | float:
    check_duration(value)
    return value


Duration = Annotated[str | int | float, AfterValidator(_duration)]


def seconds(duration: str | int | float) -> float:
    """A :data:`Duration`'s length in seconds."""
    return parse_duration(duration)


T = TypeVar("T")


class Retention(ActionParams):
    """What a prune deletes: older than ``older_than``, except the newest ``keep_latest``.

    Subclasses change the default age with ``older_than: Duration = Field("90d", …)``.
    """

    older_than: Duration = Field("30d", description="Delete what was taken longer ago than this (e.g. 30d, 12h).")
    keep_latest: int = Field(1, ge=1, description="Always keep this many of the newest, however old (at least 1).")
    dry_run: bool = Field(False, description="Only say what would be deleted.")

    def cutoff(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds(self.older_than))

    def split(
        self, items: Sequence[T], taken: Callable[[T], datetime], now: datetime | None = None
    ) -> tuple[list[T], list[T]]:
        """``(delete, keep)``: everything older than the cutoff, except the ``keep_latest`` newest.

        ``taken`` gives an item's (aware) time; both lists come newest first.
        """
        cutoff = self.cutoff(now)
        ordered = sorted(items, key=taken, reverse=True)
        keep = ordered[: self.keep_latest]
        delete = [item for item in ordered[self.keep_latest :] if taken(item) < cutoff]
        keep += [item for item in ordered[self.keep_latest :] if taken(item) >= cutoff]
        return delete, keep

    def describe(self) -> str:
        return f"older than {self.older_than}, keeping the newest {self.keep_latest}" + (
            " (dry run)" if self.dry_run else ""
        )
