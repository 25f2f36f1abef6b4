"""What every PostgreSQL action shares: the store's settings, running its programs, connecting, tables.

Connection settings come from the environment's ``postgres`` store
(:mod:`runbook.stores.postgres`). The password goes to subprocesses as ``PGPASSWORD`` and to
psycopg as a keyword, never into argv, logs, outputs or errors. Every program gets
``--no-password`` so nothing ever waits for a prompt.

psycopg is imported inside the functions only: building the registry must not load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.actions.spec import StepContext
from runbook.actions.support.process import ProcessResult, describe_failure, run_process
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings

from .names import split_table, table_key

if TYPE_CHECKING:
    import psycopg

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


def settings(ctx: StepContext) -> PostgresSettings:
    """The environment's postgres store (raises when there is none)."""
    return PostgresSettings.from_environment(ctx.environment)


def settings_and_database(ctx: StepContext, database: str | None) -> tuple[PostgresSettings, str]:
    """The store's settings and the database a step names (the store's own when it names none)."""
    st = settings(ctx)
    return st, st.pick_database(database)


def settings_or_defaults(ctx: StepContext) -> PostgresSettings:
    """The postgres store, or defaults for actions that only need the programs (no server)."""
    return settings(ctx) if "postgres" in ctx.environment.stores else PostgresSettings()


def unique_path(directory: Path, stem: str, suffix: str = "") -> Path:
    """``directory/STEMSUFFIX``, or ``STEM_1SUFFIX``… when taken: two runs in one second never collide."""
    path = directory / f"{stem}{suffix}"
    n = 1
    while path.exists():
        path = directory / f"{stem}_{n}{suffix}"
        n += 1
    return path


# --- programs -------------------------------------------------------------------------------------


def run(
    ctx: StepContext,
    st: PostgresSettings,
    argv: list[str],
    *,
    what: str,
    database: str | None = None,
    preexec_user: str | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run a PostgreSQL program with the store's libpq environment; raise one sentence on failure."""
    result = run_process(
        argv,
        log=log or ctx.log,
        cancelled=ctx.cancelled,
        timeout=ctx.timeout,
        env=st.subprocess_env(database),
        preexec_user=preexec_user,
        cwd=cwd,
    )
    if not result.ok:
        raise ActionError(st.scrub(f"{what} failed: {describe_failure(result)}"))
    return result


# --- SQL ------------------------------------------------------------------------------------------


def ident(*names: str) -> Any:
    """``psycopg.sql.Identifier``: the one way a name enters SQL."""
    from psycopg import sql

    return sql.Identifier(*names)


def sql_text(text: str, *args: Any) -> Any:
    """``psycopg.sql.SQL(text).format(*args)``."""
    from psycopg import sql

    return sql.SQL(text).format(*args)


def sql_join(sep: str, items: Any) -> Any:
    from psycopg import sql

    return sql.SQL(sep).join(items)


@contextlib.contextmanager
def connect(st: PostgresSettings, database: str, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose statement errors become one sentence naming the store."""
    import psycopg

    conn = st.connect(database, autocommit=autocommit)
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise st.translate(exc, database) from None


# --- tables ---------------------------------------------------------------------------------------


def user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(schema, table) of every ordinary or partitioned table outside the system schemas."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
        ORDER BY 1, 2
        """,
        (list(_SYSTEM_SCHEMAS),),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _resolve_one(existing: list[tuple[str, str]], spec: str, database: str) -> tuple[str, str]:
    schema, name = split_table(spec)
    if schema is not None:
        if (schema, name) not in existing:
            raise ActionError(f"Table {spec} does not exist in PostgreSQL database {database}: check the table name.")
        return schema, name
    matches = [t for t in existing if t[1] == name]
    if not matches:
        raise ActionError(f"Table {name} does not exist in PostgreSQL database {database}: check the table name.")
    if len(matches) > 1:
        public = [t for t in matches if t[0] == "public"]
        if not public:
            schemas = ", ".join(s for s, _ in matches)
            raise ActionError(f"Table {name} exists in several schemas of {database} ({schemas}): write schema.{name}.")
        matches = public
    return matches[0]


def resolve_tables(conn: psycopg.Connection[Any], specs: list[str], database: str) -> list[tuple[str, str]]:
    """(schema, table) for each spec; a bare name is looked up in every user schema.

    Raises:
        ActionError: A table does not exist or a bare name is ambiguous.
    """
    existing = user_tables(conn)
    return [_resolve_one(existing, spec, database) for spec in specs]


def chosen_tables(conn: psycopg.Connection[Any], specs: list[str] | None, database: str) -> list[tuple[str, str]]:
    """The listed tables (resolved), or every user table when none are listed."""
    return resolve_tables(conn, list(specs), database) if specs else user_tables(conn)


def count_rows(
    conn: psycopg.Connection[Any], tables: list[tuple[str, str]], log: Callable[[str], None]
) -> dict[str, int]:
    """Exact ``count(*)`` per table, keyed by :func:`table_key`."""
    counts: dict[str, int] = {}
    for schema, name in tables:
        row = conn.execute(sql_text("SELECT count(*) FROM {}", ident(schema, name))).fetchone()
        counts[table_key(schema, name)] = int(row[0]) if row else 0
        log(f"{table_key(schema, name)}: {counts[table_key(schema, name)]} rows")
    return counts
