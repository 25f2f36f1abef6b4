"""A dump file on disk: its checksum file and its table of contents (``pg_restore --list``).

Destructive restores verify the dump (checksum and ``pg_restore --list``) before anything is
dropped or truncated.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from runbook.actions.spec import StepContext
from runbook.actions.support.fs import read_sha256_file, sha256_file
from runbook.core.errors import ActionError
from runbook.stores.postgres import PostgresSettings

from .common import run
from .names import table_key

DUMP_SUFFIX = ".dump"
PGDMP_MAGIC = b"PGDMP"
_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.+)$")
_TOC_KINDS = ("TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "DEFAULT ACL",
              "MATERIALIZED VIEW DATA", "TABLE", "SEQUENCE", "CONSTRAINT", "INDEX", "DEFAULT", "VIEW",
              "SCHEMA", "FUNCTION", "TRIGGER", "COMMENT", "ACL", "EXTENSION", "TYPE")


def verify_checksum(ctx: StepContext, path: Path, required: bool) -> tuple[str, bool]:
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
    expected = read_sha256_file(sidecar)
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


def read_toc(ctx: StepContext, st: PostgresSettings, path: Path) -> list[TocEntry]:
    """The dump's table of contents (``pg_restore --list``): proves the archive is readable."""
    lines: list[str] = []
    run(ctx, st, [st.program("pg_restore"), "--list", str(path)], what=f"pg_restore --list {path}", log=lines.append)
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


def toc_tables(entries: list[TocEntry]) -> list[str]:
    """The tables a dump holds, named as in outputs (see :func:`table_key`)."""
    out = []
    for e in entries:
        if e.kind != "TABLE":
            continue
        schema, _, rest = e.rest.partition(" ")
        name = rest.rsplit(" ", 1)[0] if " " in rest else rest
        out.append(table_key(schema, name))
    return out
