"""Scans: rows streamed with progress lines and outage notices, keys-only counting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from runbook.actions.bigtable.location import Where
from runbook.actions.spec import StepContext
from runbook.stores import bigtable as bts

PROGRESS_EVERY = 5.0  # seconds between "N rows so far" lines


class Progress:
    """Logs "N rows so far" at most every few seconds."""

    def __init__(self, ctx: StepContext, what: str) -> None:
        self.ctx, self.what = ctx, what
        self.next = time.monotonic() + PROGRESS_EVERY

    def tick(self, n: int) -> None:
        if n % 1024 == 0:
            now = time.monotonic()
            if now >= self.next:
                self.ctx.log(f"{self.what}: {n} rows so far")
                self.next = now + PROGRESS_EVERY


def retry_line(ctx: StepContext, what: str) -> Callable[[BaseException], None]:
    """An ``on_retry`` that says once that the store is not answering."""
    said: list[bool] = []

    def on_retry(exc: BaseException) -> None:
        if not said:
            said.append(True)
            ctx.log(f"{what}: store not answering ({type(exc).__name__}), retrying")

    return on_retry


def keys_only_filter() -> Any:
    from google.cloud.bigtable.data import row_filters as rf

    return rf.RowFilterChain(filters=[rf.CellsRowLimitFilter(1), rf.StripValueTransformerFilter(True)])


def stream(
    ctx: StepContext, w: Where, table: str, what: str, keys: list[bytes] | None = None, row_filter: Any = None
) -> Iterator[Any]:
    """Every row of ``table`` (or of ``keys``), riding out short outages within the step's budget."""
    return bts.read_rows(
        w.h.table(w.instance, table),
        row_keys=keys,
        row_filter=row_filter,
        budget=w.budget,
        cancelled=ctx.cancelled,
        on_retry=retry_line(ctx, what),
    )


def first_key(w: Where, table: str, after: bytes | None = None) -> bytes | None:
    """The first row key of ``table`` (after ``after``), or None when there is none."""
    rows = bts.read_rows(
        w.h.table(w.instance, table),
        start_after=after,
        row_filter=keys_only_filter(),
        limit=1,
        budget=w.budget,
    )
    row = next(rows, None)
    return row.row_key if row is not None else None


def count_rows(ctx: StepContext, w: Where, table: str) -> int:
    progress = Progress(ctx, f"counting {table}")
    n = 0
    for _ in stream(ctx, w, table, f"counting {table}", row_filter=keys_only_filter()):
        n += 1
        progress.tick(n)
    return n
