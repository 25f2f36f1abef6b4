"""``postgres.restore``: the full restore (verify the dump, drop and re-create the database, pg_restore).

Everything that can prove the dump bad (checksum, ``pg_restore --list``) runs before anything is
dropped.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from pydantic import Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings

from .archive import read_toc, verify_checksum
from .common import connect, count_rows, ident, run, settings_and_database, sql_text, user_tables
from .names import DbParams, dbname_arg, quote
from .privileges import terminate_sessions

_PROTECTED_DATABASES = ("template0", "template1")


class RestoreParams(DbParams):
    path: str
    """The dump file (custom format)."""
    database: str
    """Database to drop and re-create, e.g. {{ env.postgres.database }}."""
    jobs: int = Field(1, ge=1, le=64, description="pg_restore --jobs.")
    require_checksum: bool = Field(True, description="Refuse a dump without PATH.sha256.")
    no_acl: bool = Field(False, description="pg_restore --no-acl (skip GRANTs, e.g. roles missing on a new server).")


class RestoreOutputs(ActionOutputs):
    database: str
    """The restored database."""
    tables: list[str]
    """Tables in the restored database."""
    rows: dict[str, int]
    """Row count per table."""
    total_rows: int
    """Sum of the row counts."""
    sha256: str
    """Digest of the dump restored."""


def _restore_argv(params: RestoreParams, program: str = "pg_restore") -> list[str]:
    argv = [program, "--no-owner", "--exit-on-error", "--no-password", "--verbose"]
    if params.no_acl:
        argv.append("--no-acl")
    if params.jobs > 1:
        argv.append(f"--jobs={params.jobs}")
    return [*argv, f"--dbname={dbname_arg(params.database)}", params.path]


def _describe_restore(params: RestoreParams) -> str:
    db = quote(params.database)
    return (f"sha256sum -c {shlex.quote(params.path + '.sha256')}; pg_restore --list; "
            f"pg_terminate_backend(connections to {db}); DROP DATABASE IF EXISTS {db} WITH (FORCE); "
            f"CREATE DATABASE {db} TEMPLATE template0; {shlex.join(_restore_argv(params))}; "
            "SELECT count(*) per table")


def _public_may_connect(acl: list[str]) -> bool:
    """Whether an access list (``datacl::text[]``) lets PUBLIC connect (an ``=…c…/owner`` entry)."""
    return any(entry.startswith("=") and "c" in entry.split("=", 1)[1].split("/")[0] for entry in acl)


def _recreate_database(ctx: StepContext, st: PostgresSettings, db: str) -> None:
    with connect(st, st.maintenance_database) as conn:
        # Keep the database's access list across the re-creation: a REVOKE CONNECT issued to stop
        # the application must still hold while the restored data is being verified.
        row = conn.execute("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (db,)).fetchone()
        acl: list[str] | None = row[0] if row else None
        terminate_sessions(conn, db, None, ctx.log)
        force = conn.info.server_version >= 130000  # WITH (FORCE) also stops connections racing in
        drop = sql_text("DROP DATABASE IF EXISTS {}" + (" WITH (FORCE)" if force else ""), ident(db))
        ctx.log(drop.as_string(conn))
        conn.execute(drop)
        create = sql_text("CREATE DATABASE {} TEMPLATE template0", ident(db))
        ctx.log(create.as_string(conn))
        conn.execute(create)
        if acl is not None and not _public_may_connect(acl):
            revoke = sql_text("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", ident(db))
            ctx.log(revoke.as_string(conn) + "  (as before the restore)")
            conn.execute(revoke)


# A typed confirmation asks for the database name, so the playbook must name it.
@action("postgres.restore", Effect.DESTRUCTIVE,
        "Full restore: verify the dump, drop and re-create the database, pg_restore, count rows.",
        target=lambda p: p.database, describe=_describe_restore)
def restore(ctx: StepContext, params: RestoreParams) -> RestoreOutputs:
    st, db = settings_and_database(ctx, params.database)
    if db == st.maintenance_database or db in _PROTECTED_DATABASES:
        raise ActionError(f"Refusing to drop PostgreSQL database {db}: it is a system/maintenance database.")
    path = Path(params.path)
    # Everything that can prove the dump bad runs before anything is dropped.
    digest, _ = verify_checksum(ctx, path, params.require_checksum)
    entries = read_toc(ctx, st, path)
    ctx.log(f"dump readable: {len(entries)} TOC entries")
    _recreate_database(ctx, st, db)
    ctx.log(f"pg_restore into {db} (jobs {params.jobs})")
    started = time.monotonic()
    try:
        run(ctx, st, _restore_argv(params, st.program("pg_restore")), what=f"pg_restore into {db}", database=db)
    except ActionError as exc:
        raise ActionError(f"{str(exc).rstrip('.')}; database {db} is incomplete: "
                          "fix the cause and run the restore again.") from None
    ctx.log(f"pg_restore finished in {format_duration(time.monotonic() - started)}")
    with connect(st, db) as conn:
        rows = count_rows(conn, user_tables(conn), ctx.log)
    return RestoreOutputs(database=db, tables=list(rows), rows=rows, total_rows=sum(rows.values()), sha256=digest)
