"""``postgres.restore_tables``: put back exactly the dumped rows of some tables, atomically.

``pg_restore --data-only`` with a TOC list ordering the tables parents-first (so foreign keys
between, e.g., ``datasets`` and ``dataset_columns`` hold without disabling triggers) is piped into
one ``psql --single-transaction`` that first runs ``TRUNCATE`` of those tables. The bytes are
relayed through us (:func:`~runbook.actions.support.process.run_pipeline`): if pg_restore fails
or the step is stopped, psql is killed before its stdin closes, so it never reaches its COMMIT
and the server rolls the TRUNCATE back: the tables are untouched. A table that another, unlisted
table references is refused (its rows would be cascaded away); owned sequences are only ever
moved forward, past the restored ids.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.support.process import PipelineResult, run_pipeline
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings

from .archive import TocEntry, read_toc, verify_checksum
from .common import connect, count_rows, ident, resolve_tables, settings_and_database, sql_join, sql_text
from .names import DbParams, dbname_arg, quote_table, table_key

if TYPE_CHECKING:
    import psycopg

Table = tuple[str, str]
OwnedSequence = tuple[str, str, Table, str]  # (sequence schema, sequence name, owning table, column)


class RestoreTablesParams(DbParams):
    path: str
    """The dump file (custom format)."""
    database: str
    """Database holding the tables, e.g. {{ env.postgres.database }}."""
    tables: list[str] = Field(min_length=1, description="Tables to restore, e.g. [datasets, dataset_columns].")
    require_checksum: bool = Field(True, description="Refuse a dump without PATH.sha256.")


class RestoreTablesOutputs(ActionOutputs):
    rows: dict[str, int]
    """Row count per restored table."""
    total_rows: int
    """Sum of the row counts."""
    order: list[str]
    """The order the tables were loaded in (parents first)."""


def _describe(params: RestoreTablesParams) -> str:
    tables = ", ".join(quote_table(t) for t in params.tables)
    db = dbname_arg(params.database)
    return (f"sha256sum -c {shlex.quote(params.path + '.sha256')}; pg_restore --data-only --no-owner "
            f"-L <TABLE DATA of {', '.join(params.tables)}, parents first> -f - {shlex.quote(params.path)} | "
            f"psql --no-psqlrc --single-transaction -v ON_ERROR_STOP=1 --dbname={shlex.quote(db)} "
            f"-c 'TRUNCATE {tables}' -f -")


# --- what to load, in which order -------------------------------------------------------------------

_FOREIGN_KEYS = """
    SELECT cn.nspname, c.relname, pn.nspname, p.relname, con.conname
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
    JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
    WHERE con.contype = 'f'
"""


def _fk_order(conn: psycopg.Connection[Any], tables: list[Table], db: str) -> list[Table]:
    """``tables`` parents first; refuses when an unlisted table references a listed one."""
    listed = set(tables)
    parents: dict[Table, set[Table]] = {t: set() for t in tables}
    for cs, cr, ps, pr, conname in conn.execute(_FOREIGN_KEYS).fetchall():
        child, parent = (cs, cr), (ps, pr)
        if parent in listed and child not in listed:
            raise ActionError(
                f"Table {table_key(*child)} references {table_key(*parent)} (constraint {conname}) in {db}: "
                f"add {table_key(*child)} to tables so its rows are restored from the same dump."
            )
        if child in listed and parent in listed and child != parent:
            parents[child].add(parent)
    order: list[Table] = []
    pending = list(tables)
    while pending:
        ready = [t for t in pending if parents[t] <= set(order)]
        if not ready:  # a foreign-key cycle: keep the given order, the transaction still checks it
            ready = pending[:1]
        for t in ready:
            order.append(t)
            pending.remove(t)
    return order


_OWNED_SEQUENCES = """
    SELECT sn.nspname, s.relname, a.attname
    FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i')
      AND d.refobjid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = %s AND c.relname = %s)
"""


def _owned_sequences(conn: psycopg.Connection[Any], tables: list[Table]) -> list[OwnedSequence]:
    """The sequences owned by columns of ``tables`` (serial / identity columns)."""
    out = []
    for table in tables:
        for seq_schema, seq_name, column in conn.execute(_OWNED_SEQUENCES, table).fetchall():
            out.append((seq_schema, seq_name, table, column))
    return out


def _bump_sequences(conn: psycopg.Connection[Any], sequences: list[OwnedSequence], log: Callable[[str], None]) -> None:
    """Move owned sequences forward past the restored ids (never backwards: ids may be referenced elsewhere)."""
    for seq_schema, seq_name, (schema, name), column in sequences:
        row = conn.execute(
            sql_text("SELECT (SELECT max({}) FROM {})::bigint, last_value, is_called FROM {}",
                     ident(column), ident(schema, name), ident(seq_schema, seq_name))
        ).fetchone()
        if not row or row[0] is None:
            continue
        top, last, called = row
        if top > last or (top == last and not called):
            conn.execute("SELECT setval(%s::regclass, %s, true)",
                         (sql_text("{}", ident(seq_schema, seq_name)).as_string(conn), top))
            log(f"sequence {table_key(seq_schema, seq_name)} moved forward to {top}")


def _toc_lines(entries: list[TocEntry], order: list[Table], path: Path) -> list[str]:
    """The ``TABLE DATA`` line of each table, in load order (a ``pg_restore --use-list`` file)."""
    lines = []
    for schema, name in order:
        found = [e for e in entries if e.kind == "TABLE DATA" and e.names_table(schema, name)]
        if not found:
            raise ActionError(f"The dump {path} holds no data for table {table_key(schema, name)}: "
                              "nothing was restored.")
        lines.append(found[0].line)
    return lines


# --- the load -----------------------------------------------------------------------------------------


def _check_pipeline(result: PipelineResult, db: str) -> None:
    """One sentence for a load that did not commit; every failure rolled the transaction back."""
    if result.stopped:
        how = "stopped by the operator" if result.stopped == "cancelled" else "stopped: it exceeded its timeout"
        raise ActionError(f"The selective restore into {db} was {how}; "
                          "the transaction was rolled back and nothing changed.")
    if result.producer_exit != 0:
        last = result.producer_tail[-1] if result.producer_tail else f"exit code {result.producer_exit}"
        raise ActionError(f"pg_restore failed reading the dump ({last}); "
                          f"the transaction was rolled back and {db} is unchanged.")
    if result.consumer_exit != 0:
        tail = result.consumer_tail
        errors = [ln for ln in tail if "ERROR" in ln] or list(tail) or [f"exit code {result.consumer_exit}"]
        raise ActionError(f"psql failed loading the rows into {db} ({errors[-1].strip()}); "
                          "the transaction was rolled back and nothing changed.")


def _load(ctx: StepContext, st: PostgresSettings, path: Path, db: str, listfile: Path, truncate: str) -> None:
    """``pg_restore --use-list=LISTFILE | psql --single-transaction -c TRUNCATE… -f -``."""
    producer = [st.program("pg_restore"), "--data-only", "--no-owner", "--no-password", f"--use-list={listfile}",
                "--file=-", str(path)]
    consumer = [st.program("psql"), "--no-psqlrc", "--no-password", "--quiet", "--single-transaction",
                "-v", "ON_ERROR_STOP=1", "--output=/dev/null", f"--dbname={dbname_arg(db)}",
                "-c", truncate, "-f", "-"]
    result = run_pipeline(producer, consumer, log=ctx.log, names=("pg_restore", "psql"), env=st.subprocess_env(db),
                          cancelled=ctx.cancelled, timeout=ctx.timeout, scrub=st.scrub)
    _check_pipeline(result, db)


@action("postgres.restore_tables", Effect.DESTRUCTIVE,
        "Replace the rows of some tables with exactly the dumped rows, in one transaction.",
        target=lambda p: p.database, describe=_describe)
def restore_tables(ctx: StepContext, params: RestoreTablesParams) -> RestoreTablesOutputs:
    st, db = settings_and_database(ctx, params.database)
    path = Path(params.path)
    verify_checksum(ctx, path, params.require_checksum)
    entries = read_toc(ctx, st, path)
    with connect(st, db) as conn:
        order = _fk_order(conn, resolve_tables(conn, list(params.tables), db), db)
        truncate = sql_text("TRUNCATE {}", sql_join(", ", [ident(s, t) for s, t in order])).as_string(conn)
        sequences = _owned_sequences(conn, order)
    lines = _toc_lines(entries, order, path)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    listfile = ctx.workdir / f"restore_tables_{os.getpid()}_{time.monotonic_ns()}.list"
    listfile.write_text("\n".join(lines) + "\n")
    keys = [table_key(s, t) for s, t in order]
    ctx.log(f"restoring {', '.join(keys)} (in this order) from {path} into {db} in one transaction")
    try:
        _load(ctx, st, path, db, listfile, truncate)
    finally:
        listfile.unlink(missing_ok=True)
    with connect(st, db) as conn:
        _bump_sequences(conn, sequences, ctx.log)
        rows = count_rows(conn, order, ctx.log)
    return RestoreTablesOutputs(rows=rows, total_rows=sum(rows.values()), order=keys)
