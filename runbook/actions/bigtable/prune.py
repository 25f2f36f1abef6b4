"""``bigtable.prune_backups``: the seed's "> 30 days" cleanup, never the newest backup."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigtable.admin import find_backups
from runbook.actions.bigtable.location import LocationParams, Where, backup_id
from runbook.actions.params import Duration, Retention
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, utc_now
from runbook.stores import bigtable as bts


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
    w = Where(ctx, params.instance, params.region)
    with w.guard(f"list the backups of table {params.table}"):
        backups = find_backups(w, params.table, params.cluster)
    now = utc_now()
    doomed, kept = params.split(backups, taken=lambda b: b.start, now=now)
    for b in kept[: params.keep_latest]:
        if b.start < params.cutoff(now):
            ctx.log(
                f"keeping {backup_id(b.name)} although older than {params.older_than}: "
                f"it is among the newest {params.keep_latest}"
            )
    deleted: list[str] = []
    gone: set[str] = set()
    for b in doomed:
        bid = backup_id(b.name)
        if params.dry_run:
            ctx.log(f"would delete {bid} (created {iso_z(b.start)})")
            continue
        if ctx.cancelled.is_set():
            raise ActionError(
                f"Stopped by the operator after deleting {len(deleted)} backup(s) of {params.table}."
            )
        with w.guard(f"delete backup {bid}"):
            w.h.admin.delete_backup(name=b.name, retry=bts.admin_retry(w.budget), timeout=w.budget)
        ctx.log(f"deleted {bid} (created {iso_z(b.start)})")
        deleted.append(bid)
        gone.add(b.name)
    remaining = [backup_id(b.name) for b in backups if b.name not in gone]
    ctx.log(f"pruned {len(deleted)} backup(s) of {params.table}; {len(remaining)} kept")
    return PruneOutputs(deleted=deleted, kept=remaining)
