"""``bigquery.backup_dataset``: the nightly timestamped backup dataset, every table copied."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from runbook.actions.bigquery.catalog import LABEL_BACKUP, LABEL_CREATED, LABEL_SOURCE, source_label
from runbook.actions.bigquery.copying import copy_tables
from runbook.actions.bigquery.params import DATASET_RE, TablesParams, describe_copies, show_dataset
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, stamp, utc_now


class BackupDatasetParams(TablesParams):
    backup_dataset: str | None = Field(None, pattern=DATASET_RE)
    """Name of the backup dataset (default <dataset>_backup_<YYYYmmdd_HHMMSS>, UTC)."""


class BackupDatasetOutputs(ActionOutputs):
    backup_dataset: str
    """Name of the backup dataset."""
    tables: list[str]
    """Tables copied."""
    rows: dict[str, int]
    """Rows per table in the backup."""
    total: int
    """Rows in all tables."""
    location: str
    """Location of the backup dataset (the source's)."""


def _backup_name(p: BackupDatasetParams) -> str:
    return p.backup_dataset or f"{show_dataset(p.dataset)}_backup_<YYYYmmdd_HHMMSS>"


def _describe(p: BackupDatasetParams) -> str:
    ds, backup = show_dataset(p.dataset), _backup_name(p)
    labels = f"{{{LABEL_BACKUP}: true, {LABEL_SOURCE}: {ds}}}"
    return f"bigquery.create_dataset({backup}, labels={labels}) + {describe_copies(ds, backup, p.tables)}"


@action("bigquery.backup_dataset", Effect.MUTATING,
        "Back up a dataset: a timestamped backup dataset with a copy of every table (or the listed ones).",
        target=_backup_name, describe=_describe)
def backup_dataset(ctx: StepContext, params: BackupDatasetParams) -> BackupDatasetOutputs:
    s, ds = Session.for_dataset(ctx, params)
    source = s.get_dataset(ds, f"read dataset {ds}")
    tables = s.tables_or_all(ds, params.tables)
    if not tables:
        raise ActionError(f"Dataset {ds} has no tables to back up.")
    backup = _create_backup_dataset(s, ds, params.backup_dataset, source.location)
    ctx.log(f"created {backup} in {source.location} ({len(tables)} tables to copy)")
    try:
        rows = copy_tables(s, ds, backup, tables, write_disposition="WRITE_EMPTY")
    except ActionError as exc:
        # A partial backup must not pass for the newest good one (list_backups, prune).
        raise ActionError(f"{str(exc).rstrip('.')}; {_drop_partial(s, backup)}.") from None
    ctx.log(f"BigQuery backup completed: {backup}")
    return BackupDatasetOutputs(
        backup_dataset=backup,
        tables=tables,
        rows=rows,
        total=sum(rows.values()),
        location=source.location or "",
    )


def _create_backup_dataset(s: Session, ds: str, name: str | None, location: Any) -> str:
    """Create the (empty, labelled) backup dataset in the source's location; its name."""
    now = utc_now()
    backup = name or f"{ds}_backup_{stamp(now)}"
    s.create_dataset(
        backup,
        location,
        f"create backup dataset {backup}",
        labels={LABEL_BACKUP: "true", LABEL_SOURCE: source_label(ds), LABEL_CREATED: stamp(now)},
        description=f"runbook backup of {s.ref(ds)} taken {iso_z(now)} (incident {s.ctx.incident_id}).",
    )
    return backup


def _drop_partial(s: Session, backup: str) -> str:
    try:
        s.client.delete_dataset(
            s.ref(backup), delete_contents=True, not_found_ok=True, retry=s.retry, timeout=30
        )
    except Exception:  # noqa: BLE001 - reported in the sentence instead
        return f"the incomplete backup dataset {backup} is left in place: delete it before relying on backups"
    return f"the incomplete backup dataset {backup} was deleted"
