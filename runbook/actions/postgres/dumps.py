"""``postgres.dump`` and ``postgres.verify_dump``: a verified custom-format dump.

Dumps are custom-format (``pg_dump --format=custom``), which is already compressed: unlike the
seed's script nothing is gzipped afterwards. A dump is written to a hidden ``.NAME.tmp`` and
renamed only once pg_dump succeeded, the file is non-empty and its ``NAME.sha256``
(``sha256sum`` format) is written; the only extra pass over the data is that one sha256 read.
Names carry a UTC stamp (``PREFIX<YYYYmmdd_HHMMSS>.dump``).
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.fs import human_bytes, sha256_file
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import stamp

from .archive import DUMP_SUFFIX, PGDMP_MAGIC, read_toc, toc_tables, verify_checksum
from .common import run, settings_and_database, settings_or_defaults, unique_path
from .names import DbParams, DumpPrefix, DumpTag, dbname_arg

# --- postgres.dump --------------------------------------------------------------------------------


class DumpParams(DbParams):
    directory: str
    """Where dumps are kept, e.g. /var/backups/varlor/database."""
    database: str | None = None
    """Database to dump (default: the store's database)."""
    prefix: DumpPrefix = "varlor_db_"
    """File name prefix; the name is PREFIX<UTC YYYYmmdd_HHMMSS>.dump."""
    tag: DumpTag | None = None
    """Instead of the prefix, e.g. pre_deployment → pre_deployment_<ts>.dump."""
    compress: int = Field(6, ge=0, le=9)
    """pg_dump --compress level (custom format is compressed by pg_dump itself)."""


class DumpOutputs(ActionOutputs):
    path: str
    """The dump file."""
    name: str
    """Its file name."""
    size: int
    """Bytes."""
    sha256: str
    """Hex digest of the dump."""
    checksum_file: str
    """The NAME.sha256 file (sha256sum format)."""
    database: str
    """The database dumped."""


def _stem(params: DumpParams) -> str:
    return f"{params.tag}_" if params.tag else params.prefix


def _dump_argv(program: str, params: DumpParams, tmp: str, database: str) -> list[str]:
    return [program, "--format=custom", f"--compress={params.compress}", "--no-password", "--verbose",
            f"--file={tmp}", f"--dbname={dbname_arg(database)}"]


def _describe_dump(params: DumpParams) -> str:
    final = os.path.join(os.path.abspath(params.directory), f"{_stem(params)}<UTC YYYYmmdd_HHMMSS>{DUMP_SUFFIX}")
    tmp = f"{os.path.dirname(final)}/.{os.path.basename(final)}.tmp"
    argv = _dump_argv("pg_dump", params, tmp, params.database or "<store database>")
    return (f"{shlex.join(argv)}; sha256sum → {os.path.basename(final)}.sha256; rename → {final} "
            "(custom format is already compressed: no gzip)")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(ctx: StepContext, tmp: Path, final: Path, db: str) -> tuple[int, str, Path]:
    """Check what pg_dump wrote, write its .sha256, then rename it into place: (size, digest, sidecar)."""
    size = tmp.stat().st_size
    with open(tmp, "rb") as fh:
        magic = fh.read(len(PGDMP_MAGIC))
    if size == 0 or magic != PGDMP_MAGIC:
        raise ActionError(f"pg_dump of {db} produced "
                          f"{'an empty file' if size == 0 else 'a file that is not a pg_dump archive'}.")
    digest = sha256_file(tmp, ctx.cancelled)
    sidecar = final.with_name(f"{final.name}.sha256")
    side_tmp = final.with_name(f".{final.name}.sha256.tmp")
    side_tmp.write_text(f"{digest}  {final.name}\n")
    os.replace(side_tmp, sidecar)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return size, digest, sidecar


def _dump_directory(params: DumpParams) -> Path:
    directory = Path(params.directory).absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ActionError(f"Cannot create the dump directory {directory}: {exc.strerror}.") from None
    return directory


@action("postgres.dump", Effect.MUTATING, "Back up a database with pg_dump (custom format) and write its .sha256 file.",
        target=lambda p: p.directory, describe=_describe_dump)
def dump(ctx: StepContext, params: DumpParams) -> DumpOutputs:
    st, db = settings_and_database(ctx, params.database)
    directory = _dump_directory(params)
    final = unique_path(directory, f"{_stem(params)}{stamp()}", DUMP_SUFFIX)  # never overwrite
    tmp = directory / f".{final.name}.tmp"
    # Created 0600 before pg_dump opens it: a dump holds the whole database.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    ctx.log(f"dumping {db} from {st.address} to {final} (custom format, compress {params.compress}; no gzip needed)")
    started = time.monotonic()
    try:
        run(ctx, st, _dump_argv(st.program("pg_dump"), params, str(tmp), db), what=f"pg_dump of {db}", database=db)
        size, digest, sidecar = _publish(ctx, tmp, final, db)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    ctx.log(f"wrote {final} ({human_bytes(size)}, sha256 {digest}) in {format_duration(time.monotonic() - started)}")
    return DumpOutputs(path=str(final), name=final.name, size=size, sha256=digest,
                       checksum_file=str(sidecar), database=db)


# --- postgres.verify_dump -------------------------------------------------------------------------


class VerifyDumpParams(ActionParams):
    path: str
    """The dump file; its checksum file is PATH.sha256."""
    require_checksum: bool = Field(True, description="Fail when PATH.sha256 is missing (else warn).")


class VerifyDumpOutputs(ActionOutputs):
    tables: list[str]
    """Tables in the dump's table of contents."""
    entries: int
    """Number of TOC entries."""
    sha256: str
    """Actual digest."""
    verified: bool
    """true when the checksum file matched."""


@action(
    "postgres.verify_dump",
    Effect.READ_ONLY,
    "Check a dump: sha256 matches its .sha256 file and pg_restore --list reads it.",
    target=lambda p: p.path,
    describe=lambda p: f"sha256sum -c {shlex.quote(p.path + '.sha256')} && pg_restore --list {shlex.quote(p.path)}",
)
def verify_dump(ctx: StepContext, params: VerifyDumpParams) -> VerifyDumpOutputs:
    st = settings_or_defaults(ctx)
    path = Path(params.path)
    digest, verified = verify_checksum(ctx, path, params.require_checksum)
    entries = read_toc(ctx, st, path)
    tables = toc_tables(entries)
    ctx.log(f"{path}: {len(entries)} TOC entries, {len(tables)} tables: {', '.join(tables) or '(none)'}")
    return VerifyDumpOutputs(tables=tables, entries=len(entries), sha256=digest, verified=verified)
