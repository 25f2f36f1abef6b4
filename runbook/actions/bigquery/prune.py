"""``bigquery.prune_backups``: the seed's 90-day cleanup, by the timestamp in the name, never the newest."""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigquery.catalog import find_backups
from runbook.actions.bigquery.params import DATASET_RE, ProjectParams
from runbook.actions.bigquery.session import Session
from runbook.actions.params import Duration, Retention
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.support.pruning import delete_each
from runbook.core.effect import Effect
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
    deleted = delete_each(ctx, doomed, dry_run=params.dry_run,
                          label=lambda b: f"{b.name} (taken {iso_z(b.created)})",
                          delete=lambda b: _delete_dataset(s, b.name),
                          stopped=lambda n: f"Pruning was stopped by the operator after deleting {n} backups.")
    kept = [b.name for b in backups if b not in deleted]
    ctx.log(f"deleted {len(deleted)}, kept {len(kept)} (older than {params.older_than}: {len(doomed)})")
    return PruneBackupsOutputs(deleted=[b.name for b in deleted], kept=kept)


def _delete_dataset(s: Session, name: str) -> None:
    with s.api(f"delete backup dataset {name}"):
        s.client.delete_dataset(s.ref(name), delete_contents=True, not_found_ok=True, retry=s.retry)
