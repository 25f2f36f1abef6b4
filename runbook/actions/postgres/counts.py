"""``postgres.row_counts`` and ``postgres.compare_counts``: exact row counts, e.g. prod vs a test restore."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

from .common import chosen_tables, connect, count_rows, settings, settings_and_database, user_tables
from .names import DbParams, quote_table, split_table, table_key

if TYPE_CHECKING:
    import psycopg


class RowCountsParams(DbParams):
    database: str | None = Field(None, description="Database (default: the store's database).")
    tables: list[str] | None = Field(None, description="Tables to count (default: every user table).")


class RowCountsOutputs(ActionOutputs):
    counts: dict[str, int]
    """Rows per table."""
    total: int
    """Sum of the counts."""


def _describe_row_counts(params: RowCountsParams) -> str:
    tables = ", ".join(quote_table(t) for t in params.tables) if params.tables else "every user table"
    return f"SELECT count(*) FROM <table> for {tables} in {params.database or '<store database>'}"


@action("postgres.row_counts", Effect.READ_ONLY, "Exact row counts (SELECT count(*)) of some or all tables.",
        target=lambda p: p.database or "database", describe=_describe_row_counts)
def row_counts(ctx: StepContext, params: RowCountsParams) -> RowCountsOutputs:
    st, db = settings_and_database(ctx, params.database)
    with connect(st, db) as conn:
        counts = count_rows(conn, chosen_tables(conn, params.tables, db), ctx.log)
    return RowCountsOutputs(counts=counts, total=sum(counts.values()))


# --- postgres.compare_counts --------------------------------------------------------------------------


class CompareCountsParams(DbParams):
    database: str | None = Field(None, description="First database (default: the store's database).")
    other_database: str | None = Field(
        None, description="Second database on the same server (default: staging_database)."
    )
    tables: list[str] | None = Field(None, description="Tables to compare (default: every user table of either).")
    fail_on_mismatch: bool = Field(True, description="Fail the step when counts differ.")


class CompareCountsOutputs(ActionOutputs):
    counts_a: dict[str, int]
    """Rows per table in the first database."""
    counts_b: dict[str, int]
    """Rows per table in the second."""
    equal: bool
    """true when every count matches."""
    mismatches: list[str]
    """One 'table A vs B' text per difference."""


def _describe_compare(params: CompareCountsParams) -> str:
    tables = ", ".join(params.tables) if params.tables else "every user table"
    return (f"SELECT count(*) per table ({tables}) in {params.database or '<store database>'} and "
            f"{params.other_database or '<store staging_database>'}; compare")


def _listed_keys(specs: list[str] | None) -> list[str]:
    """The listed tables named as in outputs (a bare name means ``public``)."""
    return [table_key(s or "public", n) for s, n in map(split_table, specs or [])]


def _present_tables(
    ctx: StepContext, conn: psycopg.Connection[Any], specs: list[str] | None, db: str
) -> list[tuple[str, str]]:
    """The listed tables that exist in ``db`` (a missing one is compared as 'missing'), or all of them."""
    existing = user_tables(conn)
    if not specs:
        return existing
    by_key = {table_key(*t): t for t in existing}
    tables = []
    for key in _listed_keys(specs):
        if key in by_key:
            tables.append(by_key[key])
        else:
            ctx.log(f"{key}: missing in {db}")
    return tables


@action(
    "postgres.compare_counts",
    Effect.READ_ONLY,
    "Compare row counts of the same tables in two databases (e.g. prod vs a test restore).",
    target=lambda p: f"{p.database or 'database'} vs {p.other_database or 'staging_database'}",
    describe=_describe_compare,
)
def compare_counts(ctx: StepContext, params: CompareCountsParams) -> CompareCountsOutputs:
    st = settings(ctx)
    db_a = st.pick_database(params.database)
    db_b = st.pick_database(params.other_database, staging=True)
    sides: list[dict[str, int]] = []
    for db in (db_a, db_b):
        ctx.log(f"counting rows in {db}")
        with connect(st, db) as conn:
            sides.append(count_rows(conn, _present_tables(ctx, conn, params.tables, db), ctx.log))
    a, b = sides
    names = list(dict.fromkeys([*_listed_keys(params.tables), *a, *b]))
    mismatches = [f"{t} {a.get(t, 'missing')} vs {b.get(t, 'missing')}" for t in names if a.get(t) != b.get(t)]
    equal = not mismatches
    ctx.log(f"{db_a} vs {db_b}: " + ("all counts equal" if equal else "; ".join(mismatches)))
    if mismatches and params.fail_on_mismatch:
        raise ActionError(f"Row count mismatch between {db_a} and {db_b}: {', '.join(mismatches)}.")
    return CompareCountsOutputs(counts_a=a, counts_b=b, equal=equal, mismatches=mismatches)
