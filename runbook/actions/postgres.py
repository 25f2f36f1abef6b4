"""PostgreSQL actions: dumps, verified restores, selective restores, row counts, lockdown, PITR.

The seed's database procedures (backup script, full restore, selective table restore, test restore
to staging with a row-count comparison, point-in-time recovery, the corruption scenario), made
safe to run at 3 a.m.:

* Connection settings come from the environment's ``postgres`` store
  (:mod:`runbook.stores.postgres`). The password goes to subprocesses as ``PGPASSWORD`` and to
  psycopg as a keyword, never into argv, logs, outputs or errors. Every program gets
  ``--no-password`` so nothing ever waits for a prompt.
* Database, table, schema and role names may hold any character but NUL/control characters
  (quotes and spaces included, e.g. ``we"ird name``): SQL quotes them with
  ``psycopg.sql.Identifier`` and argv carries each as one element. A database name that libpq
  would read as a connection string (one with ``=`` or a ``postgres://`` prefix) is passed as a
  quoted ``dbname='…'`` conninfo instead. Table names are ``table`` or ``schema.table``: a name
  that itself contains a dot is refused.
* Dumps are custom-format (``pg_dump --format=custom``), which is already compressed: unlike the
  seed's script nothing is gzipped afterwards. A dump is written to a hidden ``.NAME.tmp`` and
  renamed only once pg_dump succeeded, the file is non-empty and its ``NAME.sha256``
  (``sha256sum`` format) is written; the only extra pass over the data is that one sha256 read.
* Destructive restores verify the dump (checksum and ``pg_restore --list``) before anything is
  dropped or truncated.
* Selective restores (``postgres.restore_tables``) load exactly the dumped rows of the listed
  tables into the existing tables, atomically: ``pg_restore --data-only`` with a TOC list
  ordering the tables parents-first (so foreign keys between, e.g., ``datasets`` and
  ``dataset_columns`` hold without disabling triggers) is piped into one ``psql
  --single-transaction`` that first runs ``TRUNCATE`` of those tables. If anything fails the
  transaction rolls back and the tables are untouched. A table that another, unlisted table
  references is refused (its rows would be cascaded away); owned sequences are only ever moved
  forward, past the restored ids.
* Point-in-time recovery restores a ``pg_basebackup`` (tar format, gzip) into a NEW data
  directory next to the base backups, replays the WAL archive up to ``target_time`` and promotes
  a temporary server on a free port; ``postgres.stop_cluster`` stops it. Server programs run as
  ``run_as`` (``postgres`` when we are root), through ``runuser``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import subprocess
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.actions.support.fs import human_bytes, sha256_file
from runbook.actions.support.process import ProcessResult, describe_failure
from runbook.core.durations import format_duration
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings, check_identifier

if TYPE_CHECKING:
    import psycopg

DUMP_SUFFIX = ".dump"
PGDMP_MAGIC = b"PGDMP"
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.+)$")
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
_PROTECTED_DATABASES = ("template0", "template1")
PITR_POLL = 0.2


# --- validation -------------------------------------------------------------------------------


def _check_db(value: Any) -> Any:
    if value is None:
        return value
    return check_identifier(value, "database name")


def split_table(spec: str) -> tuple[str | None, str]:
    """``"table"`` → (None, table); ``"schema.table"`` → (schema, table).

    Raises:
        ValueError: Empty parts, more than one dot, or a bad identifier.
    """
    if not isinstance(spec, str):
        raise ValueError("A table name must be a string.")
    parts = spec.split(".")
    if len(parts) > 2:
        raise ValueError(f"The table {spec!r} has more than one dot: write table or schema.table.")
    if len(parts) == 2:
        return check_identifier(parts[0], "schema name"), check_identifier(parts[1], "table name")
    return None, check_identifier(parts[0], "table name")


def table_key(schema: str, name: str) -> str:
    """How a table is named in outputs: ``name`` in ``public``, else ``schema.name``."""
    return name if schema == "public" else f"{schema}.{name}"


def _check_component(value: str, what: str) -> str:
    if not _SAFE_COMPONENT.fullmatch(value):
        raise ValueError(
            f"The {what} {value!r} must be letters, digits, '_', '.' or '-' (starting with a letter or digit)."
        )
    return value


class _DbParams(ActionParams):
    @field_validator("database", "other_database", check_fields=False)
    @classmethod
    def _db(cls, v: Any) -> Any:
        return _check_db(v)

    @field_validator("tables", check_fields=False)
    @classmethod
    def _tables(cls, v: Any) -> Any:
        if v is None:
            return v
        for t in v:
            split_table(t)
        if len(set(v)) != len(v):
            raise ValueError("A table is listed twice.")
        return v

    @field_validator("roles", check_fields=False)
    @classmethod
    def _roles(cls, v: Any) -> Any:
        for r in v or []:
            check_identifier(r, "role name")
            if r.lower() == "public":
                raise ValueError("Use public: true for PUBLIC instead of listing it as a role.")
        return v


# --- helpers ----------------------------------------------------------------------------------


def _settings(ctx: StepContext) -> PostgresSettings:
    return PostgresSettings.from_environment(ctx.environment)


def _dbname_arg(name: str) -> str:
    """``name`` for ``--dbname``, as a quoted conninfo when libpq would expand it as one."""
    if "=" in name or name.startswith(("postgres://", "postgresql://")):
        return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return name


def _ident(*names: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*names)


def _sql(text: str, *args: Any) -> Any:
    from psycopg import sql

    return sql.SQL(text).format(*args)


def _join(sep: str, items: Any) -> Any:
    from psycopg import sql

    return sql.SQL(sep).join(items)


def _quote(name: str) -> str:
    """A double-quoted identifier for describe() texts (no psycopg import needed)."""
    return '"' + name.replace('"', '""') + '"'


def _qtable(spec: str) -> str:
    schema, name = split_table(spec)
    return f"{_quote(schema)}.{_quote(name)}" if schema else _quote(name)


def _env_prefix(st: PostgresSettings, database: str | None = None) -> str:
    return f"[{st.describe_connection(database)}]"


def _run(
    ctx: StepContext,
    st: PostgresSettings,
    argv: list[str],
    *,
    what: str,
    database: str | None = None,
    capture: bool = False,
    preexec_user: str | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run a PostgreSQL program with the store's libpq environment; raise one sentence on failure."""
    from runbook.actions.support.process import run_process

    result = run_process(
        argv,
        log=log or ctx.log,
        cancelled=ctx.cancelled,
        timeout=ctx.timeout,
        env=st.subprocess_env(database),
        capture=capture,
        preexec_user=preexec_user,
        cwd=cwd,
    )
    if not result.ok:
        raise ActionError(st.scrub(f"{what} failed: {describe_failure(result)}"))
    return result


@contextlib.contextmanager
def _connect(st: PostgresSettings, database: str, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose statement errors become one sentence naming the store."""
    import psycopg

    conn = st.connect(database, autocommit=autocommit)
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise st.translate(exc, database) from None


def _user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
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


def _resolve_tables(conn: psycopg.Connection[Any], specs: list[str], database: str) -> list[tuple[str, str]]:
    """(schema, table) for each spec; a bare name is looked up in every user schema.

    Raises:
        ActionError: A table does not exist or a bare name is ambiguous.
    """
    existing = _user_tables(conn)
    out = []
    for spec in specs:
        schema, name = split_table(spec)
        if schema is not None:
            if (schema, name) not in existing:
                raise ActionError(f"Table {spec} does not exist in PostgreSQL database {database}: check the table name.")
            out.append((schema, name))
            continue
        matches = [t for t in existing if t[1] == name]
        if not matches:
            raise ActionError(f"Table {name} does not exist in PostgreSQL database {database}: check the table name.")
        if len(matches) > 1:
            public = [t for t in matches if t[0] == "public"]
            if not public:
                schemas = ", ".join(s for s, _ in matches)
                raise ActionError(f"Table {name} exists in several schemas of {database} ({schemas}): write schema.{name}.")
            matches = public
        out.append(matches[0])
    return out


def _count(conn: psycopg.Connection[Any], tables: list[tuple[str, str]], log: Callable[[str], None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for schema, name in tables:
        row = conn.execute(_sql("SELECT count(*) FROM {}", _ident(schema, name))).fetchone()
        counts[table_key(schema, name)] = int(row[0]) if row else 0
        log(f"{table_key(schema, name)}: {counts[table_key(schema, name)]} rows")
    return counts


def _read_sidecar(sidecar: Path) -> str:
    try:
        first = sidecar.read_text(encoding="utf-8", errors="replace").split()
    except OSError as exc:
        raise ActionError(f"Cannot read checksum file {sidecar}: {exc.strerror}.") from None
    expected = first[0].lower() if first else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ActionError(f"Checksum file {sidecar} does not hold a sha256 digest.")
    return expected


def _verify_checksum(ctx: StepContext, path: Path, required: bool) -> tuple[str, bool]:
    """(actual sha256, verified). Raises before anything else runs when the dump does not match."""
    if not path.is_file():
        raise ActionError(f"Database dump not found: {path}.")
    sidecar = Path(f"{path}.sha256")
    if not sidecar.exists():
        if required:
            raise ActionError(
                f"No checksum file for the dump {path}: expected {sidecar.name} (set require_checksum: false to skip)."
            )
        ctx.log(f"WARNING: no checksum file found for {path}; restoring unverified")
        return sha256_file(path, ctx.cancelled), False
    expected = _read_sidecar(sidecar)
    actual = sha256_file(path, ctx.cancelled)
    if actual != expected:
        ctx.log(f"{path}: FAILED (expected {expected}, got {actual})")
        raise ActionError(
            f"Checksum mismatch for the dump {path}: it does not match {sidecar.name}, so nothing was restored."
        )
    ctx.log(f"{path}: checksum OK ({actual})")
    return actual, True


@dataclasses.dataclass
class TocEntry:
    """One line of ``pg_restore --list``."""

    line: str
    kind: str  # TABLE, TABLE DATA, INDEX…
    rest: str  # "schema name owner"

    def names_table(self, schema: str, table: str) -> bool:
        """Whether this entry is about ``schema.table`` (the owner must be one word)."""
        prefix = f"{schema} {table} "
        return self.rest.startswith(prefix) and " " not in self.rest[len(prefix):]


_TOC_KINDS = ("TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "DEFAULT ACL",
              "MATERIALIZED VIEW DATA", "TABLE", "SEQUENCE", "CONSTRAINT", "INDEX", "DEFAULT", "VIEW",
              "SCHEMA", "FUNCTION", "TRIGGER", "COMMENT", "ACL", "EXTENSION", "TYPE")


def _toc(ctx: StepContext, st: PostgresSettings, path: Path) -> list[TocEntry]:
    """The dump's table of contents (``pg_restore --list``): proves the archive is readable."""
    lines: list[str] = []
    _run(ctx, st, [st.program("pg_restore"), "--list", str(path)], what=f"pg_restore --list {path}",
         log=lines.append)
    entries = []
    for line in lines:
        m = _TOC_LINE.match(line)
        if not m:
            continue
        body = m.group(4)
        kind = next((k for k in _TOC_KINDS if body.startswith(k + " ")), body.split(" ", 1)[0])
        entries.append(TocEntry(line=line, kind=kind, rest=body[len(kind) + 1:]))
    if not entries:
        raise ActionError(f"The dump {path} lists no entries: it is empty or not a pg_dump archive.")
    return entries


def _toc_tables(entries: list[TocEntry]) -> list[str]:
    out = []
    for e in entries:
        if e.kind != "TABLE":
            continue
        schema, _, rest = e.rest.partition(" ")
        name = rest.rsplit(" ", 1)[0] if " " in rest else rest
        out.append(table_key(schema, name))
    return out


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_root() -> bool:
    return os.geteuid() == 0


def _hand_over(path: Path, user: str | None, log: Callable[[str], None]) -> None:
    """As root, give ``path`` (recursively) to the system user ``user`` and make its ancestors traversable.

    PostgreSQL refuses to run as root, so a data directory we unpacked must belong to the server's
    user; ancestors only gain ``o+x`` (enter, not list) where that user could not enter them.
    """
    if not _is_root() or not user or user == "root":
        return
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ActionError(f"System user {user!r} (run_as in the postgres store) does not exist.") from None
    uid, gid = entry.pw_uid, entry.pw_gid
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    for ancestor in path.resolve().parents:
        st = ancestor.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            os.chmod(ancestor, st.st_mode | 0o001)
            log(f"made {ancestor} traversable (o+x) for {user}")


# --- postgres.dump ----------------------------------------------------------------------------


class DumpParams(_DbParams):
    directory: str = Field(description="Where dumps are kept, e.g. /var/backups/varlor/database.")
    database: str | None = Field(None, description="Database to dump (default: the store's database).")
    prefix: str = Field("varlor_db_", description="File name prefix; the name is PREFIX<UTC YYYYmmdd_HHMMSS>.dump.")
    tag: str | None = Field(None, description="Instead of the prefix, e.g. pre_deployment → pre_deployment_<ts>.dump.")
    compress: int = Field(6, ge=0, le=9, description="pg_dump --compress level (custom format is compressed by pg_dump itself).")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_component(v, "prefix")

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        return None if v is None else _check_component(v, "tag")


class DumpAction(BaseAction):
    name: ClassVar[str] = "postgres.dump"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Back up a database with pg_dump (custom format) and write its .sha256 file."
    Params = DumpParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The dump file.",
        "name": "Its file name.",
        "size": "Bytes.",
        "sha256": "Hex digest of the dump.",
        "checksum_file": "The NAME.sha256 file (sha256sum format).",
        "database": "The database dumped.",
    }

    def target(self, params: DumpParams) -> str:
        return params.directory

    @staticmethod
    def _stem(params: DumpParams) -> str:
        return f"{params.tag}_" if params.tag else params.prefix

    def describe(self, params: DumpParams) -> str:
        final = os.path.join(os.path.abspath(params.directory), f"{self._stem(params)}<UTC YYYYmmdd_HHMMSS>{DUMP_SUFFIX}")
        db = params.database or "<store database>"
        argv = ["pg_dump", "--format=custom", f"--compress={params.compress}", "--no-password", "--verbose",
                f"--file={os.path.dirname(final)}/.{os.path.basename(final)}.tmp", f"--dbname={_dbname_arg(db)}"]
        return (f"{shlex.join(argv)}; sha256sum → {os.path.basename(final)}.sha256; rename → {final} "
                "(custom format is already compressed: no gzip)")

    def run(self, ctx: StepContext, params: DumpParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        directory = Path(params.directory).absolute()
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ActionError(f"Cannot create the dump directory {directory}: {exc.strerror}.") from None
        stem = f"{self._stem(params)}{_utc_stamp()}"
        name = f"{stem}{DUMP_SUFFIX}"
        n = 1
        while (directory / name).exists():  # two dumps in the same second: never overwrite
            name = f"{stem}_{n}{DUMP_SUFFIX}"
            n += 1
        final = directory / name
        tmp = directory / f".{name}.tmp"
        # Created 0600 before pg_dump opens it: a dump holds the whole database.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        argv = [st.program("pg_dump"), "--format=custom", f"--compress={params.compress}", "--no-password",
                "--verbose", f"--file={tmp}", f"--dbname={_dbname_arg(db)}"]
        ctx.log(f"dumping {db} from {st.address} to {final} (custom format, compress {params.compress}; no gzip needed)")
        started = time.monotonic()
        try:
            _run(ctx, st, argv, what=f"pg_dump of {db}", database=db)
            size = tmp.stat().st_size
            with open(tmp, "rb") as fh:
                magic = fh.read(len(PGDMP_MAGIC))
            if size == 0 or magic != PGDMP_MAGIC:
                raise ActionError(f"pg_dump of {db} produced {'an empty file' if size == 0 else 'a file that is not a pg_dump archive'}.")
            digest = sha256_file(tmp, ctx.cancelled)
            sidecar = directory / f"{name}.sha256"
            side_tmp = directory / f".{name}.sha256.tmp"
            side_tmp.write_text(f"{digest}  {name}\n")
            os.replace(side_tmp, sidecar)
            os.replace(tmp, final)
            _fsync_dir(directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        ctx.log(f"wrote {final} ({human_bytes(size)}, sha256 {digest}) in {format_duration(time.monotonic() - started)}")
        return {"path": str(final), "name": name, "size": size, "sha256": digest,
                "checksum_file": str(sidecar), "database": db}


# --- postgres.verify_dump ---------------------------------------------------------------------


class VerifyDumpParams(ActionParams):
    path: str = Field(description="The dump file; its checksum file is PATH.sha256.")
    require_checksum: bool = Field(True, description="Fail when PATH.sha256 is missing (else warn).")


class VerifyDumpAction(BaseAction):
    name: ClassVar[str] = "postgres.verify_dump"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Check a dump: sha256 matches its .sha256 file and pg_restore --list reads it."
    Params = VerifyDumpParams
    outputs: ClassVar[dict[str, str]] = {
        "tables": "Tables in the dump's table of contents.",
        "entries": "Number of TOC entries.",
        "sha256": "Actual digest.",
        "verified": "true when the checksum file matched.",
    }

    def target(self, params: VerifyDumpParams) -> str:
        return params.path

    def describe(self, params: VerifyDumpParams) -> str:
        return f"sha256sum -c {shlex.quote(params.path + '.sha256')} && pg_restore --list {shlex.quote(params.path)}"

    def run(self, ctx: StepContext, params: VerifyDumpParams) -> dict[str, Any]:
        st = _settings(ctx) if "postgres" in ctx.environment.stores else PostgresSettings()
        path = Path(params.path)
        digest, verified = _verify_checksum(ctx, path, params.require_checksum)
        entries = _toc(ctx, st, path)
        tables = _toc_tables(entries)
        ctx.log(f"{path}: {len(entries)} TOC entries, {len(tables)} tables: {', '.join(tables) or '(none)'}")
        return {"tables": tables, "entries": len(entries), "sha256": digest, "verified": verified}


# --- postgres.restore -------------------------------------------------------------------------


class RestoreParams(_DbParams):
    path: str = Field(description="The dump file (custom format).")
    database: str = Field(description="Database to drop and re-create, e.g. {{ env.postgres.database }}.")
    jobs: int = Field(1, ge=1, le=64, description="pg_restore --jobs.")
    require_checksum: bool = Field(True, description="Refuse a dump without PATH.sha256.")
    no_acl: bool = Field(False, description="pg_restore --no-acl (skip GRANTs, e.g. roles missing on a new server).")


class RestoreAction(BaseAction):
    name: ClassVar[str] = "postgres.restore"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Full restore: verify the dump, drop and re-create the database, pg_restore, count rows."
    Params = RestoreParams
    outputs: ClassVar[dict[str, str]] = {
        "database": "The restored database.",
        "tables": "Tables in the restored database.",
        "rows": "Row count per table.",
        "total_rows": "Sum of the row counts.",
        "sha256": "Digest of the dump restored.",
    }

    def target(self, params: RestoreParams) -> str:
        # A typed confirmation asks for the database name, so the playbook must name it.
        return params.database

    def _argv(self, params: RestoreParams, program: str = "pg_restore") -> list[str]:
        argv = [program, "--no-owner", "--exit-on-error", "--no-password", "--verbose"]
        if params.no_acl:
            argv.append("--no-acl")
        if params.jobs > 1:
            argv.append(f"--jobs={params.jobs}")
        return [*argv, f"--dbname={_dbname_arg(params.database)}", params.path]

    def describe(self, params: RestoreParams) -> str:
        db = _quote(params.database)
        return (f"sha256sum -c {shlex.quote(params.path + '.sha256')}; pg_restore --list; "
                f"pg_terminate_backend(connections to {db}); DROP DATABASE IF EXISTS {db} WITH (FORCE); "
                f"CREATE DATABASE {db} TEMPLATE template0; {shlex.join(self._argv(params))}; "
                "SELECT count(*) per table")

    def run(self, ctx: StepContext, params: RestoreParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = params.database
        if db == st.maintenance_database or db in _PROTECTED_DATABASES:
            raise ActionError(f"Refusing to drop PostgreSQL database {db}: it is a system/maintenance database.")
        path = Path(params.path)
        # Everything that can prove the dump bad runs before anything is dropped.
        digest, _ = _verify_checksum(ctx, path, params.require_checksum)
        entries = _toc(ctx, st, path)
        ctx.log(f"dump readable: {len(entries)} TOC entries")
        _recreate_database(ctx, st, db)
        ctx.log(f"pg_restore into {db} (jobs {params.jobs})")
        started = time.monotonic()
        try:
            _run(ctx, st, self._argv(params, st.program("pg_restore")), what=f"pg_restore into {db}", database=db)
        except ActionError as exc:
            raise ActionError(f"{str(exc).rstrip('.')}; database {db} is incomplete: fix the cause and run the restore again.") from None
        ctx.log(f"pg_restore finished in {format_duration(time.monotonic() - started)}")
        with _connect(st, db) as conn:
            tables = _user_tables(conn)
            rows = _count(conn, tables, ctx.log)
        return {"database": db, "tables": list(rows), "rows": rows, "total_rows": sum(rows.values()), "sha256": digest}


def _terminate(conn: psycopg.Connection[Any], db: str, users: list[str] | None, log: Callable[[str], None]) -> int:
    query = ("SELECT pid, usename, application_name, client_addr::text FROM pg_stat_activity "
             "WHERE datname = %s AND pid <> pg_backend_pid()")
    args: list[Any] = [db]
    if users:
        query += " AND usename = ANY(%s)"
        args.append(list(users))
    terminated = 0
    for pid, user, app, addr in conn.execute(query, args).fetchall():
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        if row and row[0]:
            terminated += 1
            log(f"terminated pid {pid} (user {user}, application {app or '-'}, from {addr or 'local socket'})")
    log(f"terminated {terminated} connection(s) to {db}")
    return terminated


def _execute_all(conn: Any, statements: list[Any], log: Callable[[str], None]) -> list[str]:
    """Run each SQL statement, logging it; return their texts."""
    done = []
    for stmt in statements:
        text = stmt.as_string(conn)
        conn.execute(stmt)
        log(text)
        done.append(text)
    return done


def _recreate_database(ctx: StepContext, st: PostgresSettings, db: str) -> None:
    with _connect(st, st.maintenance_database) as conn:
        # Keep the database's access list across the re-creation: a REVOKE CONNECT issued to stop
        # the application must still hold while the restored data is being verified.
        row = conn.execute("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (db,)).fetchone()
        acl: list[str] | None = row[0] if row else None
        _terminate(conn, db, None, ctx.log)
        force = conn.info.server_version >= 130000  # WITH (FORCE) also stops connections racing in
        drop = _sql("DROP DATABASE IF EXISTS {}" + (" WITH (FORCE)" if force else ""), _ident(db))
        ctx.log(drop.as_string(conn))
        conn.execute(drop)
        create = _sql("CREATE DATABASE {} TEMPLATE template0", _ident(db))
        ctx.log(create.as_string(conn))
        conn.execute(create)
        if acl is not None and not any(entry.startswith("=") and "c" in entry.split("=", 1)[1].split("/")[0] for entry in acl):
            revoke = _sql("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", _ident(db))
            ctx.log(revoke.as_string(conn) + "  (as before the restore)")
            conn.execute(revoke)


# --- postgres.restore_tables ------------------------------------------------------------------


class RestoreTablesParams(_DbParams):
    path: str = Field(description="The dump file (custom format).")
    database: str = Field(description="Database holding the tables, e.g. {{ env.postgres.database }}.")
    tables: list[str] = Field(min_length=1, description="Tables to restore, e.g. [datasets, dataset_columns].")
    require_checksum: bool = Field(True, description="Refuse a dump without PATH.sha256.")


class RestoreTablesAction(BaseAction):
    name: ClassVar[str] = "postgres.restore_tables"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Replace the rows of some tables with exactly the dumped rows, in one transaction."
    Params = RestoreTablesParams
    outputs: ClassVar[dict[str, str]] = {
        "rows": "Row count per restored table.",
        "total_rows": "Sum of the row counts.",
        "order": "The order the tables were loaded in (parents first).",
    }

    def target(self, params: RestoreTablesParams) -> str:
        return params.database

    def describe(self, params: RestoreTablesParams) -> str:
        tables = ", ".join(_qtable(t) for t in params.tables)
        db = _dbname_arg(params.database)
        return (f"sha256sum -c {shlex.quote(params.path + '.sha256')}; pg_restore --data-only --no-owner "
                f"-L <TABLE DATA of {', '.join(params.tables)}, parents first> -f - {shlex.quote(params.path)} | "
                f"psql --no-psqlrc --single-transaction -v ON_ERROR_STOP=1 --dbname={shlex.quote(db)} "
                f"-c 'TRUNCATE {tables}' -f -")

    def run(self, ctx: StepContext, params: RestoreTablesParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = params.database
        path = Path(params.path)
        _verify_checksum(ctx, path, params.require_checksum)
        entries = _toc(ctx, st, path)
        with _connect(st, db) as conn:
            tables = _resolve_tables(conn, list(params.tables), db)
            order = _fk_order(conn, tables, db)
            truncate = _sql("TRUNCATE {}", _join(", ", [_ident(s, t) for s, t in order])).as_string(conn)
            sequences = _owned_sequences(conn, order)
        lines = []
        for schema, name in order:
            found = [e for e in entries if e.kind == "TABLE DATA" and e.names_table(schema, name)]
            if not found:
                raise ActionError(f"The dump {path} holds no data for table {table_key(schema, name)}: nothing was restored.")
            lines.append(found[0].line)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        listfile = ctx.workdir / f"restore_tables_{os.getpid()}_{time.monotonic_ns()}.list"
        listfile.write_text("\n".join(lines) + "\n")
        keys = [table_key(s, t) for s, t in order]
        ctx.log(f"restoring {', '.join(keys)} (in this order) from {path} into {db} in one transaction")
        producer = [st.program("pg_restore"), "--data-only", "--no-owner", "--no-password", f"--use-list={listfile}",
                    "--file=-", str(path)]
        consumer = [st.program("psql"), "--no-psqlrc", "--no-password", "--quiet", "--single-transaction",
                    "-v", "ON_ERROR_STOP=1", "--output=/dev/null", f"--dbname={_dbname_arg(db)}",
                    "-c", truncate, "-f", "-"]
        try:
            _pipeline(ctx, st, producer, consumer, db)
        finally:
            listfile.unlink(missing_ok=True)
        with _connect(st, db) as conn:
            _bump_sequences(conn, sequences, ctx.log)
            rows = _count(conn, order, ctx.log)
        return {"rows": rows, "total_rows": sum(rows.values()), "order": keys}


def _fk_order(conn: psycopg.Connection[Any], tables: list[tuple[str, str]], db: str) -> list[tuple[str, str]]:
    """``tables`` parents first; refuses when an unlisted table references a listed one."""
    fks = conn.execute(
        """
        SELECT cn.nspname, c.relname, pn.nspname, p.relname, con.conname
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
        JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE con.contype = 'f'
        """
    ).fetchall()
    listed = set(tables)
    parents: dict[tuple[str, str], set[tuple[str, str]]] = {t: set() for t in tables}
    for cs, cr, ps, pr, conname in fks:
        child, parent = (cs, cr), (ps, pr)
        if parent in listed and child not in listed:
            raise ActionError(
                f"Table {table_key(*child)} references {table_key(*parent)} (constraint {conname}) in {db}: "
                f"add {table_key(*child)} to tables so its rows are restored from the same dump."
            )
        if child in listed and parent in listed and child != parent:
            parents[child].add(parent)
    order: list[tuple[str, str]] = []
    pending = list(tables)
    while pending:
        ready = [t for t in pending if parents[t] <= set(order)]
        if not ready:  # a foreign-key cycle: keep the given order, the transaction still checks it
            ready = pending[:1]
        for t in ready:
            order.append(t)
            pending.remove(t)
    return order


def _owned_sequences(conn: psycopg.Connection[Any], tables: list[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """(seq schema, seq name, table regclass text…) for sequences owned by columns of ``tables``."""
    out = []
    for schema, name in tables:
        rows = conn.execute(
            """
            SELECT sn.nspname, s.relname, a.attname
            FROM pg_depend d
            JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
            JOIN pg_namespace sn ON sn.oid = s.relnamespace
            JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
              AND d.deptype IN ('a', 'i')
              AND d.refobjid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = %s AND c.relname = %s)
            """,
            (schema, name),
        ).fetchall()
        for seq_schema, seq_name, column in rows:
            out.append((seq_schema, seq_name, f"{schema}\x00{name}", column))
    return out


def _bump_sequences(conn: psycopg.Connection[Any], sequences: list[tuple[str, str, str, str]], log: Callable[[str], None]) -> None:
    """Move owned sequences forward past the restored ids (never backwards: ids may be referenced elsewhere)."""
    for seq_schema, seq_name, table, column in sequences:
        schema, name = table.split("\x00")
        row = conn.execute(
            _sql("SELECT (SELECT max({}) FROM {})::bigint, last_value, is_called FROM {}",
                 _ident(column), _ident(schema, name), _ident(seq_schema, seq_name))
        ).fetchone()
        if not row or row[0] is None:
            continue
        top, last, called = row
        if top > last or (top == last and not called):
            conn.execute("SELECT setval(%s::regclass, %s, true)",
                         (_sql("{}", _ident(seq_schema, seq_name)).as_string(conn), top))
            log(f"sequence {table_key(seq_schema, seq_name)} moved forward to {top}")


def _pipeline(ctx: StepContext, st: PostgresSettings, producer: list[str], consumer: list[str], db: str) -> None:
    """``producer | consumer`` where the consumer only ever sees a complete stream.

    The bytes are relayed through us: if the producer fails, the consumer is killed before its
    stdin closes, so ``psql --single-transaction`` never reaches its COMMIT and the server rolls
    the TRUNCATE back.
    """
    env = dict(os.environ)
    env.update(st.subprocess_env(db))
    tails: dict[str, deque[str]] = {"pg_restore": deque(maxlen=20), "psql": deque(maxlen=20)}
    try:
        p1 = subprocess.Popen(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, start_new_session=True)
    except OSError as exc:
        raise ActionError(f"Could not start {producer[0]}: {exc.strerror or exc}.") from None
    try:
        p2 = subprocess.Popen(consumer, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)
    except OSError as exc:
        _killpg(p1)
        raise ActionError(f"Could not start {consumer[0]}: {exc.strerror or exc}.") from None
    assert p1.stdout and p1.stderr and p2.stdin and p2.stdout

    def pump(stream: Any, name: str) -> None:
        for raw in stream:
            line = st.scrub(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            tails[name].append(line)
            ctx.log(f"{name}: {line}")

    pumps = [threading.Thread(target=pump, args=(p1.stderr, "pg_restore"), daemon=True),
             threading.Thread(target=pump, args=(p2.stdout, "psql"), daemon=True)]
    for t in pumps:
        t.start()
    stopped: list[str] = []
    done = threading.Event()

    def watchdog() -> None:
        deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
        while not done.wait(0.1):
            if ctx.cancelled.is_set() or (deadline is not None and time.monotonic() > deadline):
                stopped.append("cancelled" if ctx.cancelled.is_set() else "timeout")
                _killpg(p2)  # first: no COMMIT can happen
                _killpg(p1)
                return

    threading.Thread(target=watchdog, daemon=True).start()
    broken = False
    try:
        while chunk := p1.stdout.read1(1 << 20):
            try:
                p2.stdin.write(chunk)
            except (BrokenPipeError, OSError):
                broken = True  # psql stopped (an error): its exit code says why
                _killpg(p1)  # else pg_restore blocks forever on its full stdout pipe
                break
        rc1 = p1.wait()
        if broken:
            rc1 = 0  # killed by us: psql's error is the story
        if rc1 != 0 or stopped or broken:
            _killpg(p2)
        else:
            p2.stdin.close()
        rc2 = p2.wait()
    finally:
        done.set()
        for p in (p1, p2):
            if p.poll() is None:
                _killpg(p)
        with contextlib.suppress(OSError):
            p2.stdin.close()
        for t in pumps:
            t.join(timeout=5)
    if stopped:
        raise ActionError(f"The selective restore into {db} was {'stopped by the operator' if stopped[0] == 'cancelled' else 'stopped: it exceeded its timeout'}; the transaction was rolled back and nothing changed.")
    if rc1 != 0:
        last = tails["pg_restore"][-1] if tails["pg_restore"] else f"exit code {rc1}"
        raise ActionError(f"pg_restore failed reading the dump ({last}); the transaction was rolled back and {db} is unchanged.")
    if rc2 != 0:
        errors = [ln for ln in tails["psql"] if "ERROR" in ln] or list(tails["psql"]) or [f"exit code {rc2}"]
        raise ActionError(f"psql failed loading the rows into {db} ({errors[-1].strip()}); the transaction was rolled back and nothing changed.")


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- postgres.row_counts / compare_counts -----------------------------------------------------


class RowCountsParams(_DbParams):
    database: str | None = Field(None, description="Database (default: the store's database).")
    tables: list[str] | None = Field(None, description="Tables to count (default: every user table).")


class RowCountsAction(BaseAction):
    name: ClassVar[str] = "postgres.row_counts"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Exact row counts (SELECT count(*)) of some or all tables."
    Params = RowCountsParams
    outputs: ClassVar[dict[str, str]] = {"counts": "Rows per table.", "total": "Sum of the counts."}

    def target(self, params: RowCountsParams) -> str:
        return params.database or "database"

    def describe(self, params: RowCountsParams) -> str:
        tables = ", ".join(_qtable(t) for t in params.tables) if params.tables else "every user table"
        return f"SELECT count(*) FROM <table> for {tables} in {params.database or '<store database>'}"

    def run(self, ctx: StepContext, params: RowCountsParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        with _connect(st, db) as conn:
            tables = _resolve_tables(conn, list(params.tables), db) if params.tables else _user_tables(conn)
            counts = _count(conn, tables, ctx.log)
        return {"counts": counts, "total": sum(counts.values())}


class CompareCountsParams(_DbParams):
    database: str | None = Field(None, description="First database (default: the store's database).")
    other_database: str | None = Field(None, description="Second database on the same server (default: staging_database).")
    tables: list[str] | None = Field(None, description="Tables to compare (default: every user table of either).")
    fail_on_mismatch: bool = Field(True, description="Fail the step when counts differ.")


class CompareCountsAction(BaseAction):
    name: ClassVar[str] = "postgres.compare_counts"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Compare row counts of the same tables in two databases (e.g. prod vs a test restore)."
    Params = CompareCountsParams
    outputs: ClassVar[dict[str, str]] = {
        "counts_a": "Rows per table in the first database.",
        "counts_b": "Rows per table in the second.",
        "equal": "true when every count matches.",
        "mismatches": "One 'table A vs B' text per difference.",
    }

    def target(self, params: CompareCountsParams) -> str:
        return f"{params.database or 'database'} vs {params.other_database or 'staging_database'}"

    def describe(self, params: CompareCountsParams) -> str:
        tables = ", ".join(params.tables) if params.tables else "every user table"
        return (f"SELECT count(*) per table ({tables}) in {params.database or '<store database>'} and "
                f"{params.other_database or '<store staging_database>'}; compare")

    def run(self, ctx: StepContext, params: CompareCountsParams) -> dict[str, Any]:
        st = _settings(ctx)
        db_a = st.pick_database(params.database)
        db_b = st.pick_database(params.other_database, staging=True)
        sides: list[dict[str, int]] = []
        for db in (db_a, db_b):
            ctx.log(f"counting rows in {db}")
            with _connect(st, db) as conn:
                existing = _user_tables(conn)
                if params.tables:
                    wanted = [split_table(t) for t in params.tables]
                    keys = {table_key(*t): t for t in existing}
                    tables = []
                    for schema, name in wanted:
                        key = table_key(schema or "public", name)
                        if key in keys:
                            tables.append(keys[key])
                        else:
                            ctx.log(f"{key}: missing in {db}")
                else:
                    tables = existing
                sides.append(_count(conn, tables, ctx.log))
        a, b = sides
        names = list(dict.fromkeys([*(table_key(s or "public", n) for s, n in map(split_table, params.tables or [])), *a, *b]))
        mismatches = [
            f"{t} {a.get(t, 'missing')} vs {b.get(t, 'missing')}" for t in names if a.get(t) != b.get(t)
        ]
        equal = not mismatches
        ctx.log(f"{db_a} vs {db_b}: " + ("all counts equal" if equal else "; ".join(mismatches)))
        if mismatches and params.fail_on_mismatch:
            raise ActionError(f"Row count mismatch between {db_a} and {db_b}: {', '.join(mismatches)}.")
        return {"counts_a": a, "counts_b": b, "equal": equal, "mismatches": mismatches}


# --- connections: terminate / revoke / grant --------------------------------------------------


class TerminateParams(_DbParams):
    database: str | None = Field(None, description="Database whose connections to end (default: the store's).")
    users: list[str] | None = Field(None, description="Only connections of these roles (default: all but ours).")

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[str] | None) -> list[str] | None:
        for u in v or []:
            check_identifier(u, "role name")
        return v


class TerminateAction(BaseAction):
    name: ClassVar[str] = "postgres.terminate_connections"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "End the sessions connected to a database (stop the app's writes)."
    Params = TerminateParams
    outputs: ClassVar[dict[str, str]] = {"terminated": "Sessions ended."}

    def target(self, params: TerminateParams) -> str:
        return params.database or "database"

    def describe(self, params: TerminateParams) -> str:
        who = f" AND usename IN ({', '.join(params.users)})" if params.users else ""
        return (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                f"'{params.database or '<store database>'}' AND pid <> pg_backend_pid(){who}")

    def run(self, ctx: StepContext, params: TerminateParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        with _connect(st, st.maintenance_database) as conn:
            return {"terminated": _terminate(conn, db, params.users, ctx.log)}


class ConnectPrivParams(_DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    roles: list[str] = Field(default_factory=list, description="Named roles, besides PUBLIC.")
    public: bool = Field(True, description="Also PUBLIC (every role).")


class RevokeConnectParams(ConnectPrivParams):
    terminate: bool = Field(False, description="Also end the sessions already connected (of those roles, or all).")


def _priv_statements(verb: str, db: str, roles: list[str], public: bool) -> list[Any]:
    word = "FROM" if verb == "REVOKE" else "TO"
    out = []
    if public:
        out.append(_sql(f"{verb} CONNECT ON DATABASE {{}} {word} PUBLIC", _ident(db)))
    for role in roles:
        out.append(_sql(f"{verb} CONNECT ON DATABASE {{}} {word} {{}}", _ident(db), _ident(role)))
    return out


def _describe_priv(verb: str, params: ConnectPrivParams) -> str:
    word = "FROM" if verb == "REVOKE" else "TO"
    db = _quote(params.database) if params.database else "<store database>"
    who = (["PUBLIC"] if params.public else []) + [_quote(r) for r in params.roles]
    return "; ".join(f"{verb} CONNECT ON DATABASE {db} {word} {w}" for w in who) or f"{verb} nothing (no roles)"


class RevokeConnectAction(BaseAction):
    name: ClassVar[str] = "postgres.revoke_connect"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "REVOKE CONNECT on a database from PUBLIC and named roles (stop the app / lock down)."
    Params = RevokeConnectParams
    outputs: ClassVar[dict[str, str]] = {"statements": "SQL run.", "terminated": "Sessions ended."}

    def target(self, params: RevokeConnectParams) -> str:
        return params.database or "database"

    def describe(self, params: RevokeConnectParams) -> str:
        text = _describe_priv("REVOKE", params)
        if params.terminate:
            text += "; SELECT pg_terminate_backend(pid) for its sessions"
        return text

    def run(self, ctx: StepContext, params: RevokeConnectParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        statements = _priv_statements("REVOKE", db, params.roles, params.public)
        if not statements:
            raise ActionError("Nothing to revoke: set public: true or list roles.")
        with _connect(st, st.maintenance_database) as conn:
            done = _execute_all(conn, statements, ctx.log)
            ctx.log("note: superusers and the database owner can still connect")
            terminated = 0
            if params.terminate:
                users = None if params.public else list(params.roles)
                terminated = _terminate(conn, db, users, ctx.log)
        return {"statements": done, "terminated": terminated}


class GrantConnectAction(BaseAction):
    name: ClassVar[str] = "postgres.grant_connect"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "GRANT CONNECT on a database back to PUBLIC and named roles (restart the app)."
    Params = ConnectPrivParams
    outputs: ClassVar[dict[str, str]] = {"statements": "SQL run."}

    def target(self, params: ConnectPrivParams) -> str:
        return params.database or "database"

    def describe(self, params: ConnectPrivParams) -> str:
        return _describe_priv("GRANT", params)

    def run(self, ctx: StepContext, params: ConnectPrivParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        statements = _priv_statements("GRANT", db, params.roles, params.public)
        if not statements:
            raise ActionError("Nothing to grant: set public: true or list roles.")
        with _connect(st, st.maintenance_database) as conn:
            done = _execute_all(conn, statements, ctx.log)
        return {"statements": done}


# --- postgres.prune_dumps ---------------------------------------------------------------------


class PruneDumpsParams(ActionParams):
    directory: str = Field(description="The dump directory.")
    prefix: str = Field("varlor_db_", description="Only files whose name starts with this.")
    retention_days: float = Field(30, ge=0, description="Delete dumps modified more than this many days ago.")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_component(v, "prefix")


class PruneDumpsAction(BaseAction):
    name: ClassVar[str] = "postgres.prune_dumps"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Delete dumps (and their .sha256) older than the retention; never the newest."
    Params = PruneDumpsParams
    outputs: ClassVar[dict[str, str]] = {"deleted": "Names deleted.", "kept": "How many dumps remain."}

    def target(self, params: PruneDumpsParams) -> str:
        return os.path.abspath(params.directory)

    def describe(self, params: PruneDumpsParams) -> str:
        return (f"find {shlex.quote(os.path.abspath(params.directory))} -maxdepth 1 -type f -name "
                f"'{params.prefix}*' ! -name '*.sha256' -mtime +{params.retention_days:g} -delete "
                "(and each NAME.sha256), keeping the newest dump")

    def run(self, ctx: StepContext, params: PruneDumpsParams) -> dict[str, Any]:
        directory = Path(params.directory)
        if not directory.is_dir():
            raise ActionError(f"Dump directory not found: {directory}.")
        dumps = []
        for entry in os.scandir(directory):
            if (entry.name.startswith(params.prefix) and not entry.name.endswith((".sha256", ".tmp"))
                    and entry.is_file(follow_symlinks=False)):
                dumps.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
        dumps.sort()
        cutoff = time.time() - params.retention_days * 86400
        deleted = []
        for mtime, name in dumps[:-1]:  # the newest is never a candidate
            if mtime >= cutoff:
                continue
            (directory / name).unlink(missing_ok=True)
            (directory / f"{name}.sha256").unlink(missing_ok=True)
            deleted.append(name)
            ctx.log(f"deleted {name} ({format_duration(time.time() - mtime)} old) and its .sha256")
        kept = len(dumps) - len(deleted)
        ctx.log(f"deleted {len(deleted)} dump(s) older than {params.retention_days:g} days; kept {kept}")
        return {"deleted": deleted, "kept": kept}


# --- integrity ----------------------------------------------------------------------------------


class CheckIntegrityParams(_DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    tables: list[str] | None = Field(None, description="Tables to read (default: every user table).")
    fail: bool = Field(True, description="Fail the step when corruption is found.")


class CheckIntegrityAction(BaseAction):
    name: ClassVar[str] = "postgres.check_integrity"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Identify corruption: pg_stat_database (checksum failures) and read every table."
    Params = CheckIntegrityParams
    outputs: ClassVar[dict[str, str]] = {
        "ok": "true when nothing looks corrupted.",
        "checksum_failures": "pg_stat_database.checksum_failures (None when not reported).",
        "data_checksums": "Whether the cluster has data checksums on.",
        "unreadable": "Tables whose full read failed, with the error.",
        "counts": "Rows per readable table.",
        "stats": "The pg_stat_database row.",
    }

    def target(self, params: CheckIntegrityParams) -> str:
        return params.database or "database"

    def describe(self, params: CheckIntegrityParams) -> str:
        db = params.database or "<store database>"
        return f"SELECT * FROM pg_stat_database WHERE datname = '{db}'; SHOW data_checksums; SELECT count(*) per table"

    def run(self, ctx: StepContext, params: CheckIntegrityParams) -> dict[str, Any]:
        import psycopg

        st = _settings(ctx)
        db = st.pick_database(params.database)
        with _connect(st, db) as conn:
            cur = conn.execute("SELECT * FROM pg_stat_database WHERE datname = %s", (db,))
            names = [d.name for d in cur.description or []]
            row = cur.fetchone()
            stats = {k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
                     for k, v in zip(names, row or (), strict=False)}
            checksums_row = conn.execute("SHOW data_checksums").fetchone()
            data_checksums = bool(checksums_row and checksums_row[0] == "on")
            failures = stats.get("checksum_failures")
            ctx.log(f"{db}: backends {stats.get('numbackends')}, commits {stats.get('xact_commit')}, rollbacks "
                    f"{stats.get('xact_rollback')}, deadlocks {stats.get('deadlocks')}, conflicts {stats.get('conflicts')}, "
                    f"data checksums {'on' if data_checksums else 'off'}, checksum failures {failures if failures is not None else 'n/a'}")
            tables = _resolve_tables(conn, list(params.tables), db) if params.tables else _user_tables(conn)
            counts: dict[str, int] = {}
            unreadable: dict[str, str] = {}
            for schema, name in tables:
                key = table_key(schema, name)
                try:
                    r = conn.execute(_sql("SELECT count(*) FROM {}", _ident(schema, name))).fetchone()
                    counts[key] = int(r[0]) if r else 0
                    ctx.log(f"{key}: readable, {counts[key]} rows")
                except psycopg.errors.QueryCanceled:
                    raise
                except psycopg.Error as exc:
                    unreadable[key] = st.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    ctx.log(f"{key}: UNREADABLE: {unreadable[key]}")
        ok = not unreadable and not failures
        if not ok and params.fail:
            problems = []
            if failures:
                problems.append(f"{failures} checksum failure(s)")
            problems += [f"{t} unreadable ({e})" for t, e in unreadable.items()]
            raise ActionError(f"PostgreSQL database {db} looks corrupted: {'; '.join(problems)}.")
        return {"ok": ok, "checksum_failures": failures, "data_checksums": data_checksums,
                "unreadable": unreadable, "counts": counts, "stats": stats}


class ReindexParams(_DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    concurrently: bool = Field(False, description="REINDEX … CONCURRENTLY (no write lock; skips system catalogs).")


class ReindexAction(BaseAction):
    name: ClassVar[str] = "postgres.reindex"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "REINDEX DATABASE (rebuild every index, e.g. after index corruption)."
    Params = ReindexParams
    outputs: ClassVar[dict[str, str]] = {"database": "The database reindexed.", "seconds": "How long it took."}

    def target(self, params: ReindexParams) -> str:
        return params.database or "database"

    def describe(self, params: ReindexParams) -> str:
        db = _quote(params.database) if params.database else "<store database>"
        return f"REINDEX DATABASE {'CONCURRENTLY ' if params.concurrently else ''}{db}"

    def run(self, ctx: StepContext, params: ReindexParams) -> dict[str, Any]:
        st = _settings(ctx)
        db = st.pick_database(params.database)
        started = time.monotonic()
        with _connect(st, db) as conn:
            stmt = _sql("REINDEX DATABASE " + ("CONCURRENTLY " if params.concurrently else "") + "{}", _ident(db))
            ctx.log(stmt.as_string(conn))
            conn.execute(stmt)
        took = time.monotonic() - started
        ctx.log(f"reindexed {db} in {format_duration(took)}")
        return {"database": db, "seconds": round(took, 2)}


# --- point-in-time recovery ---------------------------------------------------------------------


def _pitr_dir(st: PostgresSettings, given: str | None, what: str) -> Path:
    value = given or st.pitr_dir
    if not value:
        raise ActionError(f"No directory for {what}: pass directory in the step or set pitr_dir in the postgres store.")
    return Path(value).absolute()


class BaseBackupParams(ActionParams):
    directory: str | None = Field(None, description="Where base backups go (default: the store's pitr_dir).")
    label: str | None = Field(None, description="Backup label (default runbook_<UTC timestamp>).")
    compress: bool = Field(True, description="gzip the tar files (pg_basebackup --gzip).")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return None if v is None else _check_component(v, "label")


class BaseBackupAction(BaseAction):
    name: ClassVar[str] = "postgres.base_backup"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Take a base backup (pg_basebackup, tar format, WAL streamed) for point-in-time recovery."
    Params = BaseBackupParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The base backup directory (base.tar.gz, pg_wal.tar.gz, backup_manifest).",
        "label": "Its label.",
        "start_time": "UTC ISO time the backup started.",
        "end_time": "UTC ISO time it finished (recover to a time after this).",
        "size": "Bytes.",
    }

    def target(self, params: BaseBackupParams) -> str:
        return params.directory or "pitr_dir"

    def _argv(self, program: str, dest: str, label: str, compress: bool) -> list[str]:
        argv = [program, f"--pgdata={dest}", "--format=tar", "--wal-method=stream", "--checkpoint=fast",
                f"--label={label}", "--no-password", "--verbose"]
        return [*argv, "--gzip"] if compress else argv

    def describe(self, params: BaseBackupParams) -> str:
        base = os.path.join(params.directory or "<pitr_dir>", "base_<UTC YYYYmmdd_HHMMSS>")
        argv = self._argv("pg_basebackup", base + ".tmp", params.label or "runbook_<UTC YYYYmmdd_HHMMSS>", params.compress)
        return f"{shlex.join(argv)}; rename → {base}"

    def run(self, ctx: StepContext, params: BaseBackupParams) -> dict[str, Any]:
        st = _settings(ctx)
        parent = _pitr_dir(st, params.directory, "base backups")
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = _utc_stamp()
        final = parent / f"base_{stamp}"
        n = 1
        while final.exists():
            final = parent / f"base_{stamp}_{n}"
            n += 1
        tmp = parent / f".{final.name}.tmp"
        label = params.label or f"runbook_{stamp}"
        start = datetime.now(UTC)
        # pg_basebackup is a client: tar format means the files' ownership does not matter, so it
        # runs as us; pitr_restore hands the unpacked data directory to the server's user.
        argv = self._argv(st.program("pg_basebackup"), str(tmp), label, params.compress)
        ctx.log(f"base backup of {st.address} into {final} (label {label})")
        try:
            _run(ctx, st, argv, what="pg_basebackup", database=st.maintenance_database)
            os.replace(tmp, final)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        end = datetime.now(UTC)
        size = sum(p.stat().st_size for p in final.iterdir() if p.is_file())
        ctx.log(f"base backup {final} done: {human_bytes(size)} in {format_duration((end - start).total_seconds())}")
        return {"path": str(final), "label": label, "start_time": start.isoformat(), "end_time": end.isoformat(), "size": size}


def parse_target_time(value: str) -> datetime:
    """An ISO timestamp; without an offset it is read as UTC.

    Raises:
        ValueError: Not an ISO timestamp.
    """
    try:
        when = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{value!r} is not an ISO timestamp such as 2025-11-23T10:30:00Z.") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PitrParams(_DbParams):
    target_time: str = Field(description="Recover up to this ISO time (UTC when it has no offset).")
    backup: str | None = Field(None, description="Base backup directory (default: the newest base_* in pitr_dir).")
    wal_archive: str | None = Field(None, description="WAL archive directory (default: the store's wal_archive).")
    directory: str | None = Field(None, description="Parent of the new cluster directory (default: pitr_dir).")
    port: int | None = Field(None, ge=1, le=65535, description="Port of the temporary server (default: a free one).")
    database: str | None = Field(None, description="Database whose rows are counted (default: the store's).")
    tables: list[str] | None = Field(None, description="Tables to count (default: every user table).")
    wait_seconds: float = Field(600, gt=0, description="How long recovery may take.")

    @field_validator("target_time")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_target_time(v)
        return v


class PitrRestoreAction(BaseAction):
    name: ClassVar[str] = "postgres.pitr_restore"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Point-in-time recovery into a new data directory and a temporary server; counts rows."
    Params = PitrParams
    outputs: ClassVar[dict[str, str]] = {
        "data_dir": "The new data directory.",
        "port": "Port of the temporary server (on 127.0.0.1).",
        "dsn": "Its connection string (no password).",
        "counts": "Rows per table after recovery.",
        "recovered_to": "What the server log says recovery stopped at.",
        "target_time": "The recovery target, as written to the configuration.",
    }

    def target(self, params: PitrParams) -> str:
        # What the operator must be sure of: the point in time the data goes back to.
        return params.target_time

    def describe(self, params: PitrParams) -> str:
        when = parse_target_time(params.target_time).isoformat(sep=" ")
        archive = shlex.quote(params.wal_archive) if params.wal_archive else "<wal_archive>"
        return (f"untar {params.backup or '<newest base backup>'} into {params.directory or '<pitr_dir>'}/pitr_<ts>/data; "
                f"recovery.signal; restore_command = 'cp {archive}/%f %p', recovery_target_time = "
                f"'{when}', recovery_target_action = 'promote' in postgresql.auto.conf; "
                f"pg_ctl start on 127.0.0.1:{params.port or '<free port>'}; wait until pg_is_in_recovery() is false")

    def run(self, ctx: StepContext, params: PitrParams) -> dict[str, Any]:
        st = _settings(ctx)
        when = parse_target_time(params.target_time)
        if when > datetime.now(UTC):
            raise ActionError(f"The recovery target {when.isoformat()} is in the future: pick a time already in the WAL archive.")
        parent = _pitr_dir(st, params.directory, "the recovered cluster")
        backup = Path(params.backup).absolute() if params.backup else _newest_base_backup(_pitr_dir(st, None, "base backups"))
        base_tar = next((backup / n for n in ("base.tar.gz", "base.tar") if (backup / n).is_file()), None)
        if base_tar is None:
            raise ActionError(f"No base.tar(.gz) in {backup}: it is not a pg_basebackup tar-format backup.")
        archive_value = params.wal_archive or st.wal_archive
        if not archive_value:
            raise ActionError("No WAL archive: pass wal_archive in the step or set wal_archive in the postgres store.")
        archive = Path(archive_value).absolute()
        if not archive.is_dir():
            raise ActionError(f"WAL archive directory not found: {archive}.")
        db = st.pick_database(params.database)
        user = st.system_user()

        from runbook.sandbox.procs import free_port

        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = parent / f"pitr_{_utc_stamp()}"
        n = 1
        while base.exists():
            base = parent / f"pitr_{_utc_stamp()}_{n}"
            n += 1
        data = base / "data"
        run_dir = base / "run"
        if len(str(run_dir / ".s.PGSQL.65535.lock")) > 100:
            # A Unix socket path is limited to 107 bytes: deep directories get a short one.
            import hashlib
            import tempfile

            run_dir = Path(tempfile.gettempdir()) / f"runbook-pitr-{hashlib.sha1(str(base).encode()).hexdigest()[:12]}"
        data.mkdir(parents=True, mode=0o700)
        run_dir.mkdir(parents=True, exist_ok=True)
        ctx.log(f"unpacking {base_tar} into {data}")
        _untar(base_tar, data)
        wal_tar = next((backup / n for n in ("pg_wal.tar.gz", "pg_wal.tar") if (backup / n).is_file()), None)
        if wal_tar is not None:
            _untar(wal_tar, data / "pg_wal")
        extra = sorted(p.name for p in backup.glob("*.tar*") if not p.name.startswith(("base.", "pg_wal.")))
        if extra:
            raise ActionError(f"The base backup {backup} has tablespace archives ({', '.join(extra)}), which pitr_restore does not support.")
        for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (data / stale).unlink(missing_ok=True)
        port = params.port or free_port()
        self._configure(ctx, data, run_dir, archive, when, port)
        os.chmod(data, 0o700)
        log_path = base / "server.log"
        log_path.touch()
        (base / "port").write_text(f"{port}\n")  # same layout as the sandbox cluster: `sandbox down` stops it
        _hand_over(base, user, ctx.log)
        if not run_dir.is_relative_to(base):
            _hand_over(run_dir, user, ctx.log)
        version = (data / "PG_VERSION").read_text().strip() if (data / "PG_VERSION").is_file() else None
        pg_ctl = st.program("pg_ctl", version)
        preexec = user if _is_root() else None
        ctx.log(f"starting a temporary server on 127.0.0.1:{port} to replay WAL up to {when.isoformat()}")
        try:
            _run(ctx, st, [pg_ctl, "-D", str(data), "-l", str(log_path), "-w", "-t", str(int(params.wait_seconds)), "start"],
                 what="pg_ctl start of the recovered cluster", preexec_user=preexec, cwd=base)
            local = dataclasses.replace(st, host="127.0.0.1", port=port)
            self._wait_promoted(ctx, local, data, log_path, params.wait_seconds)
            recovered_to = _recovery_summary(log_path)
            ctx.log(f"recovery finished: {recovered_to or 'promoted'}")
            with _connect(local, db) as conn:
                tables = _resolve_tables(conn, list(params.tables), db) if params.tables else _user_tables(conn)
                counts = _count(conn, tables, ctx.log)
        except BaseException as exc:
            ctx.log("stopping the temporary server after the failure")
            with contextlib.suppress(Exception):
                _pg_ctl_stop(ctx, st, data, "immediate", 30.0, quiet=True)
            if isinstance(exc, ActionError):
                detail = _log_fatal(log_path)
                if detail and detail not in str(exc):
                    raise ActionError(f"{str(exc).rstrip('.')} (server log: {detail}).") from None
            raise
        dsn = f"host=127.0.0.1 port={port} user={st.user} dbname={db}"
        return {"data_dir": str(data), "port": port, "dsn": dsn, "counts": counts,
                "recovered_to": recovered_to, "target_time": when.isoformat(sep=" ")}

    @staticmethod
    def _configure(ctx: StepContext, data: Path, run_dir: Path, archive: Path, when: datetime, port: int) -> None:
        if not (data / "postgresql.conf").is_file():
            # e.g. Debian keeps postgresql.conf in /etc, outside the data directory.
            (data / "postgresql.conf").write_text("# written by runbook pitr_restore\n")
            ctx.log("the backup has no postgresql.conf: using defaults")
        if not (data / "pg_hba.conf").is_file():
            (data / "pg_hba.conf").write_text(
                "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
            )
            ctx.log("the backup has no pg_hba.conf: local peer, host scram-sha-256")
        settings = {
            "restore_command": _conf_string(f"cp {shlex.quote(str(archive))}/%f %p"),
            "recovery_target_time": _conf_string(when.isoformat(sep=" ")),
            "recovery_target_action": "'promote'",
            # A temporary copy must not archive into the source's WAL archive.
            "archive_mode": "'off'",
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _conf_string(str(run_dir)),
            "hot_standby": "'on'",
        }
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        with open(data / "postgresql.auto.conf", "a") as fh:
            fh.write(f"\n# --- runbook point-in-time recovery ---\n{conf}")
        (data / "recovery.signal").write_text("")
        for line in conf.splitlines():
            ctx.log(f"postgresql.auto.conf: {line}")

    @staticmethod
    def _wait_promoted(ctx: StepContext, local: PostgresSettings, data: Path, log_path: Path, wait: float) -> None:
        import psycopg

        deadline = time.monotonic() + wait
        last_note = 0.0
        while True:
            if ctx.cancelled.is_set():
                raise ActionError("Point-in-time recovery was stopped by the operator.")
            if not _postmaster_alive(data):
                raise ActionError(f"The recovered PostgreSQL server in {data} exited during recovery.")
            try:
                with psycopg.connect(**local.connect_kwargs(local.maintenance_database), autocommit=True) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and not row[0]:
                        return
            except psycopg.Error:
                pass  # still starting or replaying: 57P03 until consistent
            now = time.monotonic()
            if now > deadline:
                raise ActionError(f"Point-in-time recovery in {data} did not finish within {format_duration(wait)}.")
            if now - last_note > 5:
                ctx.log("replaying WAL…")
                last_note = now
            time.sleep(PITR_POLL)


def _newest_base_backup(parent: Path) -> Path:
    found = sorted((p for p in parent.glob("base_*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ActionError(f"No base backup (base_*) in {parent}: run postgres.base_backup first.")
    return found[-1]


def _untar(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, '..' and links leaving dest.
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ActionError(f"Cannot unpack the base backup {archive}: {exc}.") from None


def _postmaster_alive(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    from runbook.sandbox.procs import pid_alive

    return pid_alive(pid)


def _log_fatal(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    fatal = [ln for ln in lines if "FATAL:" in ln or "PANIC:" in ln]
    if not fatal:
        return ""
    return fatal[-1].split(":", 3)[-1].strip() if "FATAL:" not in fatal[-1] else fatal[-1].split("FATAL:", 1)[1].strip()


def _recovery_summary(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for key in ("recovery stopping", "last completed transaction was at log time"):
        hits = [ln for ln in lines if key in ln]
        if hits:
            return hits[-1].split("LOG:", 1)[-1].strip()
    return ""


def _pg_ctl_stop(ctx: StepContext, st: PostgresSettings, data: Path, mode: str, timeout: float, quiet: bool = False) -> None:
    version = (data / "PG_VERSION").read_text().strip() if (data / "PG_VERSION").is_file() else None
    argv = [st.program("pg_ctl", version), "-D", str(data), "-m", mode, "-w", "-t", str(int(timeout)), "stop"]
    user = st.system_user() if _is_root() else None
    _run(ctx, st, argv, what=f"pg_ctl stop of {data}", preexec_user=user, cwd=data.parent,
         log=(lambda _line: None) if quiet else None)


class StopClusterParams(ActionParams):
    data_dir: str = Field(description="Data directory of the server to stop (e.g. the pitr_restore output).")
    mode: str = Field("fast", pattern="^(smart|fast|immediate)$", description="pg_ctl stop mode.")
    timeout: float = Field(60, gt=0, description="Seconds to wait for it to stop.")
    allow_main: bool = Field(False, description="Allow stopping the store's main data_dir.")


class StopClusterAction(BaseAction):
    name: ClassVar[str] = "postgres.stop_cluster"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Stop a local PostgreSQL server (e.g. the temporary PITR server) and check none of it remains."
    Params = StopClusterParams
    outputs: ClassVar[dict[str, str]] = {"stopped": "true when a running server was stopped.", "data_dir": "The data directory."}

    def target(self, params: StopClusterParams) -> str:
        return os.path.abspath(params.data_dir)

    def describe(self, params: StopClusterParams) -> str:
        return shlex.join(["pg_ctl", "-D", os.path.abspath(params.data_dir), "-m", params.mode, "-w", "-t",
                           str(int(params.timeout)), "stop"])

    def run(self, ctx: StepContext, params: StopClusterParams) -> dict[str, Any]:
        st = _settings(ctx) if "postgres" in ctx.environment.stores else PostgresSettings()
        data = Path(params.data_dir).absolute()
        if not (data / "PG_VERSION").is_file():
            raise ActionError(f"{data} is not a PostgreSQL data directory (no PG_VERSION).")
        if st.data_dir and os.path.realpath(st.data_dir) == os.path.realpath(data) and not params.allow_main:
            raise ActionError(f"{data} is the environment's main PostgreSQL data directory: set allow_main: true to stop it.")
        from runbook.sandbox.procs import processes_with_cwd

        if not _postmaster_alive(data):
            ctx.log(f"no server is running in {data}")
            stopped = False
        else:
            _pg_ctl_stop(ctx, st, data, params.mode, params.timeout)
            stopped = True
        deadline = time.monotonic() + 5
        while (left := processes_with_cwd(data, exe_name="postgres")) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            raise ActionError(f"PostgreSQL processes {left} of {data} are still running after pg_ctl stop.")
        if stopped:
            ctx.log(f"stopped the server in {data}; no process of it remains")
        return {"stopped": stopped, "data_dir": str(data)}


ACTIONS = [
    DumpAction,
    VerifyDumpAction,
    RestoreAction,
    RestoreTablesAction,
    RowCountsAction,
    CompareCountsAction,
    TerminateAction,
    RevokeConnectAction,
    GrantConnectAction,
    PruneDumpsAction,
    CheckIntegrityAction,
    ReindexAction,
    BaseBackupAction,
    PitrRestoreAction,
    StopClusterAction,
]
