"""PostgreSQL connection settings from an environment's ``postgres`` store, and error translation.

Settings (``[environments.NAME.postgres]`` in ``runbook.toml``)::

    host = "db.internal"            # default 127.0.0.1
    port = 5432                     # default 5432
    user = "varlor_prod"            # default postgres
    database = "varlor"             # the application database
    staging_database = "varlor_staging"   # where test restores go
    password_env = "VARLOR_DB_PASSWORD"   # NAME of the variable holding the password
    sslmode = "require"             # optional, passed to libpq
    maintenance_database = "postgres"     # where DROP/CREATE DATABASE run from (default postgres)
    connect_timeout = 10            # seconds
    bin_dir = "/usr/lib/postgresql/15/bin"   # optional: where pg_dump/pg_restore/psql/pg_ctl live
    # local-cluster operations (point-in-time recovery drills):
    data_dir = "/var/lib/postgresql/15/main"
    wal_archive = "/var/backups/varlor/wal_archive"
    pitr_dir = "/var/backups/varlor/pitr"   # base backups and recovered clusters
    run_as = "postgres"             # system user for server programs (default postgres as root)

The password never travels in argv: subprocesses get it as ``PGPASSWORD`` in their environment
and psycopg as a keyword argument. It is never logged and is scrubbed from every error message.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable

if TYPE_CHECKING:
    import psycopg

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432
DEFAULT_USER = "postgres"
APPLICATION_NAME = "runbook"
PG_LIB = Path("/usr/lib/postgresql")  # Debian/Ubuntu: one bin/ per installed major version
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq variables that would silently change where or how a subprocess connects.
# (A service file's values beat PGHOST & co., so a PGSERVICE in the operator's shell could send
# pg_restore to another server than the one psycopg talks to.)
_LIBPQ_OVERRIDES = ("PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR")
# libpq's connection keywords (psycopg) and the variables the programs read them from.
_LIBPQ_VARIABLES = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "dbname": "PGDATABASE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "password": "PGPASSWORD",
}


class ProgramNotFound(ActionError):
    """A PostgreSQL program is neither under ``/usr/lib/postgresql/*/bin`` nor on PATH."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.name)) or (0,)


def find_program(name: str, version: str | None = None) -> str:
    """Locate an installed PostgreSQL program (``initdb``, ``pg_ctl``, ``pg_basebackup``…).

    Server programs are usually not on PATH (Debian keeps them in ``/usr/lib/postgresql/VERSION/bin``),
    and ``pg_ctl`` must match the version of the data directory it manages.

    Args:
        name: The program name.
        version: Major version to prefer (e.g. the ``PG_VERSION`` of an existing data directory).

    Returns:
        ``/usr/lib/postgresql/VERSION/bin/NAME`` (the requested or else the highest version), or
        the program on PATH.

    Raises:
        ProgramNotFound: Not found anywhere.
    """
    if version is not None:
        wanted = PG_LIB / version / "bin" / name
        if wanted.is_file():
            return str(wanted)
    candidates = sorted(PG_LIB.glob(f"*/bin/{name}"), key=lambda p: _version_key(p.parent.parent), reverse=True)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ProgramNotFound(
        f"PostgreSQL program {name!r} not found in {PG_LIB}/*/bin or on PATH; install the PostgreSQL server."
    )


def check_identifier(value: Any, what: str = "name") -> str:
    """``value`` if it can be a PostgreSQL identifier (database, table, schema or role name).

    Any characters are allowed (quotes and spaces included: every SQL statement quotes names
    with ``psycopg.sql.Identifier`` and every argv passes them as one element), except NUL and
    control characters, and the name must fit PostgreSQL's 63-byte limit so it is not silently
    truncated to a different name.

    Raises:
        ValueError: One sentence naming the bad value.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"The {what} must be a non-empty string.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"The {what} {value!r} contains a control character.")
    if len(value.encode("utf-8")) > 63:
        raise ValueError(f"The {what} {value!r} is longer than PostgreSQL's 63-byte limit.")
    return value


@dataclass(frozen=True)
class PostgresSettings:
    """One environment's PostgreSQL connection settings (never the password itself)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    database: str | None = None
    staging_database: str | None = None
    password_env: str | None = None
    sslmode: str | None = None
    maintenance_database: str = "postgres"
    connect_timeout: int = 10
    bin_dir: str | None = None
    data_dir: str | None = None
    wal_archive: str | None = None
    pitr_dir: str | None = None
    run_as: str | None = None
    env_name: str = "?"
    extra: dict[str, Any] = field(default_factory=dict)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], env_name: str = "?") -> PostgresSettings:
        """Build from a store mapping, checking types.

        Raises:
            ActionError: A setting has the wrong type or value.
        """
        where = f"[environments.{env_name}.postgres]"
        known = set(cls.__dataclass_fields__) - {"env_name", "extra"}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known and v is not None}
        try:
            values["port"] = int(values.get("port", DEFAULT_PORT))
            values["connect_timeout"] = int(values.get("connect_timeout", 10))
        except (TypeError, ValueError):
            raise ActionError(f"PostgreSQL port and connect_timeout in {where} must be integers.") from None
        if not 0 < values["port"] < 65536:
            raise ActionError(f"PostgreSQL port {values['port']} in {where} is not a valid TCP port.")
        for key in ("host", "user", "database", "staging_database", "password_env", "sslmode",
                    "maintenance_database", "bin_dir", "data_dir", "wal_archive", "pitr_dir", "run_as"):
            if key in values and not isinstance(values[key], str):
                raise ActionError(f"PostgreSQL setting {key} in {where} must be a string.")
        if values.get("sslmode") and values["sslmode"] not in _SSLMODES:
            raise ActionError(f"PostgreSQL sslmode {values['sslmode']!r} in {where} "
                              f"is not one of {', '.join(_SSLMODES)}.")
        for key in ("user", "database", "staging_database", "maintenance_database"):
            if key in values:
                try:
                    check_identifier(values[key], f"{key} setting")
                except ValueError as exc:
                    raise ActionError(f"PostgreSQL {where}: {exc}") from None
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(**values, env_name=env_name, extra=extra)

    @classmethod
    def from_environment(cls, env: Environment) -> PostgresSettings:
        """The ``postgres`` store of ``env``.

        Raises:
            ActionError: No postgres store, or a bad setting.
        """
        return cls.from_mapping(env.store("postgres"), env.name)

    # -- names -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    def pick_database(self, database: str | None, *, staging: bool = False) -> str:
        """``database`` or the configured (staging) database.

        Raises:
            ActionError: Neither is set.
        """
        name = database or (self.staging_database if staging else self.database)
        if not name:
            key = "staging_database" if staging else "database"
            raise ActionError(
                f"No PostgreSQL database given: pass database in the step or set {key} in "
                f"[environments.{self.env_name}.postgres]."
            )
        return name

    # -- secrets ---------------------------------------------------------------------------------

    def password(self) -> str | None:
        """The password from the variable named by ``password_env`` (None when not configured).

        Raises:
            ActionError: ``password_env`` names a variable that is not set.
        """
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ActionError(
                f"The PostgreSQL password variable {self.password_env} is not set: export it before running "
                f"(it is named by password_env in [environments.{self.env_name}.postgres])."
            )
        return value

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``."""
        secret = os.environ.get(self.password_env) if self.password_env else None
        if secret and secret in text:
            text = text.replace(secret, "***")
        return text

    # -- clients ---------------------------------------------------------------------------------

    def _libpq_params(self, database: str | None) -> dict[str, Any]:
        """The connection keywords that are set (``dbname`` only when a database is known)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "connect_timeout": self.connect_timeout,
            "application_name": APPLICATION_NAME,
        }
        if database or self.database:
            params["dbname"] = self.pick_database(database)
        if self.sslmode:
            params["sslmode"] = self.sslmode
        password = self.password()
        if password is not None:
            params["password"] = password
        # Without password_env, libpq's own defaults (PGPASSWORD, ~/.pgpass) apply to psycopg and
        # to the programs alike.
        return params

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (the password, if any, is one of them)."""
        return self._libpq_params(self.pick_database(database))

    def subprocess_env(self, database: str | None = None) -> dict[str, str]:
        """libpq variables for pg_dump/pg_restore/psql/pg_basebackup (the password as PGPASSWORD).

        Variables that could redirect the connection (``PGSERVICE``…) are blanked so the
        store's settings are the only ones that count.
        """
        env = {k: "" for k in _LIBPQ_OVERRIDES if k in os.environ}
        return env | {_LIBPQ_VARIABLES[k]: str(v) for k, v in self._libpq_params(database).items()}

    def describe_connection(self, database: str | None = None) -> str:
        """``host=… port=… user=… dbname=…`` plus where the password comes from, for describe()."""
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}"]
        if database or self.database:
            parts.append(f"dbname={database or self.database}")
        if self.sslmode:
            parts.append(f"sslmode={self.sslmode}")
        if self.password_env:
            parts.append(f"password from ${self.password_env}")
        return " ".join(parts)

    def program(self, name: str, version: str | None = None) -> str:
        """Path of a PostgreSQL program (``pg_dump``, ``pg_ctl``…).

        ``bin_dir`` wins; then ``/usr/lib/postgresql/VERSION/bin`` when ``version`` is given
        (server programs must match a data directory's version); then PATH; then the newest
        ``/usr/lib/postgresql/*/bin``.

        Raises:
            ActionError: Not found.
        """
        if self.bin_dir:
            path = Path(self.bin_dir) / name
            if not os.access(path, os.X_OK):
                raise ActionError(f"PostgreSQL program {name} not found in bin_dir {self.bin_dir}: "
                                  "check the postgres store.")
            return str(path)
        if version is None:
            found = shutil.which(name)
            if found:
                return found
        try:
            return find_program(name, version)
        except ProgramNotFound:
            raise ActionError(
                f"PostgreSQL program {name} is not installed: install the PostgreSQL client/server "
                f"or set bin_dir in [environments.{self.env_name}.postgres]."
            ) from None

    def system_user(self) -> str | None:
        """The system user that server programs (pg_ctl, postgres) run as, or None for ourselves.

        As root it is ``run_as`` or ``postgres`` (PostgreSQL refuses to run as root).
        """
        if self.run_as:
            return self.run_as
        return "postgres" if os.geteuid() == 0 else None

    def connect(self, database: str | None = None, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """Open a psycopg connection, translating failures into one sentence.

        Raises:
            StoreUnavailable: Not reachable, refused credentials, unknown database.
        """
        import psycopg  # ~0.3 s: only when a step talks to PostgreSQL

        dbname = self.pick_database(database)
        try:
            return psycopg.connect(**self.connect_kwargs(dbname), autocommit=autocommit)
        except psycopg.Error as exc:
            raise self.translate(exc, dbname) from None

    def translate(self, exc: BaseException, database: str | None = None) -> ActionError:
        """One sentence for a psycopg error (connection or statement), password scrubbed."""
        text = self.scrub(str(exc).strip())
        sqlstate = getattr(exc, "sqlstate", None) or ""
        low = text.lower()
        first = _first_message(text)
        if "password authentication failed" in low or sqlstate == "28P01" or "no password supplied" in low:
            var = self.password_env or "(none: set password_env)"
            return StoreUnavailable(
                f"PostgreSQL refused the password for user {self.user}: check the variable {var}."
            )
        if sqlstate == "3D000" or (f'database "{database}" does not exist' in text):
            return StoreUnavailable(
                f"PostgreSQL database {database!r} does not exist at {self.address}: check the database name "
                f"in the step or the postgres store."
            )
        if sqlstate == "28000" or "no pg_hba.conf entry" in low or (f'role "{self.user}" does not exist' in text):
            return StoreUnavailable(
                f"PostgreSQL at {self.address} refused user {self.user}: check the user and pg_hba.conf ({first})."
            )
        if sqlstate == "42501" or "permission denied" in low or "must be owner" in low or "must be superuser" in low:
            # Before the reachability check: a refused CONNECT privilege also says "connection failed".
            return ActionError(f"PostgreSQL user {self.user} lacks a privilege: {first}.")
        if sqlstate == "57P03" or "the database system is" in low:
            return StoreUnavailable(
                f"PostgreSQL at {self.address} is not accepting connections yet (starting, shutting down or "
                f"in recovery): wait and retry ({first})."
            )
        if (
            "connection refused" in low
            or "could not connect" in low
            or "timeout expired" in low
            or "could not translate host name" in low
            or "no route to host" in low
            or "server closed the connection" in low
            or "connection failed" in low
        ):
            return StoreUnavailable(
                f"PostgreSQL at {self.address} is not reachable: is the server running? ({first})"
            )
        return ActionError(f"PostgreSQL at {self.address} failed: {first}.")


def _first_message(text: str) -> str:
    """The most useful line of a libpq/psycopg error, without a trailing period."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "no details"
    line = lines[0]
    # libpq: 'connection failed: connection to server at "h" (h), port p failed: FATAL:  msg'
    m = re.search(r"(?:FATAL|ERROR):\s+(.*)$", line)
    if m:
        line = m.group(1)
    elif "failed:" in line:
        line = line.rsplit("failed:", 1)[1].strip() or line
    line = line.rstrip(".")
    return line if len(line) <= 100 else line[:99] + "…"


def settings(env: Environment) -> PostgresSettings:
    """The ``postgres`` store of ``env`` (see :class:`PostgresSettings`)."""
    return PostgresSettings.from_environment(env)


def connect_kwargs(env: Environment, database: str | None = None) -> dict[str, Any]:
    """psycopg connection keyword arguments for ``env``'s postgres store."""
    return settings(env).connect_kwargs(database)


def subprocess_env(env: Environment, database: str | None = None) -> dict[str, str]:
    """libpq environment variables (password as ``PGPASSWORD``) for ``env``'s postgres store."""
    return settings(env).subprocess_env(database)


__all__ = [
    "PostgresSettings",
    "ProgramNotFound",
    "check_identifier",
    "find_program",
    "connect_kwargs",
    "settings",
    "subprocess_env",
]
