"""Validation after a backup or a restore: ``bigquery.row_counts``, ``bigquery.compare_counts``
and ``bigquery.verify_rows`` (sampled rows, every column).

Row counts are exact ``COUNT(*)``: ``Table.num_rows`` is stale after DML on bqemulator and
excludes the streaming buffer on BigQuery.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from runbook.actions.bigquery.params import (
    COLUMN_RE,
    DATASET_RE,
    TABLE_RE,
    DatasetParams,
    ProjectParams,
    TableList,
    TablesParams,
    show_dataset,
    show_table,
    which_tables,
)
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

# --- bigquery.row_counts ---------------------------------------------------------------------


class RowCountsParams(TablesParams):
    pass


class RowCountsOutputs(ActionOutputs):
    counts: dict[str, int]
    """Rows per table."""
    total: int
    """Rows in all tables."""
    dataset: str
    """The dataset."""


@action(
    "bigquery.row_counts",
    Effect.READ_ONLY,
    "Exact row count (COUNT(*)) of every table of a dataset, or of the listed tables.",
    target=lambda p: show_dataset(p.dataset),
    describe=lambda p: (
        f"bigquery.query(SELECT COUNT(*) … UNION ALL …) over {show_dataset(p.dataset)}: "
        f"{which_tables(p.tables)}"
    ),
)
def row_counts(ctx: StepContext, params: RowCountsParams) -> RowCountsOutputs:
    s, ds = Session.for_dataset(ctx, params)
    tables = s.tables_or_all(ds, params.tables)
    counts = s.counts(ds, tables) if tables else {}
    s.log_rows(ds, counts)
    total = sum(counts.values())
    ctx.log(f"{ds}: {len(counts)} tables, {total:,} rows")
    return RowCountsOutputs(counts=counts, total=total, dataset=ds)


# --- bigquery.compare_counts -----------------------------------------------------------------

_DATASET_OR_TABLE = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)?$"


class CompareCountsParams(ProjectParams):
    a: str = Field(pattern=_DATASET_OR_TABLE, description="A dataset, or dataset.table.")
    b: str = Field(pattern=_DATASET_OR_TABLE, description="The same kind as a.")
    tables: TableList = None
    """For datasets: only these tables (default: every table on either side)."""
    tolerance: int = Field(0, ge=0, description="Allowed difference in rows per table.")
    fail: bool = Field(True, description="Fail the step on a mismatch (else only report equal=false).")

    @model_validator(mode="after")
    def _same_kind(self) -> CompareCountsParams:
        if ("." in self.a) != ("." in self.b):
            raise ValueError("a and b must both be datasets or both be dataset.table")
        if self.tables and "." in self.a:
            raise ValueError("tables only applies when comparing two datasets")
        return self


class CompareCountsOutputs(ActionOutputs):
    equal: bool
    """true when every count matched (within tolerance)."""
    counts_a: dict[str, int]
    """Rows per table of a."""
    counts_b: dict[str, int]
    """Rows per table of b."""
    mismatches: list[str]
    """One phrase per mismatch."""


def _split(name: str) -> tuple[str, str | None]:
    ds, _, table = name.partition(".")
    return ds, table or None


Pair = tuple[str, int | None, int | None]


def _count_both(s: Session, params: CompareCountsParams) -> tuple[dict[str, int], dict[str, int], list[Pair]]:
    """Counts of a and of b, and the (label, count a, count b) pairs to compare."""
    ds_a, t_a = _split(params.a)
    ds_b, t_b = _split(params.b)
    if t_a and t_b:
        counts_a, counts_b = s.counts(ds_a, [t_a]), s.counts(ds_b, [t_b])
        # Two tables: compare the one pair under a shared key.
        return counts_a, counts_b, [(t_a, counts_a.get(t_a), counts_b.get(t_b))]
    names_a = s.tables_or_all(ds_a, params.tables)
    names_b = s.tables_or_all(ds_b, params.tables)
    counts_a = s.counts(ds_a, names_a) if names_a else {}
    counts_b = s.counts(ds_b, names_b) if names_b else {}
    every = sorted(set(names_a) | set(names_b))
    return counts_a, counts_b, [(t, counts_a.get(t), counts_b.get(t)) for t in every]


def _mismatches(ctx: StepContext, params: CompareCountsParams, pairs: list[Pair]) -> list[str]:
    (ds_a, t_a), ds_b = _split(params.a), _split(params.b)[0]
    mismatches = []
    for table, na, nb in pairs:
        label = f"{params.a} vs {params.b}" if t_a else table
        if na is None:
            mismatches.append(f"{table} missing from {ds_a}")
        elif nb is None:
            mismatches.append(f"{table} missing from {ds_b}")
        elif abs(na - nb) > params.tolerance:
            mismatches.append(f"{label} {na:,} vs {nb:,}")
        ctx.log(f"{label}: {na if na is not None else '-'} vs {nb if nb is not None else '-'}")
    if not pairs:
        mismatches.append("no tables on either side")
    return mismatches


@action(
    "bigquery.compare_counts",
    Effect.READ_ONLY,
    "Compare row counts of two tables or of two datasets table by table (e.g. source vs backup).",
    target=lambda p: f"{p.a} vs {p.b}",
    describe=lambda p: (
        f"bigquery.query(SELECT COUNT(*) FROM {p.a}) vs bigquery.query(SELECT COUNT(*) FROM {p.b})"
    ),
)
def compare_counts(ctx: StepContext, params: CompareCountsParams) -> CompareCountsOutputs:
    s = Session.open(ctx, params.project)
    counts_a, counts_b, pairs = _count_both(s, params)
    mismatches = _mismatches(ctx, params, pairs)
    equal = not mismatches
    if not equal and params.fail:
        shown = "; ".join(mismatches[:5]) + (
            f"; and {len(mismatches) - 5} more" if len(mismatches) > 5 else ""
        )
        raise ActionError(f"Row counts differ between {params.a} and {params.b}: {shown}.")
    ctx.log("row counts match" if equal else f"{len(mismatches)} mismatches")
    return CompareCountsOutputs(equal=equal, counts_a=counts_a, counts_b=counts_b, mismatches=mismatches)


# --- bigquery.verify_rows --------------------------------------------------------------------


class VerifyRowsParams(DatasetParams):
    table: str = Field(pattern=TABLE_RE, description="The table to check (e.g. a restored one).")
    reference_dataset: str | None = Field(None, pattern=DATASET_RE)
    """Dataset of the reference (default: dataset)."""
    reference_table: str | None = Field(None, pattern=TABLE_RE)
    """The reference table (default: table)."""
    key: str = Field(pattern=COLUMN_RE, description="Column identifying a row (compared as its string form).")
    sample: int = Field(100, ge=1, le=10000, description="How many keys to check.")
    method: Literal["random", "first"] = "random"
    """random keys, or the first keys in key order."""
    fail: bool = Field(True, description="Fail the step on a mismatch (else only report it).")

    @model_validator(mode="after")
    def _two_tables(self) -> VerifyRowsParams:
        if (self.reference_dataset or self.dataset) == self.dataset and (
            self.reference_table or self.table
        ) == self.table:
            raise ValueError("set reference_dataset or reference_table: a table cannot be its own reference")
        return self


class VerifyRowsOutputs(ActionOutputs):
    sampled: int
    """Keys compared."""
    mismatches: int
    """Keys whose rows differ."""
    mismatched_keys: list[str]
    """Up to 20 of them."""


def _describe_verify(p: VerifyRowsParams) -> str:
    ds = show_dataset(p.dataset)
    ref = f"{p.reference_dataset or ds}.{p.reference_table or p.table}"
    order = "RAND()" if p.method == "random" else p.key
    return (
        f"bigquery.query(SELECT {p.key} FROM {ref} ORDER BY {order} LIMIT {p.sample}) + "
        f"bigquery.query(SELECT * WHERE {p.key} IN keys) on {ref} and {ds}.{p.table}"
    )


def _canon(value: Any) -> Any:
    """A comparable, hashable form of a cell (floats by repr, structures as sorted JSON)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _sample_keys(s: Session, params: VerifyRowsParams, ref_ds: str, ref_t: str) -> list[str]:
    order = "RAND()" if params.method == "random" else "k"
    _job, key_rows = s.query(
        f"SELECT k FROM (SELECT DISTINCT CAST(`{params.key}` AS STRING) AS k FROM {s.sql(ref_ds, ref_t)}) "
        f"ORDER BY {order} LIMIT {int(params.sample)}",
        f"sample keys of {ref_ds}.{ref_t}",
    )
    return [r["k"] for r in key_rows]


def _rows_by_key(
    s: Session, dataset: str, table: str, key: str, keys: list[str]
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of ``dataset.table`` whose ``key`` is one of ``keys``, canonical, grouped by key."""
    from google.cloud import bigquery

    _j, rows = s.query(
        f"SELECT * FROM {s.sql(dataset, table)} WHERE CAST(`{key}` AS STRING) IN UNNEST(@keys)",
        f"read sampled rows of {dataset}.{table}",
        [bigquery.ArrayQueryParameter("keys", "STRING", keys)],
    )
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        item = dict(row.items())
        out.setdefault(str(item.get(key)), []).append(tuple(sorted((c, _canon(v)) for c, v in item.items())))
    return {k: sorted(v, key=repr) for k, v in out.items()}


@action("bigquery.verify_rows", Effect.READ_ONLY,
        "Compare sampled rows (every column) of a table with a reference table, by key.",
        target=show_table, describe=_describe_verify)
def verify_rows(ctx: StepContext, params: VerifyRowsParams) -> VerifyRowsOutputs:
    s, ds = Session.for_dataset(ctx, params)
    ref_ds, ref_t = params.reference_dataset or ds, params.reference_table or params.table
    keys = _sample_keys(s, params, ref_ds, ref_t)
    if not keys:
        raise ActionError(f"The reference table {ref_ds}.{ref_t} is empty: nothing to verify against.")
    s.check_cancelled("compare the sampled rows")
    reference = _rows_by_key(s, ref_ds, ref_t, params.key, keys)
    actual = _rows_by_key(s, ds, params.table, params.key, keys)
    bad = [key for key in keys if reference.get(key) != actual.get(key)]
    ctx.log(
        f"{len(keys)} sampled keys of {ds}.{params.table} against {ref_ds}.{ref_t}: {len(bad)} mismatched"
    )
    for key in bad[:10]:
        ctx.log(f"  mismatch at {params.key}={key}: {'missing' if key not in actual else 'values differ'}")
    if bad and params.fail:
        shown = ", ".join(bad[:5]) + (" …" if len(bad) > 5 else "")
        raise ActionError(
            f"{len(bad)} of {len(keys)} sampled rows of {ds}.{params.table} differ from {ref_ds}.{ref_t} "
            f"({params.key} {shown})."
        )
    return VerifyRowsOutputs(sampled=len(keys), mismatches=len(bad), mismatched_keys=bad[:20])
