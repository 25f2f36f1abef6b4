"""Bigtable actions: managed backups, restores, pruning, row counts, verification, logical copies.

The seed's Bigtable procedures, run for real through google-cloud-bigtable:

* ``bigtable.backup`` — ``gcloud bigtable backups create <table>_backup_<YYYYmmdd_HHMMSS>
  --retention-period 30d``, waiting for the long-running operation;
* ``bigtable.list_backups`` / ``bigtable.prune_backups`` — listing and the "> 30 days" cleanup
  (never the newest backup);
* ``bigtable.restore`` — ``gcloud bigtable instances tables restore``, refusing to overwrite an
  existing table unless ``replace: true``;
* ``bigtable.row_count`` / ``bigtable.verify_rows`` — integrity checks after a restore;
* ``bigtable.export_table`` / ``bigtable.import_table`` — a logical copy (every row, cell and
  timestamp, with a sha256 sidecar) that can be loaded into an instance in another region: the
  cross-region path when managed backups cannot leave their instance's region.

Instance, cluster and table default to the gcp store's ``bigtable_instance``,
``bigtable_cluster`` and ``bigtable_table`` (each may be per region: ``bigtable_instance_<region>``).
Destructive actions (restore, prune, import) need the table spelled out in the step so the
operator's typed confirmation names it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pydantic import Field, field_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.core.durations import check_duration, format_duration, parse_duration
from runbook.core.errors import ActionError
from runbook.stores import bigtable as bts
from runbook.stores import gcp

STORE = bts.STORE
EXPORT_FORMAT = "runbook-bigtable-export"
EXPORT_VERSION = 1
MIN_RETENTION = 6 * 3600  # Bigtable's limits on a backup's expire time
MAX_RETENTION = 90 * 86400
ID_PATTERN = r"^[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}$"
PROGRESS_EVERY = 5.0  # seconds between "N rows so far" lines
MUTATE_BATCH_ROWS = 500
MUTATE_BATCH_BYTES = 4 << 20
MUTATE_BATCH_CELLS = 50_000  # the service caps one MutateRows request at 100,000 mutations


# --- shared helpers --------------------------------------------------------------------------


_duration = check_duration


class _Location(ActionParams):
    """Where: instance and region (defaults from the gcp store)."""

    instance: str | None = Field(None, description="Bigtable instance (default: gcp bigtable_instance).")
    region: str | None = Field(
        None, description='"primary" (default), "secondary" or a region name; selects per-region settings.'
    )


class _Where:
    """Resolved location of one step: clients, names, and the unreachable-store budget."""

    def __init__(self, ctx: StepContext, instance: str | None, region: str | None) -> None:
        self.h, self.gs = bts.handle(ctx.environment, region)
        self.region = self.h.region
        inst = instance or self.gs.get("bigtable_instance", self.region)
        if not inst:
            raise ActionError(
                "No Bigtable instance given: set instance in the step or bigtable_instance in the gcp store."
            )
        self.instance = str(inst)
        self.budget = bts.rpc_timeout(self.gs, ctx.timeout)

    def table_id(self, table: str | None) -> str:
        got = table or self.gs.get("bigtable_table", self.region)
        if not got:
            raise ActionError(
                "No Bigtable table given: set table in the step or bigtable_table in the gcp store."
            )
        return str(got)

    def cluster(self, cluster: str | None) -> str | None:
        got = cluster or self.gs.get("bigtable_cluster", self.region)
        return str(got) if got else None

    def table_path(self, table: str) -> str:
        return self.h.table_path(self.instance, table)

    def where(self) -> str:
        return f"instance {self.instance} ({self.region})"

    def fail(self, exc: BaseException, what: str) -> ActionError:
        return _error(exc, what, self.gs)


def _error(exc: BaseException, what: str, gs: gcp.GcpSettings | None) -> ActionError:
    if isinstance(exc, ActionError):
        return exc
    if isinstance(exc, InterruptedError):
        return ActionError(f"Stopped by the operator while trying to {what}.")
    return gcp.translate(bts.unwrap(exc), STORE, what, gs)


class _Guard:
    """``with _Guard(w, "what"):`` turns client errors into one-sentence ActionErrors."""

    def __init__(self, where: _Where, what: str) -> None:
        self.where, self.what = where, what

    def __enter__(self) -> _Guard:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, ActionError) or not _is_store_error(exc):
            return False  # anything else is a bug here: keep its traceback for --debug
        raise self.where.fail(exc, self.what) from exc


def _is_store_error(exc: BaseException) -> bool:
    """Errors that come from the store or the connection to it (never from bugs in this module)."""
    import grpc
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return isinstance(
        exc, GoogleAPIError | GoogleAuthError | grpc.RpcError | ExceptionGroup | InterruptedError
    )


def _show(value: str | None, setting: str) -> str:
    """A param for describe(): its value, or where the default will come from."""
    return value if value else f"<gcp.{setting}>"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


class _Progress:
    """Logs "N rows so far" at most every few seconds."""

    def __init__(self, ctx: StepContext, what: str) -> None:
        self.ctx, self.what = ctx, what
        self.next = time.monotonic() + PROGRESS_EVERY

    def tick(self, n: int) -> None:
        if n % 1024 == 0:
            now = time.monotonic()
            if now >= self.next:
                self.ctx.log(f"{self.what}: {n} rows so far")
                self.next = now + PROGRESS_EVERY


def _retry_line(ctx: StepContext, what: str) -> Any:
    said: list[bool] = []

    def on_retry(exc: BaseException) -> None:
        if not said:
            said.append(True)
            ctx.log(f"{what}: store not answering ({type(exc).__name__}), retrying")

    return on_retry


def _keys_only_filter() -> Any:
    from google.cloud.bigtable.data import row_filters as rf

    return rf.RowFilterChain(filters=[rf.CellsRowLimitFilter(1), rf.StripValueTransformerFilter(True)])


def _count_rows(ctx: StepContext, w: _Where, table: str) -> int:
    progress = _Progress(ctx, f"counting {table}")
    n = 0
    for _ in bts.read_rows(
        w.h.table(w.instance, table),
        row_filter=_keys_only_filter(),
        budget=w.budget,
        cancelled=ctx.cancelled,
        on_retry=_retry_line(ctx, f"counting {table}"),
    ):
        n += 1
        progress.tick(n)
    return n


def _table_exists(w: _Where, table: str) -> bool:
    from google.api_core import exceptions
    from google.cloud.bigtable_admin_v2 import types

    try:
        w.h.admin.get_table(
            request={"name": w.table_path(table), "view": types.Table.View.NAME_ONLY},
            retry=bts.admin_retry(w.budget),
            timeout=w.budget,
        )
    except exceptions.NotFound:
        return False
    return True


def _delete_table(ctx: StepContext, w: _Where, table: str) -> None:
    ctx.log(f"deleting existing table {table} in {w.where()} (replace: true)")
    w.h.admin.delete_table(name=w.table_path(table), retry=bts.admin_retry(w.budget), timeout=w.budget)


def _wait_operation(ctx: StepContext, w: _Where, op: Any, what: str, timeout: float) -> Any:
    """Poll a long-running operation until done, the timeout, or the operator cancels."""
    start = time.monotonic()
    delay = 0.1
    said = start
    while not op.done(retry=bts.admin_retry(w.budget)):
        waited = time.monotonic() - start
        if waited > timeout:
            raise ActionError(
                f"{STORE} is still working on the operation to {what} after {format_duration(waited)}: "
                f"it continues in the background; check it with `gcloud bigtable operations list`."
            )
        if time.monotonic() - said >= PROGRESS_EVERY:
            ctx.log(f"waiting for the operation to {what} ({format_duration(waited)})")
            said = time.monotonic()
        if ctx.cancelled.wait(delay):
            raise ActionError(f"Stopped waiting for the operation to {what}: it continues in the background.")
        delay = min(delay * 1.5, 2.0)
    return op.result(retry=bts.admin_retry(w.budget))


class _Backup(NamedTuple):
    """One backup, as listing needs it (times in epoch seconds)."""

    name: str
    start: float
    expire: float
    size: int


def _list_backups(w: _Where, table: str, cluster: str | None) -> list[_Backup]:
    """Backups of ``table`` (every cluster unless one is given), newest first."""
    parent = w.h.cluster_path(w.instance, cluster or "-")
    source = w.table_path(table)
    pager = w.h.admin.list_backups(
        request={"parent": parent, "filter": f'source_table:"{source}"'},
        retry=bts.admin_retry(w.budget),
        timeout=w.budget,
    )
    found = []
    for page in pager.pages:
        # The raw protobuf messages: proto-plus wrappers cost more than the RPC for short lists.
        for b in type(page).pb(page).backups:
            # The filter is a "contains" match (product_stats also matches product_stats_v2).
            if b.source_table == source:
                start = b.start_time.seconds + b.start_time.nanos / 1e9
                expire = b.expire_time.seconds + b.expire_time.nanos / 1e9
                found.append(_Backup(b.name, start, expire, b.size_bytes))
    found.sort(key=lambda b: (b.start, b.name), reverse=True)
    return found


def _iso_ts(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _backup_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _family_json(families: Any) -> dict[str, Any]:
    from google.cloud.bigtable_admin_v2 import types

    return {
        name: json.loads(types.ColumnFamily.to_json(cf, indent=0)) for name, cf in sorted(families.items())
    }


# --- bigtable.backup -------------------------------------------------------------------------


class BackupParams(_Location):
    table: str | None = Field(None, description="Table to back up (default: gcp bigtable_table).")
    cluster: str | None = Field(
        None, description="Cluster that holds the backup (default: gcp bigtable_cluster)."
    )
    retention: str | int = Field("30d", description="How long the backup is kept (6h to 90d), e.g. 30d.")
    backup_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Default: <table>_backup_<YYYYmmdd_HHMMSS>."
    )
    timeout: str | int = Field("2h", description="How long to wait for the backup operation.")

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: Any) -> Any:
        _duration(v, "retention")
        if not MIN_RETENTION <= parse_duration(v) <= MAX_RETENTION:
            raise ValueError("retention must be between 6h and 90d (Bigtable's limits)")
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        return _duration(v, "timeout")


class BackupAction(BaseAction):
    name: ClassVar[str] = "bigtable.backup"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = (
        "Create a managed Bigtable backup of a table with a retention period and wait for it."
    )
    Params = BackupParams
    outputs: ClassVar[dict[str, str]] = {
        "backup": "Backup id, e.g. product_stats_backup_20250101_030000.",
        "name": "Full backup resource name.",
        "expire_time": "When Bigtable deletes it (UTC, ISO 8601).",
        "size_bytes": "Backup size reported by Bigtable.",
    }

    def target(self, params: BackupParams) -> str:
        return params.table or "<gcp.bigtable_table>"

    def describe(self, params: BackupParams) -> str:
        table = _show(params.table, "bigtable_table")
        bid = params.backup_id or f"{table}_backup_<YYYYmmdd_HHMMSS>"
        return (
            f"BigtableTableAdmin.CreateBackup(parent=instances/{_show(params.instance, 'bigtable_instance')}"
            f"/clusters/{_show(params.cluster, 'bigtable_cluster')}, backup_id={bid}, "
            f"source_table={table}, expire_time=now+{params.retention}) and wait for the operation"
        )

    def run(self, ctx: StepContext, params: BackupParams) -> dict[str, Any]:
        from google.cloud.bigtable_admin_v2 import types

        w = _Where(ctx, params.instance, params.region)
        table = w.table_id(params.table)
        cluster = w.cluster(params.cluster)
        if not cluster:
            raise ActionError(
                "No Bigtable cluster given: set cluster in the step or bigtable_cluster in the gcp store."
            )
        now = datetime.now(UTC)
        backup_id = params.backup_id or f"{table[:27]}_backup_{_stamp(now)}"  # ids are at most 50 chars
        expire = now + timedelta(seconds=parse_duration(params.retention))
        what = f"back up table {table} as {backup_id}"
        ctx.log(
            f"creating backup {backup_id} of {table} in {w.where()}, cluster {cluster}, expires {_iso(expire)}"
        )
        with _Guard(w, what):
            op = w.h.admin.create_backup(
                parent=w.h.cluster_path(w.instance, cluster),
                backup_id=backup_id,
                backup=types.Backup(source_table=w.table_path(table), expire_time=expire),
                retry=bts.admin_retry(w.budget),
                timeout=w.budget,
            )
            backup = _wait_operation(ctx, w, op, what, parse_duration(params.timeout))
        ctx.log(
            f"backup {backup_id} is ready ({backup.size_bytes} bytes, expires {_iso(backup.expire_time)})"
        )
        return {
            "backup": backup_id,
            "name": backup.name,
            "expire_time": _iso(backup.expire_time),
            "size_bytes": int(backup.size_bytes),
        }


# --- bigtable.list_backups -------------------------------------------------------------------


class ListBackupsParams(_Location):
    table: str | None = Field(None, description="Whose backups (default: gcp bigtable_table).")
    cluster: str | None = Field(None, description="Only this cluster's backups (default: every cluster).")
    max_age: str | int | None = Field(None, description="Fail when the newest backup is older, e.g. 24h.")
    require: bool = Field(False, description="Fail when there is no backup at all.")

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: Any) -> Any:
        return _duration(v, "max_age")


class ListBackupsAction(BaseAction):
    name: ClassVar[str] = "bigtable.list_backups"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "List a table's Bigtable backups, newest first; optionally check the newest one's age."
    )
    Params = ListBackupsParams
    outputs: ClassVar[dict[str, str]] = {
        "names": "Backup ids, newest first.",
        "latest": "Newest backup id, or empty.",
        "latest_name": "Newest backup's full resource name, or empty.",
        "count": "How many backups.",
    }

    def target(self, params: ListBackupsParams) -> str:
        return params.table or "<gcp.bigtable_table>"

    def describe(self, params: ListBackupsParams) -> str:
        return (
            f"BigtableTableAdmin.ListBackups(parent=instances/{_show(params.instance, 'bigtable_instance')}"
            f"/clusters/{params.cluster or '-'}, filter=source_table:{_show(params.table, 'bigtable_table')})"
        )

    def run(self, ctx: StepContext, params: ListBackupsParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        table = w.table_id(params.table)
        with _Guard(w, f"list the backups of table {table}"):
            backups = _list_backups(w, table, params.cluster)
        now = time.time()
        for b in backups:
            ctx.log(
                f"{_backup_id(b.name)}  created {_iso_ts(b.start)} ({format_duration(now - b.start)} ago)  "
                f"expires {_iso_ts(b.expire)}  {b.size} bytes"
            )
        ctx.log(f"{len(backups)} backup(s) of {table} in {w.where()}")
        if not backups and (params.require or params.max_age is not None):
            raise ActionError(f"Table {table} has no Bigtable backup in {w.where()}.")
        if backups and params.max_age is not None:
            age = now - backups[0].start
            if age > parse_duration(params.max_age):
                raise ActionError(
                    f"The newest backup of {table}, {_backup_id(backups[0].name)}, is {format_duration(age)} old, "
                    f"older than {params.max_age}."
                )
        return {
            "names": [_backup_id(b.name) for b in backups],
            "latest": _backup_id(backups[0].name) if backups else "",
            "latest_name": backups[0].name if backups else "",
            "count": len(backups),
        }


# --- bigtable.restore ------------------------------------------------------------------------


class RestoreParams(_Location):
    backup: str = Field(
        description='Backup id, full backup name, or "latest" (newest backup of source_table).'
    )
    table: str = Field(pattern=ID_PATTERN, description="Table to restore into.")
    source_table: str | None = Field(
        None, description='For backup "latest": whose backups (default: gcp bigtable_table).'
    )
    cluster: str | None = Field(
        None, description="Cluster of the backup (default: gcp bigtable_cluster, else searched)."
    )
    replace: bool = Field(False, description="Delete the table first if it exists (otherwise refuse).")
    timeout: str | int = Field("2h", description="How long to wait for the restore operation.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        return _duration(v, "timeout")


class RestoreAction(BaseAction):
    name: ClassVar[str] = "bigtable.restore"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Restore a Bigtable backup into a table (replacing it only with replace: true)."
    Params = RestoreParams
    outputs: ClassVar[dict[str, str]] = {
        "table": "The restored table id.",
        "rows": "Rows in the restored table.",
        "backup": "The backup restored from (full name).",
    }

    def target(self, params: RestoreParams) -> str:
        return params.table

    def describe(self, params: RestoreParams) -> str:
        pre = f"BigtableTableAdmin.DeleteTable({params.table}) if it exists, then " if params.replace else ""
        return (
            f"{pre}BigtableTableAdmin.RestoreTable(parent=instances/{_show(params.instance, 'bigtable_instance')}, "
            f"table_id={params.table}, backup={params.backup}) and wait for the operation"
        )

    def _backup_name(self, ctx: StepContext, w: _Where, params: RestoreParams) -> str:
        if "/" in params.backup:
            return params.backup
        cluster = w.cluster(params.cluster)
        if params.backup == "latest":
            source = w.table_id(params.source_table)
            found = _list_backups(w, source, params.cluster)
            if not found:
                raise ActionError(f"Table {source} has no Bigtable backup in {w.where()} to restore from.")
            ctx.log(
                f"latest backup of {source}: {_backup_id(found[0].name)} (created {_iso_ts(found[0].start)})"
            )
            return str(found[0].name)
        if cluster:
            return f"{w.h.cluster_path(w.instance, cluster)}/backups/{params.backup}"
        pager = w.h.admin.list_backups(
            parent=w.h.cluster_path(w.instance, "-"), retry=bts.admin_retry(w.budget), timeout=w.budget
        )
        for b in pager:
            if _backup_id(b.name) == params.backup:
                return str(b.name)
        raise ActionError(f"No Bigtable backup named {params.backup} in {w.where()}.")

    def run(self, ctx: StepContext, params: RestoreParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        table = params.table
        with _Guard(w, f"find backup {params.backup}"):
            backup = self._backup_name(ctx, w, params)
        what = f"restore backup {_backup_id(backup)} into table {table}"
        with _Guard(w, what):
            if _table_exists(w, table):
                if not params.replace:
                    raise ActionError(
                        f"Table {table} already exists in {w.where()}: restore into a new table name, "
                        f"or set replace: true to delete it first."
                    )
                _delete_table(ctx, w, table)
            ctx.log(f"restoring {backup} into {table} in {w.where()}")
            op = w.h.admin.restore_table(
                request={"parent": w.h.instance_path(w.instance), "table_id": table, "backup": backup},
                retry=bts.admin_retry(w.budget),
                timeout=w.budget,
            )
            _wait_operation(ctx, w, op, what, parse_duration(params.timeout))
        with _Guard(w, f"count the rows of restored table {table}"):
            rows = _count_rows(ctx, w, table)
        ctx.log(f"restored {table}: {rows} rows")
        return {"table": table, "rows": rows, "backup": backup}


# --- bigtable.prune_backups ------------------------------------------------------------------


class PruneParams(_Location):
    table: str = Field(description="Whose backups to prune.")
    older_than: str | int = Field("30d", description="Delete backups created longer ago than this.")
    keep: int = Field(1, ge=1, description="Always keep this many newest backups (at least 1).")
    cluster: str | None = Field(None, description="Only this cluster's backups (default: every cluster).")

    @field_validator("older_than")
    @classmethod
    def _age(cls, v: Any) -> Any:
        return _duration(v, "older_than")


class PruneBackupsAction(BaseAction):
    name: ClassVar[str] = "bigtable.prune_backups"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = "Delete a table's Bigtable backups older than N days, never the newest."
    Params = PruneParams
    outputs: ClassVar[dict[str, str]] = {
        "deleted": "Deleted backup ids.",
        "kept": "Remaining backup ids, newest first.",
    }

    def target(self, params: PruneParams) -> str:
        return params.table

    def describe(self, params: PruneParams) -> str:
        return (
            f"BigtableTableAdmin.ListBackups(source_table={params.table}) then DeleteBackup for each created "
            f"more than {params.older_than} ago, keeping the newest {params.keep}"
        )

    def run(self, ctx: StepContext, params: PruneParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        with _Guard(w, f"list the backups of table {params.table}"):
            backups = _list_backups(w, params.table, params.cluster)
        cutoff = time.time() - parse_duration(params.older_than)
        protected, rest = backups[: params.keep], backups[params.keep :]
        doomed = [b for b in rest if b.start < cutoff]
        kept = [b for b in backups if b not in doomed]
        for b in protected:
            if b.start < cutoff:
                ctx.log(
                    f"keeping {_backup_id(b.name)} although older than {params.older_than}: it is among the newest {params.keep}"
                )
        deleted: list[str] = []
        for b in doomed:
            bid = _backup_id(b.name)
            if ctx.cancelled.is_set():
                raise ActionError(
                    f"Stopped by the operator after deleting {len(deleted)} backup(s) of {params.table}."
                )
            with _Guard(w, f"delete backup {bid}"):
                w.h.admin.delete_backup(name=b.name, retry=bts.admin_retry(w.budget), timeout=w.budget)
            ctx.log(f"deleted {bid} (created {_iso_ts(b.start)})")
            deleted.append(bid)
        ctx.log(f"pruned {len(deleted)} backup(s) of {params.table}; {len(kept)} kept")
        return {"deleted": deleted, "kept": [_backup_id(b.name) for b in kept]}


# --- bigtable.row_count ----------------------------------------------------------------------


class RowCountParams(_Location):
    table: str | None = Field(None, description="Table (default: gcp bigtable_table).")
    expected: int | None = Field(None, ge=0, description="Fail unless exactly this many rows.")
    min_rows: int | None = Field(None, ge=0, description="Fail when fewer rows.")


class RowCountAction(BaseAction):
    name: ClassVar[str] = "bigtable.row_count"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "Count a Bigtable table's rows (keys-only scan); optionally check the count."
    Params = RowCountParams
    outputs: ClassVar[dict[str, str]] = {"rows": "Number of rows."}

    def target(self, params: RowCountParams) -> str:
        return params.table or "<gcp.bigtable_table>"

    def describe(self, params: RowCountParams) -> str:
        return (
            f"Bigtable.ReadRows(table={_show(params.table, 'bigtable_table')}, "
            f"filter=cells_per_row_limit(1)+strip_value) and count"
        )

    def run(self, ctx: StepContext, params: RowCountParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        table = w.table_id(params.table)
        with _Guard(w, f"count the rows of table {table}"):
            rows = _count_rows(ctx, w, table)
        ctx.log(f"{table}: {rows} rows")
        if params.expected is not None and rows != params.expected:
            raise ActionError(f"Table {table} has {rows} rows, expected {params.expected}.")
        if params.min_rows is not None and rows < params.min_rows:
            raise ActionError(f"Table {table} has {rows} rows, fewer than {params.min_rows}.")
        return {"rows": rows}


# --- bigtable.verify_rows --------------------------------------------------------------------


class VerifyParams(_Location):
    table: str = Field(description="The table to check (e.g. a restored or imported copy).")
    reference_table: str | None = Field(
        None, description="The table it must equal (default: gcp bigtable_table)."
    )
    reference_instance: str | None = Field(
        None, description="Default: the reference region's bigtable_instance."
    )
    reference_region: str | None = Field(None, description="Default: the same region as table.")
    sample: int = Field(100, ge=0, description="Rows to compare; 0 compares every row of both tables.")
    fail: bool = Field(True, description="Fail on a mismatch (otherwise only report it).")


def _row_cells(row: Any) -> list[tuple[str, bytes, int, bytes]]:
    return sorted((c.family, c.qualifier, c.timestamp_micros, c.value) for c in row.cells)


def _difference(ref: list[tuple[str, bytes, int, bytes]], got: list[tuple[str, bytes, int, bytes]]) -> str:
    """Short words for how two rows' cells differ (the first differing column)."""

    def cols(cells: list[tuple[str, bytes, int, bytes]]) -> dict[tuple[str, bytes], list[tuple[int, bytes]]]:
        out: dict[tuple[str, bytes], list[tuple[int, bytes]]] = {}
        for fam, q, ts, v in cells:
            out.setdefault((fam, q), []).append((ts, v))
        return out

    a, b = cols(ref), cols(got)
    for col in sorted(set(a) | set(b)):
        name = f"{col[0]}:{_key_text(col[1])}"
        if col not in b:
            return f"lacks column {name}"
        if col not in a:
            return f"has an extra column {name}"
        if len(a[col]) != len(b[col]):
            return f"has {len(b[col])} versions of {name}, the reference {len(a[col])}"
        if a[col] != b[col]:
            return f"has a different value or timestamp in {name}"
    return "differs"


class VerifyRowsAction(BaseAction):
    name: ClassVar[str] = "bigtable.verify_rows"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "Compare sampled rows (every cell and timestamp) of a table against a reference table."
    )
    Params = VerifyParams
    outputs: ClassVar[dict[str, str]] = {
        "sampled": "Rows compared.",
        "mismatches": "Rows that differ or are missing.",
        "first_mismatch": "Key of the first differing row, or empty.",
    }

    def target(self, params: VerifyParams) -> str:
        return params.table

    def describe(self, params: VerifyParams) -> str:
        how = "every row" if params.sample == 0 else f"{params.sample} rows sampled via SampleRowKeys"
        ref = params.reference_table or "<gcp.bigtable_table>"
        where = f" in {params.reference_region}" if params.reference_region else ""
        return f"Bigtable.ReadRows on {params.table} and {ref}{where}: compare {how}, all cells"

    def run(self, ctx: StepContext, params: VerifyParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        ref_region = params.reference_region or w.region
        rw = _Where(ctx, params.reference_instance, ref_region)
        reference = rw.table_id(params.reference_table)
        table = params.table
        if (rw.instance, rw.region, reference) == (w.instance, w.region, table):
            raise ActionError(
                f"verify_rows would compare table {table} with itself: name a different reference_table."
            )
        ctx.log(f"comparing {table} in {w.where()} with {reference} in {rw.where()}")
        with _Guard(rw, f"verify table {table} against {reference}"):
            if params.sample == 0:
                sampled, bad = self._compare_all(ctx, w, table, rw, reference)
            else:
                sampled, bad = self._compare_sample(ctx, w, table, rw, reference, params.sample)
        first = bad[0] if bad else None
        ctx.log(f"{sampled} row(s) compared, {len(bad)} mismatch(es)")
        if first is not None:
            ctx.log(f"first mismatch: row {_key_text(first[0])} {first[1]}")
            if params.fail:
                raise ActionError(
                    f"Table {table} does not match {reference}: row {_key_text(first[0])} {first[1]} "
                    f"({len(bad)} of {sampled} compared rows differ)."
                )
        return {
            "sampled": sampled,
            "mismatches": len(bad),
            "first_mismatch": _key_text(first[0]) if first else "",
        }

    def _stream(
        self, ctx: StepContext, w: _Where, table: str, keys: list[bytes] | None = None
    ) -> Iterator[Any]:
        return bts.read_rows(
            w.h.table(w.instance, table),
            row_keys=keys,
            budget=w.budget,
            cancelled=ctx.cancelled,
            on_retry=_retry_line(ctx, f"reading {table}"),
        )

    def _compare_all(
        self, ctx: StepContext, w: _Where, table: str, rw: _Where, reference: str
    ) -> tuple[int, list[tuple[bytes, str]]]:
        """Merge-walk both tables in key order; every row of either side is compared."""
        bad: list[tuple[bytes, str]] = []
        a_it, b_it = self._stream(ctx, rw, reference), self._stream(ctx, w, table)
        a, b = next(a_it, None), next(b_it, None)
        n = 0
        progress = _Progress(ctx, f"comparing {table}")
        while a is not None or b is not None:
            n += 1
            progress.tick(n)
            if b is None or (a is not None and a.row_key < b.row_key):
                bad.append((a.row_key, f"is missing from {table}"))
                a = next(a_it, None)
            elif a is None or b.row_key < a.row_key:
                bad.append((b.row_key, f"is in {table} but not in the reference"))
                b = next(b_it, None)
            else:
                ra, rb = _row_cells(a), _row_cells(b)
                if ra != rb:
                    bad.append((a.row_key, _difference(ra, rb)))
                a, b = next(a_it, None), next(b_it, None)
        return n, bad

    def _compare_sample(
        self, ctx: StepContext, w: _Where, table: str, rw: _Where, reference: str, sample: int
    ) -> tuple[int, list[tuple[bytes, str]]]:
        keys = self._sample_keys(ctx, rw, reference, sample)
        if not keys:
            # An empty reference: the copy must be empty too.
            extra = next(
                bts.read_rows(
                    w.h.table(w.instance, table), row_filter=_keys_only_filter(), limit=1, budget=w.budget
                ),
                None,
            )
            return 0, [
                (extra.row_key, f"is in {table} but the reference is empty")
            ] if extra is not None else []
        ref_rows = {r.row_key: _row_cells(r) for r in self._stream(ctx, rw, reference, keys)}
        got_rows = {r.row_key: _row_cells(r) for r in self._stream(ctx, w, table, keys)}
        bad: list[tuple[bytes, str]] = []
        for key in keys:
            ref_cells = ref_rows.get(key)
            got = got_rows.get(key)
            if ref_cells is None:
                continue  # deleted from the reference since it was sampled
            if got is None:
                bad.append((key, f"is missing from {table}"))
            elif got != ref_cells:
                bad.append((key, _difference(ref_cells, got)))
        return len(keys), bad

    def _sample_keys(self, ctx: StepContext, rw: _Where, reference: str, sample: int) -> list[bytes]:
        """``sample`` keys spread over the reference table.

        SampleRowKeys gives tablet boundaries of big tables (one read per boundary finds a real
        key there); a table that is one tablet is small, so a keys-only scan picks evenly spaced keys.
        """
        ref = rw.h.table(rw.instance, reference)
        bounds = [k for k, _ in ref.sample_row_keys(operation_timeout=rw.budget) if k]
        if len(bounds) + 1 >= sample:
            step = (len(bounds) + 1) / sample
            starts = [([b""] + bounds)[int(i * step)] for i in range(sample)]
            keys: list[bytes] = []
            for start in starts:
                row = next(
                    bts.read_rows(
                        ref,
                        start_after=start or None,
                        row_filter=_keys_only_filter(),
                        limit=1,
                        budget=rw.budget,
                    ),
                    None,
                )
                if row is not None:
                    keys.append(row.row_key)
            return sorted(set(keys))
        all_keys = [
            r.row_key
            for r in bts.read_rows(
                ref, row_filter=_keys_only_filter(), budget=rw.budget, cancelled=ctx.cancelled
            )
        ]
        if len(all_keys) <= sample:
            return all_keys
        if sample == 1:
            return [all_keys[-1]]
        # Evenly spaced, first and last key included (edges are where truncated copies differ).
        last = len(all_keys) - 1
        return [all_keys[round(i * last / (sample - 1))] for i in range(sample)]


# --- bigtable.export_table / import_table ----------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Writes through to a file while hashing every byte (sha256 without a second read)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sha.update(b)
        self.size += len(b)
        self.raw.write(b)
        return len(b)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


class ExportParams(_Location):
    table: str | None = Field(None, description="Table to export (default: gcp bigtable_table).")
    path: str | None = Field(
        None, description="Output file (default: DIRECTORY/<table>_export_<YYYYmmdd_HHMMSS>.jsonl.gz)."
    )
    directory: str | None = Field(
        None,
        description="Output directory (default: the files store's bigtable dir, else the step's workdir).",
    )
    compress: bool = Field(True, description="gzip the file (with an explicit path, its .gz suffix decides).")


class ExportTableAction(BaseAction):
    name: ClassVar[str] = "bigtable.export_table"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = (
        "Export every row, cell and timestamp of a Bigtable table to a JSON-lines file with a sha256 file."
    )
    Params = ExportParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The export file.",
        "rows": "Rows written.",
        "cells": "Cells written.",
        "sha256": "Hex sha256 of the file (also in PATH.sha256).",
        "size": "Bytes.",
    }

    def target(self, params: ExportParams) -> str:
        return params.path or params.table or "<gcp.bigtable_table>"

    def describe(self, params: ExportParams) -> str:
        table = _show(params.table, "bigtable_table")
        out = params.path or f"{params.directory or '<backups>'}/{table}_export_<YYYYmmdd_HHMMSS>.jsonl.gz"
        return f"BigtableTableAdmin.GetTable({table}) + Bigtable.ReadRows(all cells) > {out} (+ {out}.sha256)"

    def _path(self, ctx: StepContext, params: ExportParams, table: str) -> Path:
        if params.path:
            return Path(params.path)
        directory = params.directory or ctx.environment.stores.get("files", {}).get("bigtable") or ctx.workdir
        suffix = ".jsonl.gz" if params.compress else ".jsonl"
        return Path(directory) / f"{table}_export_{_stamp()}{suffix}"

    def run(self, ctx: StepContext, params: ExportParams) -> dict[str, Any]:
        w = _Where(ctx, params.instance, params.region)
        table = w.table_id(params.table)
        path = self._path(ctx, params, table)
        compress = params.compress if not params.path else path.suffix == ".gz"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ActionError(f"Cannot create the export directory {path.parent}: {exc.strerror}.") from None
        tmp = path.with_name(f".{path.name}.incomplete")
        what = f"export table {table}"
        ctx.log(f"exporting {table} from {w.where()} to {path}")
        rows = cells = 0
        try:
            with _Guard(w, what):
                schema = w.h.admin.get_table(
                    name=w.table_path(table), retry=bts.admin_retry(w.budget), timeout=w.budget
                )
                header = {
                    "format": EXPORT_FORMAT,
                    "version": EXPORT_VERSION,
                    "project": w.h.project,
                    "instance": w.instance,
                    "region": w.region,
                    "table": table,
                    "exported_at": _iso(datetime.now(UTC)),
                    "column_families": _family_json(schema.column_families),
                }
                # Exports hold the table's data: readable by the owner only.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(fd, "wb") as raw:
                    hw = _HashingWriter(raw)
                    # mtime=0: the same table content gives the same bytes (and sha256).
                    sink: Any = (
                        gzip.GzipFile(fileobj=hw, mode="wb", compresslevel=6, mtime=0) if compress else hw
                    )
                    buf = io.BufferedWriter(sink, buffer_size=1 << 20)
                    buf.write(json.dumps(header, sort_keys=True).encode() + b"\n")
                    ctx.log(
                        f"reading every row of {table} ({len(header['column_families'])} column families)"
                    )
                    progress = _Progress(ctx, f"exporting {table}")
                    for row in bts.read_rows(
                        w.h.table(w.instance, table),
                        budget=w.budget,
                        cancelled=ctx.cancelled,
                        on_retry=_retry_line(ctx, f"exporting {table}"),
                    ):
                        line = {
                            "k": _b64(row.row_key),
                            "c": [
                                [c.family, _b64(c.qualifier), c.timestamp_micros, _b64(c.value)]
                                for c in row.cells
                            ],
                        }
                        buf.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                        rows += 1
                        cells += len(row.cells)
                        progress.tick(rows)
                    buf.write(json.dumps({"end": True, "rows": rows, "cells": cells}).encode() + b"\n")
                    buf.flush()
                    buf.detach()  # closing the buffer must not close the hashing writer
                    if compress:
                        sink.close()  # writes the gzip trailer through the hashing writer
                    raw.flush()
                    os.fsync(raw.fileno())
            digest = hw.sha.hexdigest()
            os.replace(tmp, path)
            sidecar = Path(f"{path}.sha256")
            side_tmp = sidecar.with_name(f".{sidecar.name}.tmp")
            side_tmp.write_text(f"{digest}  {path.name}\n")
            os.replace(side_tmp, sidecar)
        except OSError as exc:
            raise ActionError(f"Cannot write the export {path}: {exc.strerror or exc}.") from None
        finally:
            tmp.unlink(missing_ok=True)
        ctx.log(f"exported {rows} rows, {cells} cells to {path} ({hw.size} bytes, sha256 {digest})")
        return {"path": str(path), "rows": rows, "cells": cells, "sha256": digest, "size": hw.size}


class ImportParams(_Location):
    path: str = Field(description="An export written by bigtable.export_table (its PATH.sha256 must match).")
    table: str = Field(pattern=ID_PATTERN, description="Table to create and fill.")
    replace: bool = Field(False, description="Delete the table first if it exists (otherwise refuse).")
    checksum_file: str | None = Field(None, description="Default: PATH.sha256.")


def _open_export(path: Path) -> Any:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115 - returned


class ImportTableAction(BaseAction):
    name: ClassVar[str] = "bigtable.import_table"
    # Destructive although a plain import only creates a table: replace: true deletes one, and an
    # action's effect cannot depend on its params.
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = (
        "Create a table (same column families) from a bigtable.export_table file and write every row."
    )
    Params = ImportParams
    outputs: ClassVar[dict[str, str]] = {
        "table": "The table written.",
        "rows": "Rows written.",
        "cells": "Cells written.",
    }

    def target(self, params: ImportParams) -> str:
        return params.table

    def describe(self, params: ImportParams) -> str:
        pre = f"DeleteTable({params.table}) if it exists, " if params.replace else ""
        return (
            f"sha256sum -c {params.checksum_file or params.path + '.sha256'}, {pre}BigtableTableAdmin.CreateTable("
            f"instances/{_show(params.instance, 'bigtable_instance')}{' in ' + params.region if params.region else ''}, "
            f"table_id={params.table}, families from the file) + Bigtable.MutateRows(every row of {params.path})"
        )

    def _verify(self, ctx: StepContext, path: Path, checksum_file: str | None) -> None:
        from runbook.actions.support.fs import sha256_file

        if not path.is_file():
            raise ActionError(f"Export file not found: {path}.")
        sidecar = Path(checksum_file or f"{path}.sha256")
        if not sidecar.is_file():
            raise ActionError(
                f"No checksum file for {path} (expected {sidecar}): refusing to import an unverified export."
            )
        words = sidecar.read_text(encoding="utf-8", errors="replace").split()
        expected = words[0].lower() if words else ""
        actual = sha256_file(path, ctx.cancelled)
        if actual != expected:
            raise ActionError(
                f"Checksum mismatch for {path}: the file does not match {sidecar.name}; do not import it."
            )
        ctx.log(f"{path}: sha256 OK ({actual})")

    def run(self, ctx: StepContext, params: ImportParams) -> dict[str, Any]:
        from google.cloud.bigtable_admin_v2 import types

        path = Path(params.path)
        try:
            self._verify(ctx, path, params.checksum_file)
        except OSError as exc:
            raise ActionError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        w = _Where(ctx, params.instance, params.region)
        table = params.table
        what = f"import {path.name} into table {table}"
        rows = cells = 0
        try:
            with _open_export(path) as f, _Guard(w, what):
                header = json.loads(f.readline() or b"{}")
                if header.get("format") != EXPORT_FORMAT or header.get("version") != EXPORT_VERSION:
                    raise ActionError(
                        f"{path} is not a bigtable.export_table file (version {EXPORT_VERSION})."
                    )
                if _table_exists(w, table):
                    if not params.replace:
                        raise ActionError(
                            f"Table {table} already exists in {w.where()}: import into a new table name, "
                            f"or set replace: true to delete it first."
                        )
                    _delete_table(ctx, w, table)
                families = {
                    name: types.ColumnFamily.from_json(json.dumps(spec), ignore_unknown_fields=True)
                    for name, spec in header.get("column_families", {}).items()
                }
                ctx.log(
                    f"creating {table} in {w.where()} with families {', '.join(families) or '(none)'} "
                    f"(exported from {header.get('table')} in {header.get('instance')}, {header.get('region')})"
                )
                w.h.admin.create_table(
                    parent=w.h.instance_path(w.instance),
                    table_id=table,
                    table=types.Table(column_families=families),
                    retry=bts.admin_retry(w.budget),
                    timeout=w.budget,
                )
                rows, cells, trailer = self._write_rows(ctx, w, table, f)
            if trailer is None or trailer.get("rows") != rows or trailer.get("cells") != cells:
                raise ActionError(
                    f"{path} is truncated: table {table} is incomplete; re-export and import with replace: true."
                )
        except (ValueError, OSError) as exc:
            raise ActionError(f"Cannot read {path} ({exc}): table {table} may be incomplete.") from None
        ctx.log(f"imported {rows} rows, {cells} cells into {table} in {w.where()}")
        return {"table": table, "rows": rows, "cells": cells}

    def _write_rows(
        self, ctx: StepContext, w: _Where, table: str, f: Any
    ) -> tuple[int, int, dict[str, Any] | None]:
        from google.cloud.bigtable.data import RowMutationEntry, SetCell

        target = w.h.table(w.instance, table)
        progress = _Progress(ctx, f"importing into {table}")
        batch: list[Any] = []
        batch_bytes = batch_cells = rows = cells = 0
        trailer: dict[str, Any] | None = None

        def flush() -> None:
            nonlocal batch, batch_bytes, batch_cells
            if batch:
                # Retried only while the store is unreachable: rewriting the same cells is idempotent.
                target.bulk_mutate_rows(batch, operation_timeout=max(w.budget, 30.0))
            batch, batch_bytes, batch_cells = [], 0, 0

        for raw in f:
            line = json.loads(raw)
            if "end" in line:
                trailer = line
                break
            key = base64.b64decode(line["k"])
            muts = [
                SetCell(fam, base64.b64decode(q), base64.b64decode(v), timestamp_micros=ts)
                for fam, q, ts, v in line["c"]
            ]
            if not muts:
                continue
            batch.append(RowMutationEntry(key, muts))
            batch_bytes += len(raw)
            batch_cells += len(muts)
            rows += 1
            cells += len(muts)
            progress.tick(rows)
            if (
                len(batch) >= MUTATE_BATCH_ROWS
                or batch_bytes >= MUTATE_BATCH_BYTES
                or batch_cells >= MUTATE_BATCH_CELLS
            ):
                if ctx.cancelled.is_set():
                    raise InterruptedError("cancelled")
                flush()
        flush()
        return rows, cells, trailer


ACTIONS = [
    BackupAction,
    ListBackupsAction,
    RestoreAction,
    PruneBackupsAction,
    RowCountAction,
    VerifyRowsAction,
    ExportTableAction,
    ImportTableAction,
]

__all__ = ["ACTIONS", "EXPORT_FORMAT"]
