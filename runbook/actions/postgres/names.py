"""Names in PostgreSQL steps: checked when a playbook is validated, quoted wherever they travel.

Database, table, schema and role names may hold any character but NUL/control characters
(quotes and spaces included, e.g. ``we"ird name``): SQL quotes them with
``psycopg.sql.Identifier`` and argv carries each as one element. A database name that libpq
would read as a connection string (one with ``=`` or a ``postgres://`` prefix) is passed as a
quoted ``dbname='…'`` conninfo instead. Table names are ``table`` or ``schema.table``: a name
that itself contains a dot is refused.

File name parts (a dump prefix or tag, a backup label) are kept to a safe alphabet instead: they
become paths.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, field_validator

from runbook.actions.spec import ActionParams
from runbook.stores.postgres import check_identifier

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")


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


def check_component(value: str, what: str) -> str:
    """``value`` if it is safe as part of a file name (a prefix, tag or label).

    Raises:
        ValueError: One sentence naming the bad value.
    """
    if not _SAFE_COMPONENT.fullmatch(value):
        raise ValueError(
            f"The {what} {value!r} must be letters, digits, '_', '.' or '-' (starting with a letter or digit)."
        )
    return value


def _file_name_part(what: str) -> AfterValidator:
    return AfterValidator(lambda value: check_component(value, what))


DumpPrefix = Annotated[str, _file_name_part("prefix")]
DumpTag = Annotated[str, _file_name_part("tag")]
BackupLabel = Annotated[str, _file_name_part("label")]


def dbname_arg(name: str) -> str:
    """``name`` for ``--dbname``, as a quoted conninfo when libpq would expand it as one."""
    if "=" in name or name.startswith(("postgres://", "postgresql://")):
        return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return name


def quote(name: str) -> str:
    """A double-quoted identifier for describe() texts (no psycopg import needed)."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(spec: str) -> str:
    """``schema.table`` or ``table`` double-quoted, for describe() texts."""
    schema, name = split_table(spec)
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


class DbParams(ActionParams):
    """Checks the names every database action may take (``database``, ``tables``, ``roles``…)."""

    @field_validator("database", "other_database", check_fields=False)
    @classmethod
    def _db(cls, v: Any) -> Any:
        return v if v is None else check_identifier(v, "database name")

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
        if any(r.lower() == "public" for r in _role_names(v) or []):
            raise ValueError("Use public: true for PUBLIC instead of listing it as a role.")
        return v

    @field_validator("users", check_fields=False)
    @classmethod
    def _users(cls, v: Any) -> Any:
        return _role_names(v)


def _role_names(names: list[str] | None) -> list[str] | None:
    for name in names or []:
        check_identifier(name, "role name")
    return names
