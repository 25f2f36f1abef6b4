"""The deleting half of a prune: :meth:`Retention.split <runbook.actions.params.Retention.split>`
chooses, :func:`delete_each` deletes what it chose, one item at a time.

One loop for every store's prune, so each says the same things the same way: ``would delete …``
for a dry run (nothing is touched), ``deleted …`` after each deletion, and a stopped step stops
between two deletions (never in the middle of one) with how many were already deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from runbook.core.errors import ActionError

if TYPE_CHECKING:
    from runbook.actions.spec import StepContext

T = TypeVar("T")


def delete_each(
    ctx: StepContext,
    doomed: Sequence[T],
    *,
    dry_run: bool,
    label: Callable[[T], str],
    delete: Callable[[T], None],
    stopped: Callable[[int], str],
) -> list[T]:
    """Delete ``doomed`` in the order given, logging ``deleted <label>`` after each; what was deleted.

    With ``dry_run`` nothing is deleted: each is logged as ``would delete <label>`` and the result is
    empty. When the step is stopped, the next deletion is not started: ``ActionError(stopped(n))``,
    ``n`` being how many were deleted.
    """
    if dry_run:
        for item in doomed:
            ctx.log(f"would delete {label(item)}")
        return []
    deleted: list[T] = []
    for item in doomed:
        if ctx.cancelled.is_set():
            raise ActionError(stopped(len(deleted)))
        delete(item)
        deleted.append(item)
        ctx.log(f"deleted {label(item)}")
    return deleted
