"""``bigtable.import_table``: load a ``bigtable.export_table`` file into a new table (any region).

The file's sha256 is checked first (an unverified export is never imported), and its trailer
last (a truncated file leaves a table reported as incomplete, never as good).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from runbook.actions.bigtable.admin import make_room
from runbook.actions.bigtable.export import EXPORT_FORMAT, EXPORT_VERSION
from runbook.actions.bigtable.location import ID_PATTERN, LocationParams, Where, show
from runbook.actions.bigtable.reading import Progress
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

MUTATE_BATCH_ROWS = 500
MUTATE_BATCH_BYTES = 4 << 20
MUTATE_BATCH_CELLS = 50_000  # the service caps one MutateRows request at 100,000 mutations


class ImportParams(LocationParams):
    path: str
    """An export written by bigtable.export_table (its PATH.sha256 must match)."""
    table: str = Field(pattern=ID_PATTERN, description="Table to create and fill.")
    replace: bool = Field(False, description="Delete the table first if it exists (otherwise refuse).")
    checksum_file: str | None = Field(None, description="Default: PATH.sha256.")


class ImportOutputs(ActionOutputs):
    table: str
    """The table written."""
    rows: int
    """Rows written."""
    cells: int
    """Cells written."""


def _describe(p: ImportParams) -> str:
    check = f"sha256sum -c {p.checksum_file or p.path + '.sha256'}"
    make_room = f"DeleteTable({p.table}) if it exists, " if p.replace else ""
    where = show(p.instance, "bigtable_instance") + (f" in {p.region}" if p.region else "")
    create = f"BigtableTableAdmin.CreateTable(instances/{where}, table_id={p.table}, families from the file)"
    return f"{check}, {make_room}{create} + Bigtable.MutateRows(every row of {p.path})"


# Destructive although a plain import only creates a table: replace: true deletes one, and an
# action's effect cannot depend on its params.
@action("bigtable.import_table", Effect.DESTRUCTIVE,
        "Create a table (same column families) from a bigtable.export_table file and write every row.",
        target=lambda p: p.table, describe=_describe)
def import_table(ctx: StepContext, params: ImportParams) -> ImportOutputs:
    path = Path(params.path)
    try:
        _verify(ctx, path, params.checksum_file)
    except OSError as exc:
        raise ActionError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    w, table = Where.for_table(ctx, params, params.table)
    try:
        with _open_export(path) as f, w.guard(f"import {path.name} into table {table}"):
            header = json.loads(f.readline() or b"{}")
            if header.get("format") != EXPORT_FORMAT or header.get("version") != EXPORT_VERSION:
                raise ActionError(f"{path} is not a bigtable.export_table file (version {EXPORT_VERSION}).")
            make_room(ctx, w, table, params.replace, "import")
            _create_table(ctx, w, table, header)
            rows, cells, trailer = _write_rows(ctx, w, table, f)
        if trailer is None or trailer.get("rows") != rows or trailer.get("cells") != cells:
            raise ActionError(
                f"{path} is truncated: table {table} is incomplete; re-export and import with replace: true."
            )
    except (ValueError, OSError) as exc:
        raise ActionError(f"Cannot read {path} ({exc}): table {table} may be incomplete.") from None
    ctx.log(f"imported {rows} rows, {cells} cells into {table} in {w.where()}")
    return ImportOutputs(table=table, rows=rows, cells=cells)


def _verify(ctx: StepContext, path: Path, checksum_file: str | None) -> None:
    from runbook.actions.support.fs import sha256_file

    if not path.is_file():
        raise ActionError(f"Export file not found: {path}.")
    sidecar = Path(checksum_file or f"{path}.sha256")
    if not sidecar.is_file():
        raise ActionError(
            f"No checksum file for {path} (expected {sidecar}): refusing to import an unverified export."
        )
    words = sidecar.read_text(encoding="utf-8", errors="replace").split()
    expected = words[0].lower() if words else ""
    actual = sha256_file(path, ctx.cancelled)
    if actual != expected:
        raise ActionError(
            f"Checksum mismatch for {path}: the file does not match {sidecar.name}; do not import it."
        )
    ctx.log(f"{path}: sha256 OK ({actual})")


def _open_export(path: Path) -> gzip.GzipFile | io.BufferedReader:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115 - returned


def _create_table(ctx: StepContext, w: Where, table: str, header: dict[str, Any]) -> None:
    """Create ``table`` with the column families (and their GC rules) of the exported table."""
    from google.cloud.bigtable_admin_v2 import types

    families = {
        name: types.ColumnFamily.from_json(json.dumps(spec), ignore_unknown_fields=True)
        for name, spec in header.get("column_families", {}).items()
    }
    ctx.log(
        f"creating {table} in {w.where()} with families {', '.join(families) or '(none)'} "
        f"(exported from {header.get('table')} in {header.get('instance')}, {header.get('region')})"
    )
    w.h.admin.create_table(
        parent=w.h.instance_path(w.instance),
        table_id=table,
        table=types.Table(column_families=families),
        **w.rpc,
    )


class _Batch:
    """Rows waiting to be written in one MutateRows request."""

    def __init__(self, target: Any, budget: float) -> None:
        self.target, self.budget = target, budget
        self.entries: list[Any] = []
        self.bytes = self.cells = 0

    def add(self, entry: Any, size: int, cells: int) -> None:
        self.entries.append(entry)
        self.bytes += size
        self.cells += cells

    def full(self) -> bool:
        return (
            len(self.entries) >= MUTATE_BATCH_ROWS
            or self.bytes >= MUTATE_BATCH_BYTES
            or self.cells >= MUTATE_BATCH_CELLS
        )

    def flush(self) -> None:
        if self.entries:
            # Retried only while the store is unreachable: rewriting the same cells is idempotent.
            self.target.bulk_mutate_rows(self.entries, operation_timeout=max(self.budget, 30.0))
        self.entries, self.bytes, self.cells = [], 0, 0


def _write_rows(
    ctx: StepContext, w: Where, table: str, f: Iterable[bytes]
) -> tuple[int, int, dict[str, Any] | None]:
    """Write every row line of the export; (rows, cells, the trailer or None if the file ends early)."""
    from google.cloud.bigtable.data import RowMutationEntry, SetCell

    batch = _Batch(w.h.table(w.instance, table), w.budget)
    progress = Progress(ctx, f"importing into {table}")
    rows = cells = 0
    for raw in f:
        line = json.loads(raw)
        if "end" in line:
            batch.flush()
            return rows, cells, line
        muts: list[Any] = [
            SetCell(fam, base64.b64decode(q), base64.b64decode(v), timestamp_micros=ts)
            for fam, q, ts, v in line["c"]
        ]
        if not muts:
            continue
        batch.add(RowMutationEntry(base64.b64decode(line["k"]), muts), len(raw), len(muts))
        rows += 1
        cells += len(muts)
        progress.tick(rows)
        if batch.full():
            if ctx.cancelled.is_set():
                raise InterruptedError("cancelled")
            batch.flush()
    batch.flush()
    return rows, cells, None
