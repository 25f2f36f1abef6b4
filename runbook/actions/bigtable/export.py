"""``bigtable.export_table``: a logical copy of a table, for the cross-region path.

Managed backups cannot leave their instance's region; an export (every row, cell and timestamp,
with a sha256 sidecar) can be loaded into an instance in another region by
``bigtable.import_table``. The file is JSON lines: a header (format, version, where it came from,
the column families), one line per row (base64 key and cells), and a trailer with the counts, so
a truncated file is never mistaken for a complete one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from runbook.actions.bigtable.location import LocationParams, Where, show
from runbook.actions.bigtable.reading import Progress, stream
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, stamp, utc_now

EXPORT_FORMAT = "runbook-bigtable-export"
EXPORT_VERSION = 1


class ExportParams(LocationParams):
    table: str | None = Field(None, description="Table to export (default: gcp bigtable_table).")
    path: str | None = None
    """Output file (default: DIRECTORY/<table>_export_<YYYYmmdd_HHMMSS>.jsonl.gz)."""
    directory: str | None = None
    """Output directory (default: the files store's bigtable dir, else the step's workdir)."""
    compress: bool = Field(True, description="gzip the file (with an explicit path, its .gz suffix decides).")


class ExportOutputs(ActionOutputs):
    path: str
    """The export file."""
    rows: int
    """Rows written."""
    cells: int
    """Cells written."""
    sha256: str
    """Hex sha256 of the file (also in PATH.sha256)."""
    size: int
    """Bytes."""


def _describe(p: ExportParams) -> str:
    table = show(p.table, "bigtable_table")
    out = p.path or f"{p.directory or '<backups>'}/{table}_export_<YYYYmmdd_HHMMSS>.jsonl.gz"
    return f"BigtableTableAdmin.GetTable({table}) + Bigtable.ReadRows(all cells) > {out} (+ {out}.sha256)"


@action("bigtable.export_table", Effect.MUTATING,
        "Export every row, cell and timestamp of a Bigtable table to a JSON-lines file with a sha256 file.",
        target=lambda p: p.path or show(p.table, "bigtable_table"), describe=_describe)
def export_table(ctx: StepContext, params: ExportParams) -> ExportOutputs:
    w, table = Where.for_table(ctx, params, params.table)
    path = _export_path(ctx, params, table)
    compress = params.compress if not params.path else path.suffix == ".gz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ActionError(f"Cannot create the export directory {path.parent}: {exc.strerror}.") from None
    tmp = path.with_name(f".{path.name}.incomplete")
    ctx.log(f"exporting {table} from {w.where()} to {path}")
    try:
        with w.guard(f"export table {table}"):
            header = _header(w, table)
            rows, cells, digest, size = _write_export(ctx, w, table, tmp, compress, header)
        os.replace(tmp, path)
        _write_checksum(path, digest)
    except OSError as exc:
        raise ActionError(f"Cannot write the export {path}: {exc.strerror or exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)
    ctx.log(f"exported {rows} rows, {cells} cells to {path} ({size} bytes, sha256 {digest})")
    return ExportOutputs(path=str(path), rows=rows, cells=cells, sha256=digest, size=size)


def _export_path(ctx: StepContext, params: ExportParams, table: str) -> Path:
    if params.path:
        return Path(params.path)
    directory = params.directory or ctx.environment.stores.get("files", {}).get("bigtable") or ctx.workdir
    suffix = ".jsonl.gz" if params.compress else ".jsonl"
    return Path(directory) / f"{table}_export_{stamp()}{suffix}"


def _header(w: Where, table: str) -> dict[str, Any]:
    from google.cloud.bigtable_admin_v2 import types

    schema = w.h.admin.get_table(name=w.table_path(table), **w.rpc)
    families = {
        name: json.loads(types.ColumnFamily.to_json(cf, indent=0))
        for name, cf in sorted(schema.column_families.items())
    }
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "project": w.h.project,
        "instance": w.instance,
        "region": w.region,
        "table": table,
        "exported_at": iso_z(utc_now()),
        "column_families": families,
    }


class _HashingWriter(io.RawIOBase):
    """Writes through to a file while hashing every byte (sha256 without a second read)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sha.update(b)
        self.size += len(b)
        self.raw.write(b)
        return len(b)


def _write_export(
    ctx: StepContext, w: Where, table: str, tmp: Path, compress: bool, header: dict[str, Any]
) -> tuple[int, int, str, int]:
    """Write header, rows and trailer to ``tmp`` (synced); (rows, cells, sha256, bytes)."""
    # Exports hold the table's data: readable by the owner only.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as raw:
        hw = _HashingWriter(raw)
        # mtime=0: the same table content gives the same bytes (and sha256).
        sink: Any = gzip.GzipFile(fileobj=hw, mode="wb", compresslevel=6, mtime=0) if compress else hw
        buf = io.BufferedWriter(sink, buffer_size=1 << 20)
        buf.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        ctx.log(f"reading every row of {table} ({len(header['column_families'])} column families)")
        rows, cells = _write_rows(ctx, w, table, buf)
        buf.write(json.dumps({"end": True, "rows": rows, "cells": cells}).encode() + b"\n")
        buf.flush()
        buf.detach()  # closing the buffer must not close the hashing writer
        if compress:
            sink.close()  # writes the gzip trailer through the hashing writer
        raw.flush()
        os.fsync(raw.fileno())
    return rows, cells, hw.sha.hexdigest(), hw.size


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _write_rows(ctx: StepContext, w: Where, table: str, buf: io.BufferedWriter) -> tuple[int, int]:
    rows = cells = 0
    progress = Progress(ctx, f"exporting {table}")
    for row in stream(ctx, w, table, f"exporting {table}"):
        line = {
            "k": _b64(row.row_key),
            "c": [[c.family, _b64(c.qualifier), c.timestamp_micros, _b64(c.value)] for c in row.cells],
        }
        buf.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        rows += 1
        cells += len(row.cells)
        progress.tick(rows)
    return rows, cells


def _write_checksum(path: Path, digest: str) -> None:
    """PATH.sha256 in sha256sum format, replaced atomically."""
    sidecar = Path(f"{path}.sha256")
    side_tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    side_tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(side_tmp, sidecar)
