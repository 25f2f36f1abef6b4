"""``bigtable.restore``: the seed's ``gcloud bigtable instances tables restore``, refusing to
overwrite an existing table unless ``replace: true``."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigtable.admin import find_backups, make_room, wait_operation
from runbook.actions.bigtable.location import ID_PATTERN, LocationParams, Where, backup_id, show
from runbook.actions.bigtable.reading import count_rows
from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z


class RestoreParams(LocationParams):
    backup: str
    """Backup id, full backup name, or "latest" (newest backup of source_table)."""
    table: str = Field(pattern=ID_PATTERN, description="Table to restore into.")
    source_table: str | None = None
    """For backup "latest": whose backups (default: gcp bigtable_table)."""
    cluster: str | None = None
    """Cluster of the backup (default: gcp bigtable_cluster, else searched)."""
    replace: bool = Field(False, description="Delete the table first if it exists (otherwise refuse).")
    timeout: Duration = Field("2h", description="How long to wait for the restore operation.")


class RestoreOutputs(ActionOutputs):
    table: str
    """The restored table id."""
    rows: int
    """Rows in the restored table."""
    backup: str
    """The backup restored from (full name)."""


def _describe(p: RestoreParams) -> str:
    pre = f"BigtableTableAdmin.DeleteTable({p.table}) if it exists, then " if p.replace else ""
    return (
        f"{pre}BigtableTableAdmin.RestoreTable(parent=instances/{show(p.instance, 'bigtable_instance')}, "
        f"table_id={p.table}, backup={p.backup}) and wait for the operation"
    )


def _backup_name(ctx: StepContext, w: Where, params: RestoreParams) -> str:
    """The full name of the backup ``params.backup`` means."""
    if "/" in params.backup:
        return params.backup
    if params.backup == "latest":
        source = w.table_id(params.source_table)
        found = find_backups(w, source, params.cluster)
        if not found:
            raise ActionError(f"Table {source} has no Bigtable backup in {w.where()} to restore from.")
        ctx.log(f"latest backup of {source}: {backup_id(found[0].name)} (created {iso_z(found[0].start)})")
        return str(found[0].name)
    cluster = w.cluster(params.cluster)
    if cluster:
        return f"{w.h.cluster_path(w.instance, cluster)}/backups/{params.backup}"
    pager = w.h.admin.list_backups(parent=w.h.cluster_path(w.instance, "-"), **w.rpc)
    for b in pager:
        if backup_id(b.name) == params.backup:
            return str(b.name)
    raise ActionError(f"No Bigtable backup named {params.backup} in {w.where()}.")


@action("bigtable.restore", Effect.DESTRUCTIVE,
        "Restore a Bigtable backup into a table (replacing it only with replace: true).",
        target=lambda p: p.table, describe=_describe)
def restore(ctx: StepContext, params: RestoreParams) -> RestoreOutputs:
    w, table = Where.for_table(ctx, params, params.table)
    with w.guard(f"find backup {params.backup}"):
        name = _backup_name(ctx, w, params)
    what = f"restore backup {backup_id(name)} into table {table}"
    with w.guard(what):
        make_room(ctx, w, table, params.replace, "restore")
        ctx.log(f"restoring {name} into {table} in {w.where()}")
        op = w.h.admin.restore_table(
            request={"parent": w.h.instance_path(w.instance), "table_id": table, "backup": name},
            **w.rpc,
        )
        wait_operation(ctx, w, op, what, seconds(params.timeout))
    with w.guard(f"count the rows of restored table {table}"):
        rows = count_rows(ctx, w, table)
    ctx.log(f"restored {table}: {rows} rows")
    return RestoreOutputs(table=table, rows=rows, backup=name)
