"""BigQuery actions: backups, snapshots, restores, time travel, counts and verification.

These are the seed's BigQuery procedures run for real through google-cloud-bigquery: the nightly
timestamped backup dataset (``<dataset>_backup_<YYYYmmdd_HHMMSS>``, every table copied), table
snapshots with a retention, restores from either, time-travel restores, the 90-day cleanup, the
cross-region copy for a regional failover, and the validation steps (row counts, sampled rows).

One code path for production and the sandbox (bqemulator); only the endpoint and credentials
differ (see :mod:`runbook.stores.bigquery`). Things bqemulator does differently, and how the
actions cope without a second code path:

* Table expiration is not stored (neither from ``CopyJobConfig.destination_expiration_time`` nor
  ``update_table``): ``snapshot_table`` reports the expiration it requested.
* Copy jobs carry no ``statistics.copy.copiedRows``: row counts then come from ``COUNT(*)``.
  ``Table.num_rows`` is not used at all: it is stale after DML on the emulator and excludes the
  streaming buffer on BigQuery.
* Query jobs ignore ``QueryJobConfig.destination``, and ``CREATE TABLE `p.d.t` AS SELECT … FOR
  SYSTEM_TIME AS OF`` fails; ``CREATE TABLE … LIKE`` + ``INSERT … SELECT … FOR SYSTEM_TIME AS OF``
  + a ``WRITE_TRUNCATE`` copy works on both (see :class:`TimeTravelRestore`). Table decorators
  (``t@<ms>``) are not supported by the emulator.
* Dataset creation times cannot be set, and ``list_datasets(filter=labels…)`` is not applied:
  backups are matched client-side and aged by the timestamp in their name.
* Locations are labels only, so a cross-region copy is exercised as a plain copy.

Cross-region copies on real BigQuery: copy jobs may copy a table into a dataset in another
location (quota: 100 cross-region copies per destination table and 2,000 per project per day);
``WRITE_APPEND`` is not supported across regions, so ``copy_dataset_region`` truncates. The Data
Transfer Service (dataset copy) is the alternative for scheduled copies; it is not needed here.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.core.durations import check_duration, format_duration, parse_duration
from runbook.core.errors import ActionError
from runbook.stores import bigquery as bqstore
from runbook.stores import gcp

PROJECT_RE = r"^[a-z][a-z0-9.:-]{2,127}$"
DATASET_RE = r"^[A-Za-z0-9_]{1,1024}$"
# Stricter than BigQuery (which allows Unicode and spaces): names are quoted into SQL.
TABLE_RE = r"^[A-Za-z0-9_-]{1,1024}$"
COLUMN_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,299}$"

STAMP = "%Y%m%d_%H%M%S"
BACKUP_RE = re.compile(r"^(?P<source>[A-Za-z0-9_]+)_backup_(?P<stamp>\d{8}_\d{6})$")
LABEL_BACKUP = "runbook-backup"
LABEL_SOURCE = "runbook-source"
LABEL_CREATED = "runbook-created"
POLL_SLICE = 2.0  # seconds a job wait blocks before checking for cancellation
COUNT_CHUNK = 100  # tables per UNION ALL count query
INSERT_BATCH = 500
DAY = 86400.0


# --- parameters ----------------------------------------------------------------------------


def _store_default(what: str) -> str:
    return f"Default: the gcp store's {what}."


class _Params(ActionParams):
    project: str | None = Field(None, pattern=PROJECT_RE, description=_store_default("project"))


class _DatasetParams(_Params):
    dataset: str | None = Field(None, pattern=DATASET_RE, description=_store_default("dataset"))


def _tables_field() -> Any:
    return Field(None, description="Only these tables (default: every table of the dataset).")


def _check_tables(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    if not v:
        raise ValueError("tables must not be empty; leave it out for every table")
    for name in v:
        if not re.match(TABLE_RE, name):
            raise ValueError(f"{name!r} is not a table name (letters, digits, _ and -)")
    if len(set(v)) != len(v):
        raise ValueError("tables lists a table twice")
    return v


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 (``Z`` or an offset; none means UTC) → an aware UTC datetime, microseconds kept."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a timestamp like 2025-11-23T10:30:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _show_ds(dataset: str | None) -> str:
    return dataset or "{env.gcp.dataset}"


# --- one step's connection -----------------------------------------------------------------


@dataclass
class _Session:
    """The client, settings and project one step works with, plus error translation."""

    ctx: StepContext
    gs: gcp.GcpSettings
    client: Any
    project: str
    region: str | None = None

    @classmethod
    def open(cls, ctx: StepContext, project: str | None, region: str | None = None) -> _Session:
        gs = gcp.settings(ctx.environment)
        return cls(ctx, gs, bqstore.client(ctx.environment, region), project or gs.project, region)

    @property
    def retry(self) -> Any:
        return bqstore.retry()

    def dataset(self, name: str | None) -> str:
        if name:
            return name
        found = self.gs.raw.get("dataset")
        if not found:
            env = self.ctx.environment.name
            raise ActionError(
                f"No dataset given: set `dataset:` in the step or dataset in [environments.{env}.gcp]."
            )
        return str(found)

    def ref(self, dataset: str, table: str | None = None) -> str:
        return f"{self.project}.{dataset}" + (f".{table}" if table else "")

    def sql(self, dataset: str, table: str) -> str:
        # Quoted part by part: bqemulator rejects `p.d.t` as a CTAS target with FOR SYSTEM_TIME.
        return f"`{self.project}`.`{dataset}`.`{table}`"

    def api(self, what: str) -> Any:
        """Turn any client error inside the block into one sentence (gcp.translate)."""
        return gcp.api_errors(bqstore.STORE, what, self.gs, lambda: bqstore.forget(self.ctx.environment, self.region))

    def check_cancelled(self, what: str) -> None:
        """Stop between phases once the operator (or the step's timeout) stopped the step."""
        if self.ctx.cancelled.is_set():
            raise ActionError(f"Stopped by the operator before it could {what}.")

    def wait(self, job: Any, what: str) -> Any:
        """Wait for a copy job, in slices so a stopped step stops waiting and cancels the job.

        The slice bounds only the polling loop (``PollingFuture``), not the HTTP requests, so a
        slow API call is never cut short by it.
        """
        while True:
            with self.api(what):
                try:
                    return job.result(retry=self.retry, timeout=POLL_SLICE)
                except TimeoutError:
                    pass
            if self.ctx.cancelled.is_set():
                try:
                    job.cancel(retry=self.retry, timeout=10)
                except Exception:  # noqa: BLE001, S110 - best effort; the stop is what matters
                    pass
                raise ActionError(f"BigQuery job {job.job_id} ({what}) was stopped by the operator.")

    def query(self, sql: str, what: str, params: list[Any] | None = None) -> tuple[Any, list[Any]]:
        """Run a query to completion: (job, rows).

        ``result()`` is called exactly as a direct caller would (no timeout): for queries a
        timeout would also bound each jobs.getQueryResults long-poll and each page of rows.
        Actions check for a stop between queries instead.
        """
        config = None
        if params:
            from google.cloud import bigquery

            config = bigquery.QueryJobConfig(query_parameters=params)
        with self.api(what):
            job = self.client.query(sql, job_config=config, retry=self.retry)
            return job, list(job.result(retry=self.retry))

    def tables(self, dataset: str) -> list[str]:
        """Plain tables of a dataset (views, snapshots, clones and external tables left out)."""
        with self.api(f"list the tables of {dataset}"):
            items = list(self.client.list_tables(self.ref(dataset), retry=self.retry))
        names = []
        for item in items:
            if item.table_type == "TABLE":
                names.append(item.table_id)
            else:
                self.ctx.log(f"skipping {dataset}.{item.table_id} ({item.table_type})")
        return sorted(names)

    def counts(self, dataset: str, tables: list[str]) -> dict[str, int]:
        """Exact ``COUNT(*)`` per table, one query per COUNT_CHUNK tables."""
        out: dict[str, int] = {}
        for start in range(0, len(tables), COUNT_CHUNK):
            chunk = tables[start : start + COUNT_CHUNK]
            if len(chunk) == 1:
                sql = f"SELECT COUNT(*) AS n FROM {self.sql(dataset, chunk[0])}"
            else:
                sql = " UNION ALL ".join(
                    f"SELECT {i} AS i, COUNT(*) AS n FROM {self.sql(dataset, t)}" for i, t in enumerate(chunk)
                )
            what = f"count the rows of {dataset}." + (chunk[0] if len(chunk) == 1 else f"{{{len(chunk)} tables}}")
            _job, rows = self.query(sql, what)
            for row in rows:
                out[chunk[int(row["i"]) if len(chunk) > 1 else 0]] = int(row["n"])
        return {t: out[t] for t in tables if t in out}

    def copy(self, source: str | list[str], dest: str, what: str, **config: Any) -> Any:
        """Start a copy job (not waited for)."""
        from google.cloud import bigquery

        with self.api(what):
            return self.client.copy_table(
                source, dest, job_config=bigquery.CopyJobConfig(**config), retry=self.retry
            )


def _copied_rows(job: Any) -> int | None:
    """Rows a finished copy job copied (BigQuery reports it; bqemulator does not)."""
    value = (job._properties.get("statistics") or {}).get("copy", {}).get("copiedRows")
    return int(value) if value is not None else None


def _rows_after_copies(s: _Session, dataset: str, jobs: dict[str, Any]) -> dict[str, int]:
    """Rows per destination table: from the jobs' statistics, else one COUNT(*) query."""
    rows = {t: _copied_rows(j) for t, j in jobs.items()}
    missing = [t for t, n in rows.items() if n is None]
    if missing:
        rows.update(s.counts(dataset, missing))
    return {t: int(n) for t, n in rows.items() if n is not None}


def _copy_all(s: _Session, src_ds: str, dst_ds: str, tables: list[str], **config: Any) -> dict[str, Any]:
    """Copy tables (jobs started together, then waited for in order); table → finished job."""
    jobs: dict[str, Any] = {}
    for t in tables:
        if s.ctx.cancelled.is_set():
            raise ActionError(f"Copying {src_ds} to {dst_ds} was stopped by the operator after {len(jobs)} tables.")
        s.ctx.log(f"copy {src_ds}.{t} → {dst_ds}.{t}")
        jobs[t] = s.copy(s.ref(src_ds, t), s.ref(dst_ds, t), f"copy {src_ds}.{t} to {dst_ds}.{t}", **config)
    for t, job in jobs.items():
        s.wait(job, f"copy {src_ds}.{t} to {dst_ds}.{t}")
    return jobs


def _dataset_exists(s: _Session, dataset: str) -> bool:
    from google.api_core.exceptions import NotFound

    with s.api(f"read dataset {dataset}"):
        try:
            s.client.get_dataset(s.ref(dataset), retry=s.retry)
        except NotFound:
            return False
    return True


def _log_rows(s: _Session, dataset: str, rows: dict[str, int]) -> None:
    for t, n in rows.items():
        s.ctx.log(f"{dataset}.{t}: {n:,} rows")


# --- backup datasets -----------------------------------------------------------------------


class BackupDatasetParams(_DatasetParams):
    tables: list[str] | None = _tables_field()
    backup_dataset: str | None = Field(
        None, pattern=DATASET_RE, description="Name of the backup dataset (default <dataset>_backup_<YYYYmmdd_HHMMSS>, UTC)."
    )

    _tables = field_validator("tables")(classmethod(lambda cls, v: _check_tables(v)))


class BackupDataset(BaseAction):
    name: ClassVar[str] = "bigquery.backup_dataset"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Back up a dataset: a timestamped backup dataset with a copy of every table (or the listed ones)."
    Params = BackupDatasetParams
    outputs: ClassVar[dict[str, str]] = {
        "backup_dataset": "Name of the backup dataset.",
        "tables": "Tables copied.",
        "rows": "Rows per table in the backup.",
        "total": "Rows in all tables.",
        "location": "Location of the backup dataset (the source's).",
    }

    def _name(self, p: BackupDatasetParams) -> str:
        return p.backup_dataset or f"{_show_ds(p.dataset)}_backup_<YYYYmmdd_HHMMSS>"

    def target(self, params: BackupDatasetParams) -> str:
        return self._name(params)

    def describe(self, params: BackupDatasetParams) -> str:
        ds, backup = _show_ds(params.dataset), self._name(params)
        which = ", ".join(params.tables) if params.tables else "every table"
        return (
            f"bigquery.create_dataset({backup}, labels={{{LABEL_BACKUP}: true, {LABEL_SOURCE}: {ds}}}) + "
            f"bigquery.copy_table({ds}.<table> → {backup}.<table>) for {which}"
        )

    def run(self, ctx: StepContext, params: BackupDatasetParams) -> dict[str, Any]:
        from google.cloud import bigquery

        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        now = datetime.now(UTC)
        backup = params.backup_dataset or f"{ds}_backup_{now.strftime(STAMP)}"
        with s.api(f"read dataset {ds}"):
            source = s.client.get_dataset(s.ref(ds), retry=s.retry)
        tables = list(params.tables) if params.tables else s.tables(ds)
        if not tables:
            raise ActionError(f"Dataset {ds} has no tables to back up.")
        target = bigquery.Dataset(s.ref(backup))
        target.location = source.location
        target.labels = {
            LABEL_BACKUP: "true",
            LABEL_SOURCE: ds.lower()[:63],
            LABEL_CREATED: now.strftime(STAMP),
        }
        target.description = f"runbook backup of {s.ref(ds)} taken {_iso(now)} (incident {ctx.incident_id})."
        with s.api(f"create backup dataset {backup}"):
            s.client.create_dataset(target, retry=s.retry)
        ctx.log(f"created {backup} in {source.location} ({len(tables)} tables to copy)")
        try:
            jobs = _copy_all(s, ds, backup, tables, write_disposition="WRITE_EMPTY")
        except ActionError as exc:
            # A partial backup must not pass for the newest good one (list_backups, prune).
            raise ActionError(f"{str(exc).rstrip('.')}; {_drop_partial(s, backup)}.") from None
        rows = _rows_after_copies(s, backup, jobs)
        _log_rows(s, backup, rows)
        ctx.log(f"BigQuery backup completed: {backup}")
        return {
            "backup_dataset": backup,
            "tables": tables,
            "rows": rows,
            "total": sum(rows.values()),
            "location": source.location or "",
        }


def _drop_partial(s: _Session, backup: str) -> str:
    try:
        s.client.delete_dataset(s.ref(backup), delete_contents=True, not_found_ok=True, retry=s.retry, timeout=30)
    except Exception:  # noqa: BLE001 - reported in the sentence instead
        return f"the incomplete backup dataset {backup} is left in place: delete it before relying on backups"
    return f"the incomplete backup dataset {backup} was deleted"


# --- snapshots -----------------------------------------------------------------------------


class SnapshotTableParams(_DatasetParams):
    table: str = Field(pattern=TABLE_RE)
    snapshot: str | None = Field(None, pattern=TABLE_RE, description="Snapshot table name (default <table>_snapshot_<YYYYmmdd_HHMMSS>).")
    snapshot_dataset: str | None = Field(None, pattern=DATASET_RE, description="Dataset for the snapshot (default: the table's).")
    retention_days: int = Field(30, ge=0, le=36500, description="Expire the snapshot after this many days (0: never).")


class SnapshotTable(BaseAction):
    name: ClassVar[str] = "bigquery.snapshot_table"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Point-in-time table snapshot (copy job, operation SNAPSHOT) that expires after the retention."
    Params = SnapshotTableParams
    outputs: ClassVar[dict[str, str]] = {"snapshot": "Full id project.dataset.table of the snapshot.", "expires": "Expiration (UTC, ISO 8601), '' for none."}

    def target(self, params: SnapshotTableParams) -> str:
        return f"{_show_ds(params.dataset)}.{params.table}"

    def describe(self, params: SnapshotTableParams) -> str:
        ds = _show_ds(params.dataset)
        snap = params.snapshot or f"{params.table}_snapshot_<YYYYmmdd_HHMMSS>"
        exp = f", expiration=now+{params.retention_days}d" if params.retention_days else ""
        return f"bigquery.copy_table({ds}.{params.table} → {params.snapshot_dataset or ds}.{snap}, operation_type=SNAPSHOT{exp})"

    def run(self, ctx: StepContext, params: SnapshotTableParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        snap_ds = params.snapshot_dataset or ds
        now = datetime.now(UTC)
        snap = params.snapshot or f"{params.table}_snapshot_{now.strftime(STAMP)}"
        config: dict[str, Any] = {"operation_type": "SNAPSHOT", "write_disposition": "WRITE_EMPTY"}
        expires = ""
        if params.retention_days:
            expires = _iso((now + timedelta(days=params.retention_days)).replace(microsecond=0))
            # RFC 3339 string: the client sends this field as is (a datetime is not serialised).
            config["destination_expiration_time"] = expires
        what = f"snapshot {ds}.{params.table} to {snap_ds}.{snap}"
        job = s.copy(s.ref(ds, params.table), s.ref(snap_ds, snap), what, **config)
        s.wait(job, what)
        full = s.ref(snap_ds, snap)
        ctx.log(f"snapshot {full} created" + (f", expires {expires}" if expires else ", no expiration"))
        return {"snapshot": full, "expires": expires}


# --- restores ------------------------------------------------------------------------------


class RestoreTableParams(_Params):
    dataset: str = Field(pattern=DATASET_RE, description="Dataset of the table to overwrite.")
    table: str = Field(pattern=TABLE_RE, description="Table to overwrite (created if it was deleted).")
    from_dataset: str = Field(pattern=DATASET_RE, description="Backup dataset, or the snapshot's dataset.")
    from_table: str | None = Field(None, pattern=TABLE_RE, description="Backup table or snapshot (default: same name as table).")
    source_kind: Literal["auto", "snapshot", "table"] = Field(
        "auto", description="snapshot: RESTORE copy; table: plain copy; auto: look at the source."
    )

    @model_validator(mode="after")
    def _not_itself(self) -> RestoreTableParams:
        if self.from_dataset == self.dataset and (self.from_table or self.table) == self.table:
            raise ValueError("the source and the table to restore are the same table")
        return self


class RestoreTable(BaseAction):
    name: ClassVar[str] = "bigquery.restore_table"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Overwrite a table with a backup table or a table snapshot (WRITE_TRUNCATE)."
    Params = RestoreTableParams
    outputs: ClassVar[dict[str, str]] = {"rows": "Rows in the restored table.", "source": "Full id of the source.", "kind": "snapshot or table."}

    def target(self, params: RestoreTableParams) -> str:
        return f"{params.dataset}.{params.table}"

    def describe(self, params: RestoreTableParams) -> str:
        src = f"{params.from_dataset}.{params.from_table or params.table}"
        op = {
            "snapshot": ", operation_type=RESTORE",
            "table": "",
            "auto": ", operation_type=RESTORE if the source is a snapshot",
        }[params.source_kind]
        return f"bigquery.copy_table({src} → {params.dataset}.{params.table}, write_disposition=WRITE_TRUNCATE{op})"

    def run(self, ctx: StepContext, params: RestoreTableParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
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
        rows = _rows_after_copies(s, params.dataset, {params.table: job})[params.table]
        ctx.log(f"{params.dataset}.{params.table}: {rows:,} rows restored")
        return {"rows": rows, "source": src, "kind": kind}


class RestoreDatasetParams(_Params):
    from_dataset: str = Field(pattern=DATASET_RE, description="The backup dataset.")
    dataset: str = Field(pattern=DATASET_RE, description="Dataset whose tables are overwritten.")
    tables: list[str] | None = Field(None, description="Only these tables (default: every table of the backup).")
    create: bool = Field(True, description="Create the dataset (in the backup's location) if it is gone.")

    _tables = field_validator("tables")(classmethod(lambda cls, v: _check_tables(v)))

    @model_validator(mode="after")
    def _not_itself(self) -> RestoreDatasetParams:
        if self.from_dataset == self.dataset:
            raise ValueError("from_dataset and dataset are the same dataset")
        return self


class RestoreDataset(BaseAction):
    name: ClassVar[str] = "bigquery.restore_dataset"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Overwrite a dataset's tables with every table of a backup dataset (bq cp BACKUP.* DATASET)."
    Params = RestoreDatasetParams
    outputs: ClassVar[dict[str, str]] = {"tables": "Tables restored.", "rows": "Rows per restored table.", "total": "Rows in all restored tables."}

    def target(self, params: RestoreDatasetParams) -> str:
        return params.dataset

    def describe(self, params: RestoreDatasetParams) -> str:
        which = "*" if not params.tables else "{" + ",".join(params.tables) + "}"
        return f"bigquery.copy_table({params.from_dataset}.{which} → {params.dataset}.{which}, write_disposition=WRITE_TRUNCATE)"

    def run(self, ctx: StepContext, params: RestoreDatasetParams) -> dict[str, Any]:
        from google.cloud import bigquery

        s = _Session.open(ctx, params.project)
        tables = list(params.tables) if params.tables else s.tables(params.from_dataset)
        if not tables:
            raise ActionError(f"Backup dataset {params.from_dataset} has no tables to restore.")
        if not _dataset_exists(s, params.dataset):
            if not params.create:
                raise ActionError(f"Dataset {params.dataset} does not exist: create it or set create: true.")
            with s.api(f"read backup dataset {params.from_dataset}"):
                loc = s.client.get_dataset(s.ref(params.from_dataset), retry=s.retry).location
            fresh = bigquery.Dataset(s.ref(params.dataset))
            fresh.location = loc
            with s.api(f"create dataset {params.dataset}"):
                s.client.create_dataset(fresh, exists_ok=True, retry=s.retry)
            ctx.log(f"created dataset {params.dataset} in {loc}")
        jobs = _copy_all(s, params.from_dataset, params.dataset, tables, write_disposition="WRITE_TRUNCATE")
        rows = _rows_after_copies(s, params.dataset, jobs)
        _log_rows(s, params.dataset, rows)
        return {"tables": tables, "rows": rows, "total": sum(rows.values())}


class TimeTravelParams(_Params):
    dataset: str = Field(pattern=DATASET_RE)
    table: str = Field(pattern=TABLE_RE)
    timestamp: str = Field(description="Restore the table as it was at this time (ISO 8601; UTC if no offset).")
    to_table: str | None = Field(None, pattern=TABLE_RE, description="Write the old state here instead of overwriting the table.")

    @field_validator("timestamp")
    @classmethod
    def _ts(cls, v: str) -> str:
        parse_timestamp(v)
        return v


class TimeTravelRestore(BaseAction):
    """Restore a table to its state at a timestamp, through a staging table.

    ``CREATE TABLE staging LIKE t`` (keeps partitioning and clustering on BigQuery), ``INSERT INTO
    staging SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP(ts)``, then a ``WRITE_TRUNCATE`` copy
    of staging over the table, then the staging table is dropped. Works on BigQuery and on
    bqemulator alike. Not used: a query with a destination table (bqemulator ignores it), ``CTAS
    … FOR SYSTEM_TIME AS OF`` into a back-quoted full id (fails on bqemulator), ``DELETE`` +
    ``INSERT`` in place (BigQuery refuses DML over rows in the streaming buffer), copying
    ``t@<ms>`` (no decorators on bqemulator). BigQuery keeps 2 to 7 days of history (the
    dataset's time-travel window); an older timestamp fails with BigQuery's own sentence.
    """

    name: ClassVar[str] = "bigquery.time_travel_restore"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Restore a table to its state at a past timestamp (time travel, within the 7-day window)."
    Params = TimeTravelParams
    outputs: ClassVar[dict[str, str]] = {"rows": "Rows in the restored table.", "table": "Full id of the restored table.", "as_of": "The timestamp, UTC."}

    def target(self, params: TimeTravelParams) -> str:
        return f"{params.dataset}.{params.to_table or params.table}"

    def describe(self, params: TimeTravelParams) -> str:
        ds, t = params.dataset, params.table
        stage = f"{ds}._runbook_tt_{t}_<stamp>"
        as_of = _iso(parse_timestamp(params.timestamp))
        return (
            f"bigquery.query(CREATE TABLE {stage} LIKE {ds}.{t}; INSERT INTO {stage} SELECT * FROM {ds}.{t} "
            f"FOR SYSTEM_TIME AS OF TIMESTAMP('{as_of}')) + bigquery.copy_table({stage} → "
            f"{ds}.{params.to_table or t}, write_disposition=WRITE_TRUNCATE) + bigquery.delete_table({stage})"
        )

    def run(self, ctx: StepContext, params: TimeTravelParams) -> dict[str, Any]:
        ts = parse_timestamp(params.timestamp)
        now = datetime.now(UTC)
        if ts > now:
            raise ActionError(f"The timestamp {_iso(ts)} is in the future: time travel can only go back.")
        s = _Session.open(ctx, params.project)
        ds, t = params.dataset, params.table
        dest = params.to_table or t
        stage = f"_runbook_tt_{t}"[:1000] + f"_{now.strftime(STAMP)}"
        # A literal from a parsed datetime (no user text reaches the SQL); query parameters inside
        # FOR SYSTEM_TIME AS OF are not portable.
        as_of = ts.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        ctx.log(f"reading {ds}.{t} as of {_iso(ts)} ({format_duration((now - ts).total_seconds())} ago) into {ds}.{stage}")
        try:
            s.query(f"CREATE TABLE {s.sql(ds, stage)} LIKE {s.sql(ds, t)}", f"create staging table {ds}.{stage}")
            job, _ = s.query(
                f"INSERT INTO {s.sql(ds, stage)} SELECT * FROM {s.sql(ds, t)} FOR SYSTEM_TIME AS OF TIMESTAMP('{as_of}')",
                f"read {ds}.{t} as of {_iso(ts)}",
            )
            rows = job.num_dml_affected_rows
            ctx.log(f"{ds}.{stage}: {rows if rows is not None else '?'} rows as of {_iso(ts)}; overwriting {ds}.{dest}")
            what = f"overwrite {ds}.{dest} with its state as of {_iso(ts)}"
            s.check_cancelled(what)
            copy = s.copy(s.ref(ds, stage), s.ref(ds, dest), what, write_disposition="WRITE_TRUNCATE")
            s.wait(copy, what)
            if rows is None:
                rows = _rows_after_copies(s, ds, {dest: copy})[dest]
        finally:
            try:
                s.client.delete_table(s.ref(ds, stage), not_found_ok=True, retry=s.retry, timeout=30)
            except Exception:  # noqa: BLE001 - the store is failing; the main error says why
                ctx.log(f"WARNING: could not drop the staging table {ds}.{stage}: drop it by hand")
        ctx.log(f"{ds}.{dest}: {rows:,} rows, as of {_iso(ts)}")
        return {"rows": int(rows), "table": s.ref(ds, dest), "as_of": _iso(ts)}


# --- counts --------------------------------------------------------------------------------


class RowCountsParams(_DatasetParams):
    tables: list[str] | None = _tables_field()

    _tables = field_validator("tables")(classmethod(lambda cls, v: _check_tables(v)))


class RowCounts(BaseAction):
    name: ClassVar[str] = "bigquery.row_counts"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Exact row count (COUNT(*)) of every table of a dataset, or of the listed tables."
    Params = RowCountsParams
    outputs: ClassVar[dict[str, str]] = {"counts": "Rows per table.", "total": "Rows in all tables.", "dataset": "The dataset."}

    def target(self, params: RowCountsParams) -> str:
        return _show_ds(params.dataset)

    def describe(self, params: RowCountsParams) -> str:
        which = ", ".join(params.tables) if params.tables else "every table"
        return f"bigquery.query(SELECT COUNT(*) … UNION ALL …) over {_show_ds(params.dataset)}: {which}"

    def run(self, ctx: StepContext, params: RowCountsParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        tables = list(params.tables) if params.tables else s.tables(ds)
        counts = s.counts(ds, tables) if tables else {}
        _log_rows(s, ds, counts)
        total = sum(counts.values())
        ctx.log(f"{ds}: {len(counts)} tables, {total:,} rows")
        return {"counts": counts, "total": total, "dataset": ds}


def _split(name: str) -> tuple[str, str | None]:
    ds, _, table = name.partition(".")
    return ds, table or None


class CompareCountsParams(_Params):
    a: str = Field(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)?$", description="A dataset, or dataset.table.")
    b: str = Field(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)?$", description="The same kind as a.")
    tables: list[str] | None = Field(None, description="For datasets: only these tables (default: every table on either side).")
    tolerance: int = Field(0, ge=0, description="Allowed difference in rows per table.")
    fail: bool = Field(True, description="Fail the step on a mismatch (else only report equal=false).")

    _tables = field_validator("tables")(classmethod(lambda cls, v: _check_tables(v)))

    @model_validator(mode="after")
    def _same_kind(self) -> CompareCountsParams:
        if ("." in self.a) != ("." in self.b):
            raise ValueError("a and b must both be datasets or both be dataset.table")
        if self.tables and "." in self.a:
            raise ValueError("tables only applies when comparing two datasets")
        return self


class CompareCounts(BaseAction):
    name: ClassVar[str] = "bigquery.compare_counts"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Compare row counts of two tables or of two datasets table by table (e.g. source vs backup)."
    Params = CompareCountsParams
    outputs: ClassVar[dict[str, str]] = {
        "equal": "true when every count matched (within tolerance).",
        "counts_a": "Rows per table of a.",
        "counts_b": "Rows per table of b.",
        "mismatches": "One phrase per mismatch.",
    }

    def target(self, params: CompareCountsParams) -> str:
        return f"{params.a} vs {params.b}"

    def describe(self, params: CompareCountsParams) -> str:
        return f"bigquery.query(SELECT COUNT(*) FROM {params.a}) vs bigquery.query(SELECT COUNT(*) FROM {params.b})"

    def run(self, ctx: StepContext, params: CompareCountsParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
        ds_a, t_a = _split(params.a)
        ds_b, t_b = _split(params.b)
        if t_a and t_b:
            counts_a = s.counts(ds_a, [t_a])
            counts_b = s.counts(ds_b, [t_b])
            # Two tables: compare the one pair under a shared key.
            pairs = [(t_a, counts_a.get(t_a), counts_b.get(t_b))]
        else:
            names_a = list(params.tables) if params.tables else s.tables(ds_a)
            names_b = list(params.tables) if params.tables else s.tables(ds_b)
            counts_a = s.counts(ds_a, names_a) if names_a else {}
            counts_b = s.counts(ds_b, names_b) if names_b else {}
            every = sorted(set(names_a) | set(names_b))
            pairs = [(t, counts_a.get(t), counts_b.get(t)) for t in every]
        mismatches = []
        for table, na, nb in pairs:
            label = table if not (t_a and t_b) else f"{params.a} vs {params.b}"
            if na is None:
                mismatches.append(f"{table} missing from {ds_a}")
            elif nb is None:
                mismatches.append(f"{table} missing from {ds_b}")
            elif abs(na - nb) > params.tolerance:
                mismatches.append(f"{label} {na:,} vs {nb:,}")
            ctx.log(f"{label}: {na if na is not None else '-'} vs {nb if nb is not None else '-'}")
        equal = not mismatches
        if not pairs:
            mismatches.append("no tables on either side")
            equal = False
        if not equal and params.fail:
            shown = "; ".join(mismatches[:5]) + (f"; and {len(mismatches) - 5} more" if len(mismatches) > 5 else "")
            raise ActionError(f"Row counts differ between {params.a} and {params.b}: {shown}.")
        ctx.log("row counts match" if equal else f"{len(mismatches)} mismatches")
        return {"equal": equal, "counts_a": counts_a, "counts_b": counts_b, "mismatches": mismatches}


# --- backup listing and cleanup ------------------------------------------------------------


@dataclass(frozen=True)
class _Backup:
    name: str
    created: datetime
    labelled: bool


def _find_backups(s: _Session, dataset: str) -> list[_Backup]:
    """Backup datasets of ``dataset``, oldest first.

    A backup is ``<dataset>_backup_<YYYYmmdd_HHMMSS>`` (the seed's script; no labels) or a dataset
    labelled by :class:`BackupDataset` for this source. Age comes from the name's timestamp (the
    moment the backup was taken, also right for copied backups and on bqemulator, where creation
    times cannot be set); a labelled backup without one falls back to the dataset's creation time.
    """
    with s.api(f"list the datasets of project {s.project}"):
        items = list(s.client.list_datasets(s.project, include_all=True, retry=s.retry))
    found = []
    for item in items:
        name = item.dataset_id
        labels = item.labels or {}
        labelled = labels.get(LABEL_BACKUP) == "true" and labels.get(LABEL_SOURCE) == dataset.lower()[:63]
        m = BACKUP_RE.match(name)
        if m and m["source"] == dataset:
            created = datetime.strptime(m["stamp"], STAMP).replace(tzinfo=UTC)
        elif labelled:
            stamp = labels.get(LABEL_CREATED, "")
            try:
                created = datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)
            except ValueError:
                with s.api(f"read backup dataset {name}"):
                    created = s.client.get_dataset(s.ref(name), retry=s.retry).created
        else:
            continue
        found.append(_Backup(name, created, labelled))
    return sorted(found, key=lambda b: (b.created, b.name))


class ListBackupsParams(_DatasetParams):
    max_age: str | int | None = Field(None, description="Fail if the newest backup is older (e.g. 26h).")
    required: bool = Field(True, description="Fail when there is no backup at all.")

    @field_validator("max_age")
    @classmethod
    def _dur(cls, v: Any) -> Any:
        return check_duration(v)


class ListBackups(BaseAction):
    name: ClassVar[str] = "bigquery.list_backups"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "List a dataset's backup datasets (<dataset>_backup_* or labelled) with their times."
    Params = ListBackupsParams
    outputs: ClassVar[dict[str, str]] = {
        "names": "Backup datasets, oldest first.",
        "latest": "The newest backup ('' if none).",
        "latest_created": "When the newest was taken (UTC).",
        "created": "Backup → when it was taken (UTC).",
        "age_seconds": "Age of the newest backup.",
        "count": "How many backups.",
    }

    def target(self, params: ListBackupsParams) -> str:
        return f"{_show_ds(params.dataset)}_backup_*"

    def describe(self, params: ListBackupsParams) -> str:
        ds = _show_ds(params.dataset)
        return f"bigquery.list_datasets(project) matching {ds}_backup_<YYYYmmdd_HHMMSS> or label {LABEL_SOURCE}={ds}"

    def run(self, ctx: StepContext, params: ListBackupsParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        backups = _find_backups(s, ds)
        now = datetime.now(UTC)
        for b in backups:
            ctx.log(f"{b.name}  {_iso(b.created)}  ({format_duration((now - b.created).total_seconds())} old)")
        if not backups:
            ctx.log(f"no backups of {ds}")
            if params.required:
                raise ActionError(f"No backups of dataset {ds} found in project {s.project}.")
            return {"names": [], "latest": "", "latest_created": "", "created": {}, "age_seconds": None, "count": 0}
        latest = backups[-1]
        age = max(0.0, (now - latest.created).total_seconds())
        if params.max_age is not None and age > parse_duration(params.max_age):
            raise ActionError(f"The newest backup of {ds}, {latest.name}, is {format_duration(age)} old, older than {params.max_age}.")
        return {
            "names": [b.name for b in backups],
            "latest": latest.name,
            "latest_created": _iso(latest.created),
            "created": {b.name: _iso(b.created) for b in backups},
            "age_seconds": round(age, 1),
            "count": len(backups),
        }


class PruneBackupsParams(_Params):
    dataset: str = Field(pattern=DATASET_RE, description="The source dataset whose backups are pruned.")
    older_than_days: float = Field(90, gt=0, description="Delete backups taken more than this many days ago.")
    keep_latest: int = Field(1, ge=1, description="Always keep this many newest backups, however old.")


class PruneBackups(BaseAction):
    name: ClassVar[str] = "bigquery.prune_backups"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Delete a dataset's backup datasets older than N days (never the newest)."
    Params = PruneBackupsParams
    outputs: ClassVar[dict[str, str]] = {"deleted": "Backup datasets deleted.", "kept": "Backup datasets kept."}

    def target(self, params: PruneBackupsParams) -> str:
        return f"{params.dataset}_backup_*"

    def describe(self, params: PruneBackupsParams) -> str:
        return (
            f"bigquery.delete_dataset({params.dataset}_backup_<older than {params.older_than_days:g} days>, "
            f"delete_contents=True), keeping the newest {params.keep_latest}"
        )

    def run(self, ctx: StepContext, params: PruneBackupsParams) -> dict[str, Any]:
        s = _Session.open(ctx, params.project)
        backups = _find_backups(s, params.dataset)
        cutoff = datetime.now(UTC) - timedelta(days=params.older_than_days)
        protected = {b.name for b in backups[-params.keep_latest :]}
        doomed = [b for b in backups if b.created < cutoff and b.name not in protected]
        deleted: list[str] = []
        for b in doomed:
            if ctx.cancelled.is_set():
                raise ActionError(f"Pruning was stopped by the operator after deleting {len(deleted)} backups.")
            with s.api(f"delete backup dataset {b.name}"):
                s.client.delete_dataset(s.ref(b.name), delete_contents=True, not_found_ok=True, retry=s.retry)
            deleted.append(b.name)
            ctx.log(f"deleted {b.name} (taken {_iso(b.created)})")
        kept = [b.name for b in backups if b.name not in deleted]
        ctx.log(f"deleted {len(deleted)}, kept {len(kept)} (older than {params.older_than_days:g} days: {len(doomed)})")
        return {"deleted": deleted, "kept": kept}


# --- cross-region copy ---------------------------------------------------------------------


class CopyRegionParams(_DatasetParams):
    region: str = Field("secondary", pattern=r"^[a-z0-9-]+$", description="secondary (default), primary, or a region name.")
    target_dataset: str | None = Field(None, pattern=DATASET_RE, description="Default: <dataset>_<region with _>.")
    tables: list[str] | None = _tables_field()

    _tables = field_validator("tables")(classmethod(lambda cls, v: _check_tables(v)))


class CopyDatasetRegion(BaseAction):
    """Copy a dataset into a dataset in another location, table by table.

    The target dataset is created with the region's BigQuery location (``bigquery_location_<region>``
    in the gcp store, else the region name); each table is copied with a copy job, which BigQuery
    runs across locations (``WRITE_TRUNCATE``: cross-region copies cannot append).
    """

    name: ClassVar[str] = "bigquery.copy_dataset_region"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Copy a dataset's tables into a dataset in another region (failover copy)."
    Params = CopyRegionParams
    outputs: ClassVar[dict[str, str]] = {
        "target_dataset": "The copy.",
        "location": "Its location.",
        "tables": "Tables copied.",
        "rows": "Rows per table in the copy.",
        "total": "Rows in all tables.",
    }

    def _target_ds(self, ds: str, region: str) -> str:
        return f"{ds}_{region.replace('-', '_')}"

    def target(self, params: CopyRegionParams) -> str:
        return params.target_dataset or self._target_ds(_show_ds(params.dataset), f"<{params.region} region>")

    def describe(self, params: CopyRegionParams) -> str:
        ds = _show_ds(params.dataset)
        dest = self.target(params)
        which = ", ".join(params.tables) if params.tables else "every table"
        return (
            f"bigquery.create_dataset({dest}, location=<{params.region} region's location>) + "
            f"bigquery.copy_table({ds}.<table> → {dest}.<table>, write_disposition=WRITE_TRUNCATE) for {which}"
        )

    def run(self, ctx: StepContext, params: CopyRegionParams) -> dict[str, Any]:
        from google.cloud import bigquery

        gs = gcp.settings(ctx.environment)
        region = gs.region_or_default(params.region)
        loc = bqstore.location(gs, region)
        s = _Session.open(ctx, params.project, region)
        ds = s.dataset(params.dataset)
        dest = params.target_dataset or self._target_ds(ds, region)
        if dest == ds:
            raise ActionError(f"The target dataset {dest} is the source dataset: give another target_dataset.")
        tables = list(params.tables) if params.tables else s.tables(ds)
        if not tables:
            raise ActionError(f"Dataset {ds} has no tables to copy.")
        fresh = bigquery.Dataset(s.ref(dest))
        fresh.location = loc
        fresh.labels = {"runbook-copy-of": ds.lower()[:63]}
        with s.api(f"create dataset {dest} in {loc}"):
            got = s.client.create_dataset(fresh, exists_ok=True, retry=s.retry)
        if (got.location or "").lower() != loc.lower():
            raise ActionError(f"Dataset {dest} already exists in {got.location}, not in {loc}: choose another target_dataset.")
        ctx.log(f"copying {len(tables)} tables of {ds} to {dest} in {loc}")
        jobs = _copy_all(s, ds, dest, tables, write_disposition="WRITE_TRUNCATE")
        rows = _rows_after_copies(s, dest, jobs)
        _log_rows(s, dest, rows)
        return {"target_dataset": dest, "location": loc, "tables": tables, "rows": rows, "total": sum(rows.values())}


# --- verification --------------------------------------------------------------------------


class VerifyRowsParams(_DatasetParams):
    table: str = Field(pattern=TABLE_RE, description="The table to check (e.g. a restored one).")
    reference_dataset: str | None = Field(None, pattern=DATASET_RE, description="Dataset of the reference (default: dataset).")
    reference_table: str | None = Field(None, pattern=TABLE_RE, description="The reference table (default: table).")
    key: str = Field(pattern=COLUMN_RE, description="Column identifying a row (compared as its string form).")
    sample: int = Field(100, ge=1, le=10000, description="How many keys to check.")
    method: Literal["random", "first"] = Field("random", description="random keys, or the first keys in key order.")
    fail: bool = Field(True, description="Fail the step on a mismatch (else only report it).")

    @model_validator(mode="after")
    def _two_tables(self) -> VerifyRowsParams:
        if (self.reference_dataset or self.dataset) == self.dataset and (self.reference_table or self.table) == self.table:
            raise ValueError("set reference_dataset or reference_table: a table cannot be its own reference")
        return self


def _canon(value: Any) -> Any:
    """A comparable, hashable form of a cell (floats by repr, structures as sorted JSON)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


class VerifyRows(BaseAction):
    name: ClassVar[str] = "bigquery.verify_rows"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Compare sampled rows (every column) of a table with a reference table, by key."
    Params = VerifyRowsParams
    outputs: ClassVar[dict[str, str]] = {"sampled": "Keys compared.", "mismatches": "Keys whose rows differ.", "mismatched_keys": "Up to 20 of them."}

    def target(self, params: VerifyRowsParams) -> str:
        return f"{_show_ds(params.dataset)}.{params.table}"

    def describe(self, params: VerifyRowsParams) -> str:
        ds = _show_ds(params.dataset)
        ref = f"{params.reference_dataset or ds}.{params.reference_table or params.table}"
        order = "RAND()" if params.method == "random" else params.key
        return (
            f"bigquery.query(SELECT {params.key} FROM {ref} ORDER BY {order} LIMIT {params.sample}) + "
            f"bigquery.query(SELECT * WHERE {params.key} IN keys) on {ref} and {ds}.{params.table}"
        )

    def run(self, ctx: StepContext, params: VerifyRowsParams) -> dict[str, Any]:
        from google.cloud import bigquery

        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        ref_ds, ref_t = params.reference_dataset or ds, params.reference_table or params.table
        k = f"`{params.key}`"
        order = "RAND()" if params.method == "random" else "k"
        _job, key_rows = s.query(
            f"SELECT k FROM (SELECT DISTINCT CAST({k} AS STRING) AS k FROM {s.sql(ref_ds, ref_t)}) "
            f"ORDER BY {order} LIMIT {int(params.sample)}",
            f"sample keys of {ref_ds}.{ref_t}",
        )
        keys = [r["k"] for r in key_rows]
        if not keys:
            raise ActionError(f"The reference table {ref_ds}.{ref_t} is empty: nothing to verify against.")
        keys_param = [bigquery.ArrayQueryParameter("keys", "STRING", keys)]
        s.check_cancelled("compare the sampled rows")

        def fetch(d: str, t: str) -> dict[Any, list[tuple[Any, ...]]]:
            _j, rows = s.query(
                f"SELECT * FROM {s.sql(d, t)} WHERE CAST({k} AS STRING) IN UNNEST(@keys)", f"read sampled rows of {d}.{t}", keys_param
            )
            out: dict[Any, list[tuple[Any, ...]]] = {}
            for row in rows:
                item = dict(row.items())
                key = item.get(params.key)
                out.setdefault(str(key), []).append(tuple(sorted((c, _canon(v)) for c, v in item.items())))
            return {key: sorted(v, key=repr) for key, v in out.items()}

        reference = fetch(ref_ds, ref_t)
        actual = fetch(ds, params.table)
        bad = [key for key in keys if reference.get(key) != actual.get(key)]
        ctx.log(f"{len(keys)} sampled keys of {ds}.{params.table} against {ref_ds}.{ref_t}: {len(bad)} mismatched")
        for key in bad[:10]:
            ctx.log(f"  mismatch at {params.key}={key}: {'missing' if key not in actual else 'values differ'}")
        if bad and params.fail:
            shown = ", ".join(bad[:5]) + (" …" if len(bad) > 5 else "")
            raise ActionError(
                f"{len(bad)} of {len(keys)} sampled rows of {ds}.{params.table} differ from {ref_ds}.{ref_t} ({params.key} {shown})."
            )
        return {"sampled": len(keys), "mismatches": len(bad), "mismatched_keys": bad[:20]}


# --- drills --------------------------------------------------------------------------------


EVENT_SCHEMA = [("event_id", "STRING"), ("type", "STRING"), ("product_id", "STRING"), ("ts", "TIMESTAMP")]


class GenerateEventsParams(_DatasetParams):
    table: str = Field(pattern=TABLE_RE, description="Table to insert into (created with the event schema if missing).")
    count: int = Field(1000, ge=1, le=1_000_000)
    id_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_:.-]{0,64}$", description="Event id prefix (default G<YYYYmmddHHMMSS>-).")
    seed: int | None = Field(None, description="Random seed for reproducible events.")


class GenerateEvents(BaseAction):
    name: ClassVar[str] = "bigquery.generate_events"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Insert N synthetic events into a table (recovery drills: 'generate 1,000 events')."
    Params = GenerateEventsParams
    outputs: ClassVar[dict[str, str]] = {"rows": "Rows inserted.", "first_event_id": "First event id.", "last_event_id": "Last event id.", "table": "Full table id."}

    def target(self, params: GenerateEventsParams) -> str:
        return f"{_show_ds(params.dataset)}.{params.table}"

    def describe(self, params: GenerateEventsParams) -> str:
        return f"bigquery.insert_rows_json({self.target(params)}, {params.count} generated events, {INSERT_BATCH} per request)"

    def run(self, ctx: StepContext, params: GenerateEventsParams) -> dict[str, Any]:
        from google.cloud import bigquery

        s = _Session.open(ctx, params.project)
        ds = s.dataset(params.dataset)
        ref = s.ref(ds, params.table)
        now = datetime.now(UTC)
        prefix = params.id_prefix if params.id_prefix is not None else f"G{now.strftime('%Y%m%d%H%M%S')}-"
        rng = random.Random(params.seed)
        with s.api(f"create table {ds}.{params.table}"):
            s.client.create_table(
                bigquery.Table(ref, schema=[bigquery.SchemaField(n, t) for n, t in EVENT_SCHEMA]), exists_ok=True, retry=s.retry
            )
        ids = [f"{prefix}{i:06d}" for i in range(params.count)]
        inserted = 0
        for start in range(0, len(ids), INSERT_BATCH):
            if ctx.cancelled.is_set():
                raise ActionError(f"Generating events was stopped by the operator after {inserted} rows.")
            batch = ids[start : start + INSERT_BATCH]
            rows = [
                {
                    "event_id": eid,
                    "type": rng.choice(["view", "add_to_cart", "purchase"]),
                    "product_id": f"P{rng.randint(1, 200):04d}",
                    "ts": _iso(now + timedelta(milliseconds=start + i)),
                }
                for i, eid in enumerate(batch)
            ]
            errors = _insert(s, ref, rows, batch, f"insert events into {ds}.{params.table}")
            if errors:
                first = errors[0].get("errors", [{}])[0].get("message", str(errors[0]))
                raise ActionError(f"BigQuery rejected {len(errors)} generated rows for {ds}.{params.table}: {first}.")
            inserted += len(batch)
            ctx.log(f"inserted {inserted:,}/{params.count:,} events into {ds}.{params.table}")
        return {"rows": inserted, "first_event_id": ids[0], "last_event_id": ids[-1], "table": ref}


def _insert(s: _Session, ref: str, rows: list[dict[str, Any]], row_ids: list[str], what: str) -> list[Any]:
    """insert_rows_json, waiting up to 60 s for a just-created table to accept streaming inserts."""
    from google.api_core.exceptions import NotFound

    deadline = time.monotonic() + 60
    while True:
        with s.api(what):
            try:
                return list(s.client.insert_rows_json(ref, rows, row_ids=row_ids, retry=s.retry))
            except NotFound:
                if time.monotonic() > deadline:
                    raise
        time.sleep(1)


ACTIONS = [
    BackupDataset,
    SnapshotTable,
    RestoreTable,
    RestoreDataset,
    TimeTravelRestore,
    RowCounts,
    CompareCounts,
    ListBackups,
    PruneBackups,
    CopyDatasetRegion,
    VerifyRows,
    GenerateEvents,
]
