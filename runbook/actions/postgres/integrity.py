"""The corruption scenario: ``postgres.check_integrity`` finds it, ``postgres.reindex`` rebuilds indexes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings

from .common import chosen_tables, connect, ident, settings_and_database, sql_text
from .names import DbParams, quote, table_key

if TYPE_CHECKING:
    import psycopg

StatValue = int | float | str | bool | None


class CheckIntegrityParams(DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    tables: list[str] | None = Field(None, description="Tables to read (default: every user table).")
    fail: bool = Field(True, description="Fail the step when corruption is found.")


class CheckIntegrityOutputs(ActionOutputs):
    ok: bool
    """true when nothing looks corrupted."""
    checksum_failures: int | None
    """pg_stat_database.checksum_failures (None when not reported)."""
    data_checksums: bool
    """Whether the cluster has data checksums on."""
    unreadable: dict[str, str]
    """Tables whose full read failed, with the error."""
    counts: dict[str, int]
    """Rows per readable table."""
    stats: dict[str, StatValue]
    """The pg_stat_database row."""


def _database_stats(conn: psycopg.Connection[Any], db: str) -> dict[str, StatValue]:
    """The ``pg_stat_database`` row of ``db`` (timestamps and the like as text)."""
    cur = conn.execute("SELECT * FROM pg_stat_database WHERE datname = %s", (db,))
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    return {k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
            for k, v in zip(names, row or (), strict=False)}


def _read_tables(ctx: StepContext, st: PostgresSettings, conn: psycopg.Connection[Any],
                 tables: list[tuple[str, str]]) -> tuple[dict[str, int], dict[str, str]]:
    """Read every table in full: (rows per readable table, error per unreadable one)."""
    import psycopg

    counts: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    for schema, name in tables:
        key = table_key(schema, name)
        try:
            r = conn.execute(sql_text("SELECT count(*) FROM {}", ident(schema, name))).fetchone()
            counts[key] = int(r[0]) if r else 0
            ctx.log(f"{key}: readable, {counts[key]} rows")
        except psycopg.errors.QueryCanceled:
            raise
        except psycopg.Error as exc:
            unreadable[key] = st.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            ctx.log(f"{key}: UNREADABLE: {unreadable[key]}")
    return counts, unreadable


def _log_stats(ctx: StepContext, db: str, stats: dict[str, StatValue], data_checksums: bool) -> None:
    failures = stats.get("checksum_failures")
    ctx.log(f"{db}: backends {stats.get('numbackends')}, commits {stats.get('xact_commit')}, rollbacks "
            f"{stats.get('xact_rollback')}, deadlocks {stats.get('deadlocks')}, conflicts {stats.get('conflicts')}, "
            f"data checksums {'on' if data_checksums else 'off'}, "
            f"checksum failures {failures if failures is not None else 'n/a'}")


@action(
    "postgres.check_integrity",
    Effect.READ_ONLY,
    "Identify corruption: pg_stat_database (checksum failures) and read every table.",
    target=lambda p: p.database or "database",
    describe=lambda p: (f"SELECT * FROM pg_stat_database WHERE datname = '{p.database or '<store database>'}'; "
                        "SHOW data_checksums; SELECT count(*) per table"),
)
def check_integrity(ctx: StepContext, params: CheckIntegrityParams) -> CheckIntegrityOutputs:
    st, db = settings_and_database(ctx, params.database)
    with connect(st, db) as conn:
        stats = _database_stats(conn, db)
        checksums_row = conn.execute("SHOW data_checksums").fetchone()
        data_checksums = bool(checksums_row and checksums_row[0] == "on")
        _log_stats(ctx, db, stats, data_checksums)
        counts, unreadable = _read_tables(ctx, st, conn, chosen_tables(conn, params.tables, db))
    failures = stats.get("checksum_failures")
    ok = not unreadable and not failures
    if not ok and params.fail:
        problems = [f"{failures} checksum failure(s)"] if failures else []
        problems += [f"{t} unreadable ({e})" for t, e in unreadable.items()]
        raise ActionError(f"PostgreSQL database {db} looks corrupted: {'; '.join(problems)}.")
    return CheckIntegrityOutputs(ok=ok, checksum_failures=failures if isinstance(failures, int) else None,
                                 data_checksums=data_checksums, unreadable=unreadable, counts=counts, stats=stats)


# --- postgres.reindex ---------------------------------------------------------------------------------


class ReindexParams(DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    concurrently: bool = Field(False, description="REINDEX … CONCURRENTLY (no write lock; skips system catalogs).")


class ReindexOutputs(ActionOutputs):
    database: str
    """The database reindexed."""
    seconds: float
    """How long it took."""


def _describe_reindex(params: ReindexParams) -> str:
    db = quote(params.database) if params.database else "<store database>"
    return f"REINDEX DATABASE {'CONCURRENTLY ' if params.concurrently else ''}{db}"


@action("postgres.reindex", Effect.MUTATING, "REINDEX DATABASE (rebuild every index, e.g. after index corruption).",
        target=lambda p: p.database or "database", describe=_describe_reindex)
def reindex(ctx: StepContext, params: ReindexParams) -> ReindexOutputs:
    st, db = settings_and_database(ctx, params.database)
    started = time.monotonic()
    with connect(st, db) as conn:
        stmt = sql_text("REINDEX DATABASE " + ("CONCURRENTLY " if params.concurrently else "") + "{}", ident(db))
        ctx.log(stmt.as_string(conn))
        conn.execute(stmt)
    took = time.monotonic() - started
    ctx.log(f"reindexed {db} in {format_duration(took)}")
    return ReindexOutputs(database=db, seconds=round(took, 2))
