"""The backup RPCs: CreateBackup, CopyBackup, GetBackup, UpdateBackup, DeleteBackup, ListBackups
and RestoreTable.

A backup's rows live in the emulator as a hidden table ``_backup__<cluster>__<backup_id>`` in the
backup's instance (same column families, every cell with its timestamp). Copying happens during
the call; the long-running operation a call returns is already finished, and done on first poll.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from runbook.sandbox.bigtable_backup.filters import backup_fields, parse_filter, sort_backups
from runbook.sandbox.bigtable_backup.model import (
    CLUSTER_RE,
    INSTANCE_RE,
    MAX_RETENTION_US,
    MIN_RETENTION_US,
    RESTORE_SOURCE_BACKUP,
    TABLE_RE,
    US,
    Abort,
    Backup,
    hidden_table_id,
    match_name,
    now_us,
    ts_to_us,
    us_to_iso,
    valid_id,
)
from runbook.sandbox.bigtable_backup.state import BackupState


class BackupHandlers:
    """The backup RPCs over ``state`` (each takes the request message, returns the response)."""

    def __init__(self, state: BackupState, p: SimpleNamespace) -> None:
        self._state = state
        self._emu = state.emulator
        self._p = p
        self._clock = state.clock

    def _check_expire(self, expire_ts: Any, created_us: int, has_field: bool) -> int:
        if not has_field:
            raise Abort("INVALID_ARGUMENT", "expire_time is required")
        expire = ts_to_us(expire_ts)
        delta = expire - created_us
        if delta < MIN_RETENTION_US or delta > MAX_RETENTION_US or expire <= now_us(self._clock):
            raise Abort(
                "INVALID_ARGUMENT",
                f"Invalid expire_time {us_to_iso(expire)}: must be at least 6 hours and at most 90 days "
                f"after the backup's creation time {us_to_iso(created_us)}",
            )
        return expire

    def _ts(self, us: int) -> Any:
        return self._p.Timestamp(seconds=us // US, nanos=(us % US) * 1000)

    def _to_pb(self, b: Backup) -> Any:
        p = self._p
        pb = p.Backup(
            name=b.name,
            source_table=b.source_table,
            source_backup=b.source_backup,
            size_bytes=b.size_bytes,
            state=p.Backup.READY,
            backup_type=b.backup_type,
        )
        pb.expire_time.CopyFrom(self._ts(b.expire_time))
        pb.start_time.CopyFrom(self._ts(b.start_time))
        pb.end_time.CopyFrom(self._ts(b.end_time))
        pb.encryption_info.encryption_type = p.EncryptionInfo.GOOGLE_DEFAULT_ENCRYPTION
        return pb

    def _backup_info(self, b: Backup) -> Any:
        info = self._p.BackupInfo(backup=b.name, source_table=b.source_table, source_backup=b.source_backup)
        info.start_time.CopyFrom(self._ts(b.start_time))
        info.end_time.CopyFrom(self._ts(b.end_time))
        return info

    def _progress(self, start_us: int, end_us: int) -> Any:
        progress = self._p.OperationProgress(progress_percent=100)
        progress.start_time.CopyFrom(self._ts(start_us))
        progress.end_time.CopyFrom(self._ts(end_us))
        return progress

    def _operation(self, name: str, metadata: Any, response: Any) -> Any:
        """Record a finished operation and return its first, not-yet-done view (clients then poll)."""
        final = self._p.Operation(name=name, done=True)
        final.metadata.Pack(metadata)
        final.response.Pack(response)
        self._state.operations[name] = final.SerializeToString()
        self._state.save()
        first = self._p.Operation(name=name, done=False)
        first.metadata.Pack(metadata)
        return first

    def _new_backup(
        self,
        parent: str,
        backup_id: str,
        expire: Any,
        has_expire: bool,
        source: str,
        source_backup: Backup | None,
        backup_type: int,
    ) -> tuple[Backup, int]:
        """Validate and copy ``source`` into a new backup's data table; returns it and its start time."""
        cluster = match_name(CLUSTER_RE, parent, "parent cluster")
        if cluster["cluster"] == "-":
            raise Abort("INVALID_ARGUMENT", f"Invalid parent cluster: {parent!r}")
        valid_id(backup_id, "backup_id")
        name = f"{parent}/backups/{backup_id}"
        self._state.sweep()
        if name in self._state.backups:
            raise Abort("ALREADY_EXISTS", f"Backup already exists: {name}")
        start = now_us(self._clock)
        expire_us = self._check_expire(expire, start, has_expire)
        instance = parent.split("/clusters/", 1)[0]
        data_id = hidden_table_id(cluster["cluster"], backup_id)
        self._emu.delete_table(f"{instance}/tables/{data_id}")  # leftover of a lost backup, if any
        size, _ = self._emu.copy_table(source, instance, data_id)
        backup = Backup(
            name=name,
            source_table=source_backup.source_table if source_backup else source,
            data_table=f"{instance}/tables/{data_id}",
            expire_time=expire_us,
            start_time=source_backup.start_time if source_backup else start,
            end_time=source_backup.end_time if source_backup else max(now_us(self._clock), start),
            size_bytes=size,
            source_backup=source_backup.name if source_backup else "",
            backup_type=backup_type or 1,
        )
        self._state.backups[name] = backup
        return backup, start

    # ---- RPCs -------------------------------------------------------------------------------

    def create_backup(self, req: Any) -> Any:
        """CreateBackup: copy the source table's rows now; the operation is done on first poll."""
        p = self._p
        parent = match_name(CLUSTER_RE, req.parent, "parent cluster")
        source = req.backup.source_table
        table = match_name(TABLE_RE, source, "backup.source_table")
        if (table["project"], table["instance"]) != (parent["project"], parent["instance"]):
            raise Abort("INVALID_ARGUMENT", f"Source table {source} is not in the backup's instance")
        if req.backup.backup_type != p.Backup.HOT and req.backup.HasField("hot_to_standard_time"):
            raise Abort("INVALID_ARGUMENT", "hot_to_standard_time applies to hot backups only")
        with self._state.lock:
            backup, start = self._new_backup(
                req.parent,
                req.backup_id,
                req.backup.expire_time,
                req.backup.HasField("expire_time"),
                source,
                None,
                req.backup.backup_type,
            )
            meta = p.CreateBackupMetadata(name=backup.name, source_table=source)
            meta.start_time.CopyFrom(self._ts(start))
            meta.end_time.CopyFrom(self._ts(backup.end_time))
            return self._operation(f"{backup.name}/operations/{uuid.uuid4().hex}", meta, self._to_pb(backup))

    def copy_backup(self, req: Any) -> Any:
        """CopyBackup: copy a backup's data into a new backup (same or another cluster/instance)."""
        p = self._p
        match_name(CLUSTER_RE, req.parent, "parent cluster")
        with self._state.lock:
            source = self._state.get(req.source_backup)
            backup, start = self._new_backup(
                req.parent,
                req.backup_id,
                req.expire_time,
                req.HasField("expire_time"),
                source.data_table,
                source,
                source.backup_type,
            )
            meta = p.CopyBackupMetadata(name=backup.name)
            meta.source_backup_info.CopyFrom(self._backup_info(source))
            meta.progress.CopyFrom(self._progress(start, now_us(self._clock)))
            return self._operation(f"{backup.name}/operations/{uuid.uuid4().hex}", meta, self._to_pb(backup))

    def get_backup(self, req: Any) -> Any:
        with self._state.lock:
            return self._to_pb(self._state.get(req.name))

    def update_backup(self, req: Any) -> Any:
        """UpdateBackup: only ``expire_time`` may change (6 h..90 days after creation, in the future)."""
        paths = list(req.update_mask.paths)
        if not paths or any(path != "expire_time" for path in paths):
            raise Abort("INVALID_ARGUMENT", f"Only expire_time can be updated, not {paths}")
        with self._state.lock:
            backup = self._state.get(req.backup.name)
            backup.expire_time = self._check_expire(
                req.backup.expire_time, backup.start_time, req.backup.HasField("expire_time")
            )
            self._state.save()
            return self._to_pb(backup)

    def delete_backup(self, req: Any) -> Any:
        with self._state.lock:
            backup = self._state.get(req.name)
            self._emu.delete_table(backup.data_table)
            del self._state.backups[backup.name]
            self._state.save()
            return self._p.Empty()

    def list_backups(self, req: Any) -> Any:
        """ListBackups: ``clusters/-`` lists the whole instance; filter, order_by and paging apply."""
        parent = match_name(CLUSTER_RE, req.parent, "parent cluster")
        instance = req.parent.split("/clusters/", 1)[0]
        predicate = parse_filter(req.filter)
        with self._state.lock:
            self._state.sweep([instance])
            backups = [
                b
                for b in self._state.backups.values()
                if b.instance == instance
                and parent["cluster"] in ("-", b.cluster)
                and predicate(backup_fields(b))
            ]
        backups = sort_backups(backups, req.order_by)
        try:
            offset = int(req.page_token or 0)
        except ValueError:
            raise Abort("INVALID_ARGUMENT", f"Invalid page_token {req.page_token!r}") from None
        end = offset + req.page_size if req.page_size > 0 else len(backups)
        response = self._p.ListBackupsResponse(backups=[self._to_pb(b) for b in backups[offset:end]])
        if end < len(backups):
            response.next_page_token = str(end)
        return response

    def restore_table(self, req: Any) -> Any:
        """RestoreTable: create the table with the backup's families and rows; done on first poll."""
        p = self._p
        match_name(INSTANCE_RE, req.parent, "parent instance")
        valid_id(req.table_id, "table_id")
        if req.WhichOneof("source") != "backup":
            raise Abort("INVALID_ARGUMENT", "A backup to restore from is required")
        target = f"{req.parent}/tables/{req.table_id}"
        with self._state.lock:
            backup = self._state.get(req.backup)
            if self._emu.get_table(target) is not None:
                raise Abort("ALREADY_EXISTS", f"Table already exists: {target}")
            start = now_us(self._clock)
            _, schema = self._emu.copy_table(backup.data_table, req.parent, req.table_id)
            meta = p.RestoreTableMetadata(name=target, source_type=RESTORE_SOURCE_BACKUP)
            meta.backup_info.CopyFrom(self._backup_info(backup))
            meta.progress.CopyFrom(self._progress(start, now_us(self._clock)))
            return self._operation(f"{target}/operations/{uuid.uuid4().hex}", meta, schema)
