"""Who may be connected: end sessions, REVOKE / GRANT CONNECT (stop the app, lock down, reopen)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

from .common import connect, ident, settings_and_database, sql_text
from .names import DbParams, quote

if TYPE_CHECKING:
    import psycopg


def terminate_sessions(
    conn: psycopg.Connection[Any], db: str, users: list[str] | None, log: Callable[[str], None]
) -> int:
    """End the sessions connected to ``db`` (of ``users`` only, when given), except our own."""
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


# --- postgres.terminate_connections -----------------------------------------------------------------


class TerminateParams(DbParams):
    database: str | None = Field(None, description="Database whose connections to end (default: the store's).")
    users: list[str] | None = Field(None, description="Only connections of these roles (default: all but ours).")


class TerminateOutputs(ActionOutputs):
    terminated: int
    """Sessions ended."""


def _describe_terminate(params: TerminateParams) -> str:
    who = f" AND usename IN ({', '.join(params.users)})" if params.users else ""
    return (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            f"'{params.database or '<store database>'}' AND pid <> pg_backend_pid(){who}")


@action("postgres.terminate_connections", Effect.MUTATING,
        "End the sessions connected to a database (stop the app's writes).",
        target=lambda p: p.database or "database", describe=_describe_terminate)
def terminate_connections(ctx: StepContext, params: TerminateParams) -> TerminateOutputs:
    st, db = settings_and_database(ctx, params.database)
    with connect(st, st.maintenance_database) as conn:
        return TerminateOutputs(terminated=terminate_sessions(conn, db, params.users, ctx.log))


# --- postgres.revoke_connect / grant_connect --------------------------------------------------------


class ConnectPrivParams(DbParams):
    database: str | None = Field(None, description="Database (default: the store's).")
    roles: list[str] = Field(default_factory=list, description="Named roles, besides PUBLIC.")
    public: bool = Field(True, description="Also PUBLIC (every role).")


class RevokeConnectParams(ConnectPrivParams):
    terminate: bool = Field(False, description="Also end the sessions already connected (of those roles, or all).")


class RevokeConnectOutputs(ActionOutputs):
    statements: list[str]
    """SQL run."""
    terminated: int
    """Sessions ended."""


class GrantConnectOutputs(ActionOutputs):
    statements: list[str]
    """SQL run."""


def _preposition(verb: str) -> str:
    return "FROM" if verb == "REVOKE" else "TO"


def _priv_statements(verb: str, db: str, roles: list[str], public: bool) -> list[Any]:
    word = _preposition(verb)
    out = []
    if public:
        out.append(sql_text(f"{verb} CONNECT ON DATABASE {{}} {word} PUBLIC", ident(db)))
    for role in roles:
        out.append(sql_text(f"{verb} CONNECT ON DATABASE {{}} {word} {{}}", ident(db), ident(role)))
    return out


def _describe_priv(verb: str, params: ConnectPrivParams) -> str:
    word = _preposition(verb)
    db = quote(params.database) if params.database else "<store database>"
    who = (["PUBLIC"] if params.public else []) + [quote(r) for r in params.roles]
    return "; ".join(f"{verb} CONNECT ON DATABASE {db} {word} {w}" for w in who) or f"{verb} nothing (no roles)"


def _execute_all(conn: Any, statements: list[Any], log: Callable[[str], None]) -> list[str]:
    """Run each SQL statement, logging it; return their texts."""
    done = []
    for stmt in statements:
        text = stmt.as_string(conn)
        conn.execute(stmt)
        log(text)
        done.append(text)
    return done


def _describe_revoke(params: RevokeConnectParams) -> str:
    text = _describe_priv("REVOKE", params)
    if params.terminate:
        text += "; SELECT pg_terminate_backend(pid) for its sessions"
    return text


@contextlib.contextmanager
def _connect_changed(
    ctx: StepContext, verb: str, params: ConnectPrivParams
) -> Iterator[tuple[psycopg.Connection[Any], str, list[str]]]:
    """Run ``verb`` CONNECT for the step's roles; yield the open connection, the database and the SQL run."""
    st, db = settings_and_database(ctx, params.database)
    statements = _priv_statements(verb, db, params.roles, params.public)
    if not statements:
        raise ActionError(f"Nothing to {verb.lower()}: set public: true or list roles.")
    with connect(st, st.maintenance_database) as conn:
        yield conn, db, _execute_all(conn, statements, ctx.log)


@action("postgres.revoke_connect", Effect.MUTATING,
        "REVOKE CONNECT on a database from PUBLIC and named roles (stop the app / lock down).",
        target=lambda p: p.database or "database", describe=_describe_revoke)
def revoke_connect(ctx: StepContext, params: RevokeConnectParams) -> RevokeConnectOutputs:
    with _connect_changed(ctx, "REVOKE", params) as (conn, db, done):
        ctx.log("note: superusers and the database owner can still connect")
        terminated = 0
        if params.terminate:
            users = None if params.public else list(params.roles)
            terminated = terminate_sessions(conn, db, users, ctx.log)
    return RevokeConnectOutputs(statements=done, terminated=terminated)


@action("postgres.grant_connect", Effect.MUTATING,
        "GRANT CONNECT on a database back to PUBLIC and named roles (restart the app).",
        target=lambda p: p.database or "database", describe=lambda p: _describe_priv("GRANT", p))
def grant_connect(ctx: StepContext, params: ConnectPrivParams) -> GrantConnectOutputs:
    with _connect_changed(ctx, "GRANT", params) as (_, _, done):
        return GrantConnectOutputs(statements=done)
