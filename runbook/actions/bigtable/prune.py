"""``bigtable.prune_backups``: the seed's "> 30 days" cleanup, never the newest backup."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigtable.admin import list_backups_of
from runbook.actions.bigtable.location import LocationParams, Where, backup_id
from runbook.actions.params import Duration, Retention
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.support.pruning import delete_each
from runbook.core.effect import Effect
from runbook.core.timestamps import iso_z, utc_now


class PruneParams(Retention, LocationParams):
    table: str
    """Whose backups to prune."""
    older_than: Duration = Field("30d", description="Delete backups created longer ago than this (e.g. 30d).")
    cluster: str | None = Field(None, description="Only this cluster's backups (default: every cluster).")


class PruneOutputs(ActionOutputs):
    deleted: list[str]
    """Deleted backup ids."""
    kept: list[str]
    """Remaining backup ids, newest first."""


def _describe(p: PruneParams) -> str:
    return f"BigtableTableAdmin.ListBackups(source_table={p.table}) then DeleteBackup for each {p.describe()}"


@action("bigtable.prune_backups", Effect.DESTRUCTIVE,
        "Delete a table's Bigtable backups older than a limit, never the newest.",
        target=lambda p: p.table, describe=_describe)
def prune_backups(ctx: StepContext, params: PruneParams) -> PruneOutputs:
    w, table = Where.for_table(ctx, params, params.table)
    backups = list_backups_of(w, table, params.cluster)
    now = utc_now()
    doomed, kept = params.split(backups, taken=lambda b: b.start, now=now)
    for b in kept[: params.keep_latest]:
        if b.start < params.cutoff(now):
            ctx.log(
                f"keeping {backup_id(b.name)} although older than {params.older_than}: "
                f"it is among the newest {params.keep_latest}"
            )
    deleted = delete_each(ctx, doomed, dry_run=params.dry_run,
                          label=lambda b: f"{backup_id(b.name)} (created {iso_z(b.start)})",
                          delete=lambda b: _delete_backup(w, b.name),
                          stopped=lambda n: f"Stopped by the operator after deleting {n} backup(s) of {table}.")
    remaining = [backup_id(b.name) for b in backups if b not in deleted]
    ctx.log(f"pruned {len(deleted)} backup(s) of {table}; {len(remaining)} kept")
    return PruneOutputs(deleted=[backup_id(b.name) for b in deleted], kept=remaining)


def _delete_backup(w: Where, name: str) -> None:
    with w.guard(f"delete backup {backup_id(name)}"):
        w.h.admin.delete_backup(name=name, **w.rpc)
