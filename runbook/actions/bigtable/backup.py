"""Managed backups: ``bigtable.backup`` (create one and wait) and ``bigtable.list_backups``.

``bigtable.backup`` is the seed's ``gcloud bigtable backups create <table>_backup_<YYYYmmdd_HHMMSS>
--retention-period 30d`` (UTC in the name), waiting for the long-running operation.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from runbook.actions.bigtable.admin import list_backups_of, wait_operation
from runbook.actions.bigtable.location import ID_PATTERN, LocationParams, Where, backup_id, show
from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, stamp, utc_now

MIN_RETENTION = 6 * 3600  # Bigtable's limits on a backup's expire time
MAX_RETENTION = 90 * 86400

# --- bigtable.backup -------------------------------------------------------------------------


class BackupParams(LocationParams):
    table: str | None = Field(None, description="Table to back up (default: gcp bigtable_table).")
    cluster: str | None = None
    """Cluster that holds the backup (default: gcp bigtable_cluster)."""
    retention: Duration = Field("30d", description="How long the backup is kept (6h to 90d), e.g. 30d.")
    backup_id: str | None = Field(None, pattern=ID_PATTERN)
    """Default: <table>_backup_<YYYYmmdd_HHMMSS>."""
    timeout: Duration = Field("2h", description="How long to wait for the backup operation.")

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: str | int | float) -> str | int | float:
        if not MIN_RETENTION <= seconds(v) <= MAX_RETENTION:
            raise ValueError("retention must be between 6h and 90d (Bigtable's limits)")
        return v


class BackupOutputs(ActionOutputs):
    backup: str
    """Backup id, e.g. product_stats_backup_20250101_030000."""
    name: str
    """Full backup resource name."""
    expire_time: str
    """When Bigtable deletes it (UTC, ISO 8601)."""
    size_bytes: int
    """Backup size reported by Bigtable."""


def _cluster(p: LocationParams, cluster: str) -> str:
    """A cluster's path as describe() shows it."""
    return f"instances/{show(p.instance, 'bigtable_instance')}/clusters/{cluster}"


def _describe_backup(p: BackupParams) -> str:
    table = show(p.table, "bigtable_table")
    bid = p.backup_id or f"{table}_backup_<YYYYmmdd_HHMMSS>"
    return (
        f"BigtableTableAdmin.CreateBackup(parent={_cluster(p, show(p.cluster, 'bigtable_cluster'))}, "
        f"backup_id={bid}, source_table={table}, expire_time=now+{p.retention}) and wait for the operation"
    )


@action("bigtable.backup", Effect.MUTATING,
        "Create a managed Bigtable backup of a table with a retention period and wait for it.",
        target=lambda p: show(p.table, "bigtable_table"), describe=_describe_backup)
def backup(ctx: StepContext, params: BackupParams) -> BackupOutputs:
    from google.cloud.bigtable_admin_v2 import types

    w, table = Where.for_table(ctx, params, params.table)
    cluster = w.cluster(params.cluster)
    if not cluster:
        raise ActionError(
            "No Bigtable cluster given: set cluster in the step or bigtable_cluster in the gcp store."
        )
    now = utc_now()
    bid = params.backup_id or f"{table[:27]}_backup_{stamp(now)}"  # ids are at most 50 chars
    expire = now + timedelta(seconds=seconds(params.retention))
    what = f"back up table {table} as {bid}"
    ctx.log(f"creating backup {bid} of {table} in {w.where()}, cluster {cluster}, expires {iso_z(expire)}")
    with w.guard(what):
        op = w.h.admin.create_backup(
            parent=w.h.cluster_path(w.instance, cluster),
            backup_id=bid,
            backup=types.Backup(source_table=w.table_path(table), expire_time=expire),
            **w.rpc,
        )
        done = wait_operation(ctx, w, op, what, seconds(params.timeout))
    ctx.log(f"backup {bid} is ready ({done.size_bytes} bytes, expires {iso_z(done.expire_time)})")
    return BackupOutputs(
        backup=bid, name=done.name, expire_time=iso_z(done.expire_time), size_bytes=int(done.size_bytes)
    )


# --- bigtable.list_backups -------------------------------------------------------------------


class ListBackupsParams(LocationParams):
    table: str | None = Field(None, description="Whose backups (default: gcp bigtable_table).")
    cluster: str | None = Field(None, description="Only this cluster's backups (default: every cluster).")
    max_age: Duration | None = Field(None, description="Fail when the newest backup is older, e.g. 24h.")
    require: bool = Field(False, description="Fail when there is no backup at all.")


class ListBackupsOutputs(ActionOutputs):
    names: list[str]
    """Backup ids, newest first."""
    latest: str
    """Newest backup id, or empty."""
    latest_name: str
    """Newest backup's full resource name, or empty."""
    count: int
    """How many backups."""


def _describe_list(p: ListBackupsParams) -> str:
    parent, source = _cluster(p, p.cluster or "-"), show(p.table, "bigtable_table")
    return f"BigtableTableAdmin.ListBackups(parent={parent}, filter=source_table:{source})"


@action("bigtable.list_backups", Effect.READ_ONLY,
        "List a table's Bigtable backups, newest first; optionally check the newest one's age.",
        target=lambda p: show(p.table, "bigtable_table"), describe=_describe_list)
def list_backups(ctx: StepContext, params: ListBackupsParams) -> ListBackupsOutputs:
    w, table = Where.for_table(ctx, params, params.table)
    backups = list_backups_of(w, table, params.cluster)
    now = utc_now()
    for b in backups:
        ctx.log(
            f"{backup_id(b.name)}  created {iso_z(b.start)} "
            f"({format_duration((now - b.start).total_seconds())} ago)  "
            f"expires {iso_z(b.expire)}  {b.size} bytes"
        )
    ctx.log(f"{len(backups)} backup(s) of {table} in {w.where()}")
    if not backups and (params.require or params.max_age is not None):
        raise ActionError(f"Table {table} has no Bigtable backup in {w.where()}.")
    if backups and params.max_age is not None:
        age = (now - backups[0].start).total_seconds()
        if age > seconds(params.max_age):
            raise ActionError(
                f"The newest backup of {table}, {backup_id(backups[0].name)}, is {format_duration(age)} old, "
                f"older than {params.max_age}."
            )
    newest = backups[0].name if backups else ""
    return ListBackupsOutputs(
        names=[backup_id(b.name) for b in backups],
        latest=backup_id(newest) if newest else "",
        latest_name=newest,
        count=len(backups),
    )
