"""Point-in-time copies: ``bigquery.snapshot_table`` and ``bigquery.time_travel_restore``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from runbook.actions.bigquery.copying import rows_after_copies
from runbook.actions.bigquery.params import (
    DATASET_RE,
    TABLE_RE,
    DatasetParams,
    ProjectParams,
    Timestamp,
    copy_call,
    show_dataset,
    show_table,
)
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, parse_utc, stamp, utc_now

# --- bigquery.snapshot_table -----------------------------------------------------------------


class SnapshotTableParams(DatasetParams):
    table: str = Field(pattern=TABLE_RE)
    snapshot: str | None = Field(None, pattern=TABLE_RE)
    """Snapshot table name (default <table>_snapshot_<YYYYmmdd_HHMMSS>)."""
    snapshot_dataset: str | None = Field(None, pattern=DATASET_RE)
    """Dataset for the snapshot (default: the table's)."""
    retention_days: int = Field(30, ge=0, le=36500)
    """Expire the snapshot after this many days (0: never)."""


class SnapshotTableOutputs(ActionOutputs):
    snapshot: str
    """Full id project.dataset.table of the snapshot."""
    expires: str
    """Expiration (UTC, ISO 8601), '' for none."""


def _describe_snapshot(p: SnapshotTableParams) -> str:
    ds = show_dataset(p.dataset)
    snap = p.snapshot or f"{p.table}_snapshot_<YYYYmmdd_HHMMSS>"
    exp = f"now+{p.retention_days}d" if p.retention_days else None
    dest = f"{p.snapshot_dataset or ds}.{snap}"
    return copy_call(f"{ds}.{p.table}", dest, operation_type="SNAPSHOT", expiration=exp)


@action("bigquery.snapshot_table", Effect.MUTATING,
        "Point-in-time table snapshot (copy job, operation SNAPSHOT) that expires after the retention.",
        target=show_table, describe=_describe_snapshot)
def snapshot_table(ctx: StepContext, params: SnapshotTableParams) -> SnapshotTableOutputs:
    """bqemulator does not store the expiration: the output reports the one requested."""
    s, ds = Session.for_dataset(ctx, params)
    snap_ds = params.snapshot_dataset or ds
    now = utc_now()
    snap = params.snapshot or f"{params.table}_snapshot_{stamp(now)}"
    config: dict[str, Any] = {"operation_type": "SNAPSHOT", "write_disposition": "WRITE_EMPTY"}
    expires = ""
    if params.retention_days:
        expires = iso_z(now + timedelta(days=params.retention_days))
        # RFC 3339 string: the client sends this field as is (a datetime is not serialised).
        config["destination_expiration_time"] = expires
    what = f"snapshot {ds}.{params.table} to {snap_ds}.{snap}"
    job = s.copy(s.ref(ds, params.table), s.ref(snap_ds, snap), what, **config)
    s.wait(job, what)
    full = s.ref(snap_ds, snap)
    ctx.log(f"snapshot {full} created" + (f", expires {expires}" if expires else ", no expiration"))
    return SnapshotTableOutputs(snapshot=full, expires=expires)


# --- bigquery.time_travel_restore ------------------------------------------------------------


class TimeTravelParams(ProjectParams):
    dataset: str = Field(pattern=DATASET_RE)
    table: str = Field(pattern=TABLE_RE)
    timestamp: Timestamp
    """Restore the table as it was at this time (ISO 8601; UTC if no offset)."""
    to_table: str | None = Field(None, pattern=TABLE_RE)
    """Write the old state here instead of overwriting the table."""


class TimeTravelOutputs(ActionOutputs):
    rows: int
    """Rows in the restored table."""
    table: str
    """Full id of the restored table."""
    as_of: str
    """The timestamp, UTC."""


def _as_of(ts: datetime) -> str:
    """The restore point as shown: sub-second precision only when it was given."""
    return iso_z(ts, micro=bool(ts.microsecond))


def _describe_time_travel(p: TimeTravelParams) -> str:
    ds, t = p.dataset, p.table
    stage = f"{ds}._runbook_tt_{t}_<stamp>"
    overwrite = copy_call(stage, f"{ds}.{p.to_table or t}", write_disposition="WRITE_TRUNCATE")
    return (
        f"bigquery.query(CREATE TABLE {stage} LIKE {ds}.{t}; INSERT INTO {stage} SELECT * FROM {ds}.{t} "
        f"FOR SYSTEM_TIME AS OF TIMESTAMP('{_as_of(parse_utc(p.timestamp))}')) + "
        f"{overwrite} + bigquery.delete_table({stage})"
    )


@action("bigquery.time_travel_restore", Effect.DESTRUCTIVE,
        "Restore a table to its state at a past timestamp (time travel, within the 7-day window).",
        target=lambda p: f"{p.dataset}.{p.to_table or p.table}", describe=_describe_time_travel)
def time_travel_restore(ctx: StepContext, params: TimeTravelParams) -> TimeTravelOutputs:
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
    ts = parse_utc(params.timestamp)
    now = utc_now()
    if ts > now:
        raise ActionError(f"The timestamp {_as_of(ts)} is in the future: time travel can only go back.")
    s = Session.open(ctx, params.project)
    ds, dest = params.dataset, params.to_table or params.table
    stage = f"_runbook_tt_{params.table}"[:1000] + f"_{stamp(now)}"
    ctx.log(
        f"reading {ds}.{params.table} as of {_as_of(ts)} ({format_duration((now - ts).total_seconds())} ago) "
        f"into {ds}.{stage}"
    )
    try:
        rows = _restore_through(s, ds, params.table, stage, dest, ts)
    finally:
        try:
            s.client.delete_table(s.ref(ds, stage), not_found_ok=True, retry=s.retry, timeout=30)
        except Exception:  # noqa: BLE001 - the store is failing; the main error says why
            ctx.log(f"WARNING: could not drop the staging table {ds}.{stage}: drop it by hand")
    ctx.log(f"{ds}.{dest}: {rows:,} rows, as of {_as_of(ts)}")
    return TimeTravelOutputs(rows=rows, table=s.ref(ds, dest), as_of=_as_of(ts))


def _restore_through(s: Session, ds: str, table: str, stage: str, dest: str, ts: datetime) -> int:
    """Fill ``stage`` with ``table`` as of ``ts``, copy it over ``dest``; rows restored."""
    # A literal from a parsed datetime (no user text reaches the SQL); query parameters inside
    # FOR SYSTEM_TIME AS OF are not portable.
    literal = ts.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    s.query(f"CREATE TABLE {s.sql(ds, stage)} LIKE {s.sql(ds, table)}", f"create staging table {ds}.{stage}")
    job, _ = s.query(
        f"INSERT INTO {s.sql(ds, stage)} SELECT * FROM {s.sql(ds, table)} "
        f"FOR SYSTEM_TIME AS OF TIMESTAMP('{literal}')",
        f"read {ds}.{table} as of {_as_of(ts)}",
    )
    rows = job.num_dml_affected_rows
    s.ctx.log(
        f"{ds}.{stage}: {rows if rows is not None else '?'} rows as of {_as_of(ts)}; overwriting {ds}.{dest}"
    )
    what = f"overwrite {ds}.{dest} with its state as of {_as_of(ts)}"
    s.check_cancelled(what)
    copy = s.copy(s.ref(ds, stage), s.ref(ds, dest), what, write_disposition="WRITE_TRUNCATE")
    s.wait(copy, what)
    if rows is None:
        rows = rows_after_copies(s, ds, {dest: copy})[dest]
    return int(rows)
