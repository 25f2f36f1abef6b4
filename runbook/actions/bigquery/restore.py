"""Restores from a backup dataset or a table snapshot: ``bigquery.restore_table`` and
``bigquery.restore_dataset`` (the seed's ``bq cp BACKUP.* DATASET``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from runbook.actions.bigquery.copying import copy_tables, dataset_exists, rows_after_copies
from runbook.actions.bigquery.params import DATASET_RE, TABLE_RE, ProjectParams, TableList, copy_call
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

# --- bigquery.restore_table ------------------------------------------------------------------


class RestoreTableParams(ProjectParams):
    dataset: str = Field(pattern=DATASET_RE, description="Dataset of the table to overwrite.")
    table: str = Field(pattern=TABLE_RE, description="Table to overwrite (created if it was deleted).")
    from_dataset: str = Field(pattern=DATASET_RE, description="Backup dataset, or the snapshot's dataset.")
    from_table: str | None = Field(None, pattern=TABLE_RE)
    """Backup table or snapshot (default: same name as table)."""
    source_kind: Literal["auto", "snapshot", "table"] = "auto"
    """snapshot: RESTORE copy; table: plain copy; auto: look at the source."""

    @model_validator(mode="after")
    def _not_itself(self) -> RestoreTableParams:
        if self.from_dataset == self.dataset and (self.from_table or self.table) == self.table:
            raise ValueError("the source and the table to restore are the same table")
        return self


class RestoreTableOutputs(ActionOutputs):
    rows: int
    """Rows in the restored table."""
    source: str
    """Full id of the source."""
    kind: str
    """snapshot or table."""


_OPERATION = {"snapshot": "RESTORE", "table": None, "auto": "RESTORE if the source is a snapshot"}


def _describe_table(p: RestoreTableParams) -> str:
    src, dest = f"{p.from_dataset}.{p.from_table or p.table}", f"{p.dataset}.{p.table}"
    return copy_call(src, dest, write_disposition="WRITE_TRUNCATE", operation_type=_OPERATION[p.source_kind])


@action("bigquery.restore_table", Effect.DESTRUCTIVE,
        "Overwrite a table with a backup table or a table snapshot (WRITE_TRUNCATE).",
        target=lambda p: f"{p.dataset}.{p.table}", describe=_describe_table)
def restore_table(ctx: StepContext, params: RestoreTableParams) -> RestoreTableOutputs:
    s = Session.open(ctx, params.project)
    src_table = params.from_table or params.table
    src = s.ref(params.from_dataset, src_table)
    kind = params.source_kind
    if kind == "auto":
        with s.api(f"read the restore source {params.from_dataset}.{src_table}"):
            kind = "snapshot" if s.client.get_table(src, retry=s.retry).table_type == "SNAPSHOT" else "table"
    config: dict[str, Any] = {"write_disposition": "WRITE_TRUNCATE"}
    if kind == "snapshot":
        config["operation_type"] = "RESTORE"
    what = f"restore {params.dataset}.{params.table} from {params.from_dataset}.{src_table}"
    ctx.log(f"{what} ({kind}, overwriting)")
    job = s.copy(src, s.ref(params.dataset, params.table), what, **config)
    s.wait(job, what)
    rows = rows_after_copies(s, params.dataset, {params.table: job})[params.table]
    ctx.log(f"{params.dataset}.{params.table}: {rows:,} rows restored")
    return RestoreTableOutputs(rows=rows, source=src, kind=kind)


# --- bigquery.restore_dataset ----------------------------------------------------------------


class RestoreDatasetParams(ProjectParams):
    from_dataset: str = Field(pattern=DATASET_RE, description="The backup dataset.")
    dataset: str = Field(pattern=DATASET_RE, description="Dataset whose tables are overwritten.")
    tables: TableList = None
    """Only these tables (default: every table of the backup)."""
    create: bool = Field(True, description="Create the dataset (in the backup's location) if it is gone.")

    @model_validator(mode="after")
    def _not_itself(self) -> RestoreDatasetParams:
        if self.from_dataset == self.dataset:
            raise ValueError("from_dataset and dataset are the same dataset")
        return self


class RestoreDatasetOutputs(ActionOutputs):
    tables: list[str]
    """Tables restored."""
    rows: dict[str, int]
    """Rows per restored table."""
    total: int
    """Rows in all restored tables."""


def _describe_dataset(p: RestoreDatasetParams) -> str:
    which = "*" if not p.tables else "{" + ",".join(p.tables) + "}"
    src, dest = f"{p.from_dataset}.{which}", f"{p.dataset}.{which}"
    return copy_call(src, dest, write_disposition="WRITE_TRUNCATE")


@action("bigquery.restore_dataset", Effect.DESTRUCTIVE,
        "Overwrite a dataset's tables with every table of a backup dataset (bq cp BACKUP.* DATASET).",
        target=lambda p: p.dataset, describe=_describe_dataset)
def restore_dataset(ctx: StepContext, params: RestoreDatasetParams) -> RestoreDatasetOutputs:
    s = Session.open(ctx, params.project)
    tables = s.tables_or_all(params.from_dataset, params.tables)
    if not tables:
        raise ActionError(f"Backup dataset {params.from_dataset} has no tables to restore.")
    if not dataset_exists(s, params.dataset):
        if not params.create:
            raise ActionError(f"Dataset {params.dataset} does not exist: create it or set create: true.")
        _recreate(s, params.dataset, like=params.from_dataset)
    rows = copy_tables(s, params.from_dataset, params.dataset, tables, write_disposition="WRITE_TRUNCATE")
    return RestoreDatasetOutputs(tables=tables, rows=rows, total=sum(rows.values()))


def _recreate(s: Session, dataset: str, like: str) -> None:
    """Create ``dataset`` in the location of the backup ``like``."""
    loc = s.get_dataset(like, f"read backup dataset {like}").location
    s.create_dataset(dataset, loc, f"create dataset {dataset}", exists_ok=True)
    s.ctx.log(f"created dataset {dataset} in {loc}")
