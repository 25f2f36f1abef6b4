"""``bigquery.prune_backups``: the seed's 90-day cleanup, by the timestamp in the name, never the newest."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigquery.catalog import find_backups
from runbook.actions.bigquery.params import DATASET_RE, ProjectParams
from runbook.actions.bigquery.session import Session
from runbook.actions.params import Duration, Retention
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, utc_now


class PruneBackupsParams(Retention, ProjectParams):
    dataset: str = Field(pattern=DATASET_RE, description="The source dataset whose backups are pruned.")
    older_than: Duration = Field("90d", description="Delete backups taken longer ago than this (e.g. 90d).")


class PruneBackupsOutputs(ActionOutputs):
    deleted: list[str]
    """Backup datasets deleted."""
    kept: list[str]
    """Backup datasets kept."""


def _describe(p: PruneBackupsParams) -> str:
    return f"bigquery.delete_dataset(<each {p.dataset}_backup_* {p.describe()}>, delete_contents=True)"


@action("bigquery.prune_backups", Effect.DESTRUCTIVE,
        "Delete a dataset's backup datasets older than a limit (never the newest).",
        target=lambda p: f"{p.dataset}_backup_*", describe=_describe)
def prune_backups(ctx: StepContext, params: PruneBackupsParams) -> PruneBackupsOutputs:
    s = Session.open(ctx, params.project)
    backups = find_backups(s, params.dataset)
    delete, _keep = params.split(backups, taken=lambda b: b.created, now=utc_now())
    doomed = list(reversed(delete))  # oldest first, like the listing
    deleted: list[str] = []
    for b in doomed:
        if params.dry_run:
            ctx.log(f"would delete {b.name} (taken {iso_z(b.created)})")
            continue
        if ctx.cancelled.is_set():
            raise ActionError(f"Pruning was stopped by the operator after deleting {len(deleted)} backups.")
        with s.api(f"delete backup dataset {b.name}"):
            s.client.delete_dataset(s.ref(b.name), delete_contents=True, not_found_ok=True, retry=s.retry)
        deleted.append(b.name)
        ctx.log(f"deleted {b.name} (taken {iso_z(b.created)})")
    kept = [b.name for b in backups if b.name not in deleted]
    ctx.log(f"deleted {len(deleted)}, kept {len(kept)} (older than {params.older_than}: {len(doomed)})")
    return PruneBackupsOutputs(deleted=deleted, kept=kept)
