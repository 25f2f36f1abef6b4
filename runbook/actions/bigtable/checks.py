"""Integrity checks after a restore or an import: ``bigtable.row_count`` and ``bigtable.verify_rows``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from runbook.actions.bigtable.location import LocationParams, Where, key_text, show
from runbook.actions.bigtable.reading import Progress, count_rows, first_key, keys_only_filter, stream
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

Cells = list[tuple[str, bytes, int, bytes]]  # (family, qualifier, timestamp µs, value), sorted
Mismatch = tuple[bytes, str]  # row key, how it differs

# --- bigtable.row_count ----------------------------------------------------------------------


class RowCountParams(LocationParams):
    table: str | None = Field(None, description="Table (default: gcp bigtable_table).")
    expected: int | None = Field(None, ge=0, description="Fail unless exactly this many rows.")
    min_rows: int | None = Field(None, ge=0, description="Fail when fewer rows.")


class RowCountOutputs(ActionOutputs):
    rows: int
    """Number of rows."""


@action(
    "bigtable.row_count",
    Effect.READ_ONLY,
    "Count a Bigtable table's rows (keys-only scan); optionally check the count.",
    target=lambda p: show(p.table, "bigtable_table"),
    describe=lambda p: (
        f"Bigtable.ReadRows(table={show(p.table, 'bigtable_table')}, "
        f"filter=cells_per_row_limit(1)+strip_value) and count"
    ),
)
def row_count(ctx: StepContext, params: RowCountParams) -> RowCountOutputs:
    w, table = Where.for_table(ctx, params, params.table)
    with w.guard(f"count the rows of table {table}"):
        rows = count_rows(ctx, w, table)
    ctx.log(f"{table}: {rows} rows")
    if params.expected is not None and rows != params.expected:
        raise ActionError(f"Table {table} has {rows} rows, expected {params.expected}.")
    if params.min_rows is not None and rows < params.min_rows:
        raise ActionError(f"Table {table} has {rows} rows, fewer than {params.min_rows}.")
    return RowCountOutputs(rows=rows)


# --- bigtable.verify_rows --------------------------------------------------------------------


class VerifyParams(LocationParams):
    table: str
    """The table to check (e.g. a restored or imported copy)."""
    reference_table: str | None = None
    """The table it must equal (default: gcp bigtable_table)."""
    reference_instance: str | None = None
    """Default: the reference region's bigtable_instance."""
    reference_region: str | None = None
    """Default: the same region as table."""
    sample: int = Field(100, ge=0, description="Rows to compare; 0 compares every row of both tables.")
    fail: bool = True
    """Fail on a mismatch (otherwise only report it)."""


class VerifyOutputs(ActionOutputs):
    sampled: int
    """Rows compared."""
    mismatches: int
    """Rows that differ or are missing."""
    first_mismatch: str
    """Key of the first differing row, or empty."""


def _describe_verify(p: VerifyParams) -> str:
    how = "every row" if p.sample == 0 else f"{p.sample} rows sampled via SampleRowKeys"
    ref = p.reference_table or "<gcp.bigtable_table>"
    where = f" in {p.reference_region}" if p.reference_region else ""
    return f"Bigtable.ReadRows on {p.table} and {ref}{where}: compare {how}, all cells"


@action("bigtable.verify_rows", Effect.READ_ONLY,
        "Compare sampled rows (every cell and timestamp) of a table against a reference table.",
        target=lambda p: p.table, describe=_describe_verify)
def verify_rows(ctx: StepContext, params: VerifyParams) -> VerifyOutputs:
    w = Where(ctx, params.instance, params.region)
    rw = Where(ctx, params.reference_instance, params.reference_region or w.region)
    reference = rw.table_id(params.reference_table)
    table = params.table
    if (rw.instance, rw.region, reference) == (w.instance, w.region, table):
        raise ActionError(
            f"verify_rows would compare table {table} with itself: name a different reference_table."
        )
    ctx.log(f"comparing {table} in {w.where()} with {reference} in {rw.where()}")
    with rw.guard(f"verify table {table} against {reference}"):
        if params.sample == 0:
            sampled, bad = _compare_all(ctx, w, table, rw, reference)
        else:
            sampled, bad = _compare_sample(ctx, w, table, rw, reference, params.sample)
    ctx.log(f"{sampled} row(s) compared, {len(bad)} mismatch(es)")
    if not bad:
        return VerifyOutputs(sampled=sampled, mismatches=0, first_mismatch="")
    key, how = key_text(bad[0][0]), bad[0][1]
    ctx.log(f"first mismatch: row {key} {how}")
    if params.fail:
        raise ActionError(
            f"Table {table} does not match {reference}: row {key} {how} "
            f"({len(bad)} of {sampled} compared rows differ)."
        )
    return VerifyOutputs(sampled=sampled, mismatches=len(bad), first_mismatch=key)


def _row_cells(row: Any) -> Cells:
    return sorted((c.family, c.qualifier, c.timestamp_micros, c.value) for c in row.cells)


def _difference(ref: Cells, got: Cells) -> str:
    """Short words for how two rows' cells differ (the first differing column)."""

    def cols(cells: Cells) -> dict[tuple[str, bytes], list[tuple[int, bytes]]]:
        out: dict[tuple[str, bytes], list[tuple[int, bytes]]] = {}
        for fam, q, ts, v in cells:
            out.setdefault((fam, q), []).append((ts, v))
        return out

    a, b = cols(ref), cols(got)
    for col in sorted(set(a) | set(b)):
        name = f"{col[0]}:{key_text(col[1])}"
        if col not in b:
            return f"lacks column {name}"
        if col not in a:
            return f"has an extra column {name}"
        if len(a[col]) != len(b[col]):
            return f"has {len(b[col])} versions of {name}, the reference {len(a[col])}"
        if a[col] != b[col]:
            return f"has a different value or timestamp in {name}"
    return "differs"


def _compare_all(
    ctx: StepContext, w: Where, table: str, rw: Where, reference: str
) -> tuple[int, list[Mismatch]]:
    """Merge-walk both tables in key order; every row of either side is compared."""
    bad: list[Mismatch] = []
    a_it = stream(ctx, rw, reference, f"reading {reference}")
    b_it = stream(ctx, w, table, f"reading {table}")
    a: Any = next(a_it, None)  # the next row of each side; None once that side is done
    b: Any = next(b_it, None)
    n = 0
    progress = Progress(ctx, f"comparing {table}")
    while a is not None or b is not None:
        n += 1
        progress.tick(n)
        if b is None or (a is not None and a.row_key < b.row_key):
            bad.append((a.row_key, f"is missing from {table}"))
            a = next(a_it, None)
        elif a is None or b.row_key < a.row_key:
            bad.append((b.row_key, f"is in {table} but not in the reference"))
            b = next(b_it, None)
        else:
            ra, rb = _row_cells(a), _row_cells(b)
            if ra != rb:
                bad.append((a.row_key, _difference(ra, rb)))
            a, b = next(a_it, None), next(b_it, None)
    return n, bad


def _compare_sample(
    ctx: StepContext, w: Where, table: str, rw: Where, reference: str, sample: int
) -> tuple[int, list[Mismatch]]:
    keys = _sample_keys(ctx, rw, reference, sample)
    if not keys:
        # An empty reference: the copy must be empty too.
        extra = first_key(w, table)
        return 0, [(extra, f"is in {table} but the reference is empty")] if extra is not None else []
    ref_rows = {r.row_key: _row_cells(r) for r in stream(ctx, rw, reference, f"reading {reference}", keys)}
    got_rows = {r.row_key: _row_cells(r) for r in stream(ctx, w, table, f"reading {table}", keys)}
    bad: list[Mismatch] = []
    for key in keys:
        ref_cells = ref_rows.get(key)
        got = got_rows.get(key)
        if ref_cells is None:
            continue  # deleted from the reference since it was sampled
        if got is None:
            bad.append((key, f"is missing from {table}"))
        elif got != ref_cells:
            bad.append((key, _difference(ref_cells, got)))
    return len(keys), bad


def _sample_keys(ctx: StepContext, rw: Where, reference: str, sample: int) -> list[bytes]:
    """``sample`` keys spread over the reference table.

    SampleRowKeys gives tablet boundaries of big tables (one read per boundary finds a real
    key there); a table that is one tablet is small, so a keys-only scan picks evenly spaced keys.
    """
    bounds = [
        k for k, _ in rw.h.table(rw.instance, reference).sample_row_keys(operation_timeout=rw.budget) if k
    ]
    if len(bounds) + 1 >= sample:
        step = (len(bounds) + 1) / sample
        starts = [([b""] + bounds)[int(i * step)] for i in range(sample)]
        found = (first_key(rw, reference, after=start or None) for start in starts)
        return sorted({k for k in found if k is not None})
    all_keys = [
        r.row_key for r in stream(ctx, rw, reference, f"reading {reference}", row_filter=keys_only_filter())
    ]
    if len(all_keys) <= sample:
        return all_keys
    if sample == 1:
        return [all_keys[-1]]
    # Evenly spaced, first and last key included (edges are where truncated copies differ).
    last = len(all_keys) - 1
    return [all_keys[round(i * last / (sample - 1))] for i in range(sample)]
