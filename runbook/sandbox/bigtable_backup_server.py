"""A gRPC front for Google's Bigtable emulator that implements managed backups.

``cbtemulator`` serves tables and rows but crashes (nil-pointer panic) on every backup RPC. This
server sits in front of it and

* implements the ``BigtableTableAdmin`` backup RPCs itself — ``CreateBackup``, ``GetBackup``,
  ``UpdateBackup``, ``DeleteBackup``, ``ListBackups``, ``CopyBackup`` and ``RestoreTable`` — plus
  the ``google.longrunning.Operations`` service their long-running operations are polled on;
* hides its backup-data tables from ``ListTables`` (and ``GetTable``/``DeleteTable``);
* forwards every other RPC (the whole data API and the rest of the admin API) to the emulator
  byte-for-byte, with the caller's metadata and deadline.

A backup's rows live in the emulator as a hidden table ``_backup__<cluster>__<backup_id>`` in the
backup's instance (same column families, every cell with its timestamp); its metadata is kept in
memory and, when a state directory is given, in ``<state_dir>/bigtable_backups.json`` so that it
survives a restart of this server (against the same emulator). Backups past their expire time and
backups whose data table has vanished (the emulator was restarted) disappear.

Point the real client at it with ``BIGTABLE_EMULATOR_HOST=<address>``. Run as a process with::

    python -m runbook.sandbox.bigtable_backup_server --upstream 127.0.0.1:8086 --port 0 --state-dir DIR

which prints ``listening 127.0.0.1:PORT`` and serves until SIGTERM.

grpc and the google.cloud protobuf types are imported when a server starts, not with this module.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

__all__ = ["HIDDEN_TABLE_PREFIX", "STATE_FILE", "BigtableBackupServer", "main"]

log = logging.getLogger(__name__)

#: Table-id prefix of the hidden tables that hold backup data.
HIDDEN_TABLE_PREFIX = "_backup__"
#: File (inside ``state_dir``) holding backup metadata and finished operations.
STATE_FILE = "bigtable_backups.json"

_US = 1_000_000
_MIN_RETENTION_US = 6 * 3600 * _US  # expire_time must be >= 6 h after creation ...
_MAX_RETENTION_US = 90 * 86400 * _US  # ... and <= 90 days after it (as the real service)
_MAX_KEPT_OPERATIONS = 1000
_MUTATE_BATCH_ROWS = 500
_MUTATE_BATCH_BYTES = 8 << 20
_UPSTREAM_TIMEOUT_S = 300.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RESTORE_SOURCE_BACKUP = 1  # google.bigtable.admin.v2.RestoreSourceType.BACKUP

_ADMIN = "/google.bigtable.admin.v2.BigtableTableAdmin/"
_OPS = "/google.longrunning.Operations/"

_ID_RE = re.compile(r"[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}")
_INSTANCE_RE = re.compile(r"projects/(?P<project>[^/]+)/instances/(?P<instance>[a-z][-a-z0-9]*)")
_CLUSTER_RE = re.compile(_INSTANCE_RE.pattern + r"/clusters/(?P<cluster>[a-z][-a-z0-9]*|-)")
_TABLE_RE = re.compile(_INSTANCE_RE.pattern + r"/tables/(?P<table>[^/]+)")
_BACKUP_RE = re.compile(_CLUSTER_RE.pattern + r"/backups/(?P<backup>[^/]+)")

# Forwarded metadata: everything but transport-level headers.
_DROP_METADATA = ("user-agent", "content-type", "te", "grpc-")


class _Abort(Exception):
    """Ends the current RPC with a gRPC status (``code`` is a ``grpc.StatusCode`` name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _protos() -> SimpleNamespace:
    """Import and return the raw protobuf classes used here (slow imports, done once per server)."""
    from google.cloud.bigtable_admin_v2.types import bigtable_table_admin as bta
    from google.cloud.bigtable_admin_v2.types import common
    from google.cloud.bigtable_admin_v2.types import table as tbl
    from google.cloud.bigtable_v2.types import bigtable as bt
    from google.cloud.bigtable_v2.types import data
    from google.longrunning import operations_pb2
    from google.protobuf import empty_pb2, timestamp_pb2

    ns = SimpleNamespace(
        Operation=operations_pb2.Operation,
        GetOperationRequest=operations_pb2.GetOperationRequest,
        ListOperationsRequest=operations_pb2.ListOperationsRequest,
        ListOperationsResponse=operations_pb2.ListOperationsResponse,
        DeleteOperationRequest=operations_pb2.DeleteOperationRequest,
        CancelOperationRequest=operations_pb2.CancelOperationRequest,
        WaitOperationRequest=operations_pb2.WaitOperationRequest,
        Empty=empty_pb2.Empty,
        Timestamp=timestamp_pb2.Timestamp,
    )
    proto_plus = {
        bta: (
            "CreateBackupRequest CreateBackupMetadata GetBackupRequest UpdateBackupRequest "
            "DeleteBackupRequest ListBackupsRequest ListBackupsResponse CopyBackupRequest "
            "CopyBackupMetadata RestoreTableRequest RestoreTableMetadata ListTablesRequest "
            "ListTablesResponse GetTableRequest DeleteTableRequest CreateTableRequest"
        ),
        tbl: "Backup BackupInfo EncryptionInfo Table",
        common: "OperationProgress",
        bt: "ReadRowsRequest ReadRowsResponse MutateRowsRequest MutateRowsResponse",
        data: "Mutation",
    }
    for module, names in proto_plus.items():
        for name in names.split():
            setattr(ns, name, getattr(module, name).pb())
    return ns


def _now_us(clock: Callable[[], float]) -> int:
    return int(clock() * _US)


def _us_to_iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def _iso_to_us(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _ts_to_us(ts: Any) -> int:
    return ts.seconds * _US + ts.nanos // 1000


def _match(pattern: re.Pattern[str], value: str, what: str) -> re.Match[str]:
    m = pattern.fullmatch(value or "")
    if m is None:
        raise _Abort("INVALID_ARGUMENT", f"Invalid {what}: {value!r}")
    return m


def _valid_id(value: str, what: str) -> str:
    if not _ID_RE.fullmatch(value or ""):
        raise _Abort(
            "INVALID_ARGUMENT",
            f"Invalid {what} {value!r}: must match [_a-zA-Z0-9][-_.a-zA-Z0-9]* (1-50 chars)",
        )
    return value


def _hidden_table_id(cluster: str, backup_id: str) -> str:
    # Cluster ids cannot contain "_", so the "__" separator is unambiguous.
    return f"{HIDDEN_TABLE_PREFIX}{cluster}__{backup_id}"


def _is_hidden(table_name: str) -> bool:
    return table_name.rsplit("/", 1)[-1].startswith(HIDDEN_TABLE_PREFIX)


@dataclass
class _Backup:
    """One backup's metadata (times in microseconds since the epoch)."""

    name: str
    source_table: str
    data_table: str
    expire_time: int
    start_time: int
    end_time: int
    size_bytes: int
    source_backup: str = ""
    backup_type: int = 1  # STANDARD

    @property
    def instance(self) -> str:
        return self.name.split("/clusters/", 1)[0]

    @property
    def cluster(self) -> str:
        return self.name.split("/")[5]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        for key in ("expire_time", "start_time", "end_time"):
            out[key] = _us_to_iso(out[key])
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Backup:
        raw = dict(raw)
        for key in ("expire_time", "start_time", "end_time"):
            raw[key] = _iso_to_us(raw[key])
        return cls(**raw)


# --------------------------------------------------------------------------------------------
# ListBackups filter (AIP-160 subset) and ordering
# --------------------------------------------------------------------------------------------

_FILTER_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<cmp>(?P<field>[A-Za-z_][A-Za-z_0-9.]*)\s*(?P<op><=|>=|!=|<|>|=|:)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s()]+))'
    r"|(?P<paren>[()])|(?P<kw>AND|OR|NOT)(?![\w.])|(?P<neg>-))",
    re.IGNORECASE,
)
_STRING_FIELDS = ("name", "source_table", "source_backup", "state", "backup_type")
_TIME_FIELDS = ("start_time", "end_time", "expire_time")
_SORT_FIELDS = (*_STRING_FIELDS, *_TIME_FIELDS, "size_bytes")
_Predicate = Callable[[dict[str, Any]], bool]


def _backup_fields(b: _Backup) -> dict[str, Any]:
    return {
        "name": b.name,
        "source_table": b.source_table,
        "source_backup": b.source_backup,
        "state": "READY",
        "backup_type": {1: "STANDARD", 2: "HOT"}.get(b.backup_type, "BACKUP_TYPE_UNSPECIFIED"),
        "start_time": b.start_time,
        "end_time": b.end_time,
        "expire_time": b.expire_time,
        "size_bytes": b.size_bytes,
    }


def _compare(field: str, op: str, raw: str) -> _Predicate:
    """One ``field op value`` comparison; ``:`` means "contains" for strings, "equals" otherwise."""
    field = field.lower()
    value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    key: Any
    if field in _STRING_FIELDS:
        key = value.lower()
        if op == ":":
            return lambda f: key in f[field].lower()
        conv: Callable[[Any], Any] = str.lower
    elif field in _TIME_FIELDS or field == "size_bytes":
        try:
            key = int(value) if field == "size_bytes" else _iso_to_us(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Abort("INVALID_ARGUMENT", f"Invalid value for {field} in filter: {value!r}") from None
        conv = int
    else:
        raise _Abort("INVALID_ARGUMENT", f"Unsupported field in filter: {field!r}")
    ops: dict[str, Callable[[Any, Any], bool]] = {
        ":": lambda a, b: a == b,
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    fn = ops[op]
    return lambda f: fn(conv(f[field]), key)


def _parse_filter(text: str) -> _Predicate:
    """Parse a ListBackups filter: comparisons joined by AND/OR/NOT/-, parentheses; OR binds tighter."""
    tokens: list[tuple[str, Any]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _FILTER_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _Abort("INVALID_ARGUMENT", f"Invalid filter near {text[pos:]!r}")
        pos = m.end()
        if m["cmp"]:
            tokens.append(("cmp", _compare(m["field"], m["op"], m["value"])))
        elif m["paren"]:
            tokens.append((m["paren"], None))
        elif m["kw"]:
            tokens.append((m["kw"].upper(), None))
        elif m["neg"]:
            tokens.append(("NOT", None))
    i = 0

    def peek() -> str | None:
        return tokens[i][0] if i < len(tokens) else None

    def expression() -> _Predicate:  # sequence (AND sequence)* -- adjacency is an implicit AND
        nonlocal i
        parts = [factor()]
        while peek() not in (None, ")"):
            if peek() == "AND":
                i += 1
            parts.append(factor())
        return lambda f: all(p(f) for p in parts)

    def factor() -> _Predicate:  # term (OR term)*
        nonlocal i
        parts = [term()]
        while peek() == "OR":
            i += 1
            parts.append(term())
        return lambda f: any(p(f) for p in parts)

    def term() -> _Predicate:
        nonlocal i
        kind = peek()
        if kind == "NOT":
            i += 1
            inner = term()
            return lambda f: not inner(f)
        if kind == "(":
            i += 1
            inner = expression()
            if peek() != ")":
                raise _Abort("INVALID_ARGUMENT", f"Unbalanced parentheses in filter {text!r}")
            i += 1
            return inner
        if kind == "cmp":
            i += 1
            return tokens[i - 1][1]
        raise _Abort("INVALID_ARGUMENT", f"Invalid filter {text!r}")

    if not tokens:
        return lambda f: True
    pred = expression()
    if i != len(tokens):
        raise _Abort("INVALID_ARGUMENT", f"Invalid filter {text!r}")
    return pred


def _sort_backups(backups: list[_Backup], order_by: str) -> list[_Backup]:
    """Sort by ``order_by`` ("field [asc|desc], ..."); default: newest ``start_time`` first."""
    keys: list[tuple[str, bool]] = []
    for part in (order_by or "").split(","):
        words = part.split()
        if not words:
            continue
        field = words[0].lower()
        if (
            field not in _SORT_FIELDS
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise _Abort("INVALID_ARGUMENT", f"Invalid order_by: {order_by!r}")
        keys.append((field, len(words) == 2 and words[1].lower() == "desc"))
    if not keys:
        keys = [("start_time", True)]
    out = sorted(backups, key=lambda b: b.name)
    for field, desc in reversed(keys):  # stable sorts, least significant key first
        out.sort(key=lambda b, f=field: _backup_fields(b)[f], reverse=desc)
    return out


# --------------------------------------------------------------------------------------------
# The emulator, as used for backup data
# --------------------------------------------------------------------------------------------


class _Emulator:
    """Typed calls to the upstream emulator for copying tables."""

    def __init__(self, channel: grpc.Channel, p: SimpleNamespace) -> None:
        self._channel = channel
        self._p = p

    def _unary(self, method: str, request: Any, response_cls: Any) -> Any:
        call = self._channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        return call(request, timeout=_UPSTREAM_TIMEOUT_S)

    def get_table(self, name: str) -> Any | None:
        """The table's schema, or None if it does not exist."""
        import grpc

        try:
            return self._unary(
                _ADMIN + "GetTable",
                self._p.GetTableRequest(name=name, view=self._p.Table.SCHEMA_VIEW),
                self._p.Table,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def table_ids(self, instance: str) -> set[str]:
        """Ids of all tables (hidden ones included) in ``instance``."""
        ids: set[str] = set()
        request = self._p.ListTablesRequest(parent=instance, view=self._p.Table.NAME_ONLY)
        while True:
            response = self._unary(_ADMIN + "ListTables", request, self._p.ListTablesResponse)
            ids.update(t.name.rsplit("/", 1)[-1] for t in response.tables)
            if not response.next_page_token:
                return ids
            request.page_token = response.next_page_token

    def delete_table(self, name: str) -> None:
        """Delete a table; a missing one is fine."""
        import grpc

        try:
            self._unary(_ADMIN + "DeleteTable", self._p.DeleteTableRequest(name=name), self._p.Empty)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def read_rows(self, table: str) -> Iterator[tuple[bytes, list[tuple[str, bytes, int, bytes]]]]:
        """Every row of ``table`` as ``(key, [(family, qualifier, timestamp_micros, value), ...])``."""
        call = self._channel.unary_stream(
            "/google.bigtable.v2.Bigtable/ReadRows",
            request_serializer=self._p.ReadRowsRequest.SerializeToString,
            response_deserializer=self._p.ReadRowsResponse.FromString,
        )
        key, family, qualifier, ts = b"", "", b"", 0
        cells: list[tuple[str, bytes, int, bytes]] = []
        value: bytearray | None = None  # the cell being assembled (values may be split over chunks)
        for response in call(self._p.ReadRowsRequest(table_name=table), timeout=_UPSTREAM_TIMEOUT_S):
            for chunk in response.chunks:
                if chunk.reset_row:
                    cells, value = [], None
                    continue
                if chunk.row_key:
                    key = chunk.row_key
                if chunk.HasField("family_name"):
                    family = chunk.family_name.value
                if chunk.HasField("qualifier"):
                    qualifier = chunk.qualifier.value
                if value is None:  # first chunk of a cell
                    ts, value = chunk.timestamp_micros, bytearray()
                value += chunk.value
                if chunk.value_size == 0:  # last chunk of the cell
                    cells.append((family, qualifier, ts, bytes(value)))
                    value = None
                if chunk.commit_row:
                    yield key, cells
                    cells = []

    def write_rows(
        self, table: str, rows: Iterable[tuple[bytes, list[tuple[str, bytes, int, bytes]]]]
    ) -> int:
        """Write rows (every cell with its own timestamp) with MutateRows; returns the bytes written."""
        p = self._p
        call = self._channel.unary_stream(
            "/google.bigtable.v2.Bigtable/MutateRows",
            request_serializer=p.MutateRowsRequest.SerializeToString,
            response_deserializer=p.MutateRowsResponse.FromString,
        )
        total = 0

        def flush(request: Any) -> None:
            for response in call(request, timeout=_UPSTREAM_TIMEOUT_S):
                for entry in response.entries:
                    if entry.status.code:
                        raise _Abort("INTERNAL", f"Copying rows into {table} failed: {entry.status.message}")

        request, pending = p.MutateRowsRequest(table_name=table), 0
        for key, cells in rows:
            entry = request.entries.add(row_key=key)
            for family, qualifier, ts, value in cells:
                entry.mutations.add().set_cell.MergeFrom(
                    p.Mutation.SetCell(
                        family_name=family, column_qualifier=qualifier, timestamp_micros=ts, value=value
                    )
                )
                size = len(key) + len(family) + len(qualifier) + len(value) + 8
                total, pending = total + size, pending + size
            if len(request.entries) >= _MUTATE_BATCH_ROWS or pending >= _MUTATE_BATCH_BYTES:
                flush(request)
                request, pending = p.MutateRowsRequest(table_name=table), 0
        if request.entries:
            flush(request)
        return total

    def copy_table(self, source: str, instance: str, table_id: str) -> tuple[int, Any]:
        """Create ``instance/tables/table_id`` with ``source``'s column families and cells.

        Returns:
            ``(size_bytes, schema of the new table)``.

        Raises:
            _Abort: NOT_FOUND if ``source`` does not exist.
        """
        p = self._p
        schema = self.get_table(source)
        if schema is None:
            raise _Abort("NOT_FOUND", f"Table not found: {source}")
        new = p.Table(granularity=schema.granularity)
        for family_id, family in schema.column_families.items():
            new.column_families[family_id].CopyFrom(family)
        target = f"{instance}/tables/{table_id}"
        self._unary(
            _ADMIN + "CreateTable",
            p.CreateTableRequest(parent=instance, table_id=table_id, table=new),
            p.Table,
        )
        try:
            size = self.write_rows(target, self.read_rows(source))
        except BaseException:
            self.delete_table(target)
            raise
        return size, self.get_table(target)


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


class _BackupService:
    """Backup metadata, the operations registry and the RPC implementations."""

    def __init__(
        self, emulator: _Emulator, p: SimpleNamespace, state_dir: Path | None, clock: Callable[[], float]
    ):
        self._emu = emulator
        self._p = p
        self._clock = clock
        self._state_path = state_dir / STATE_FILE if state_dir else None
        self._lock = threading.RLock()
        self._backups: dict[str, _Backup] = {}
        self._operations: dict[str, bytes] = {}  # name -> serialized, finished Operation
        self._load()

    # ---- persistence ------------------------------------------------------------------------

    def _load(self) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        raw = json.loads(self._state_path.read_text())
        self._backups = {name: _Backup.from_json(b) for name, b in raw.get("backups", {}).items()}
        self._operations = {name: base64.b64decode(op) for name, op in raw.get("operations", {}).items()}

    def _save(self) -> None:
        if self._state_path is None:
            return
        while len(self._operations) > _MAX_KEPT_OPERATIONS:  # oldest first (dicts keep order)
            self._operations.pop(next(iter(self._operations)))
        raw = {
            "version": 1,
            "backups": {name: b.to_json() for name, b in self._backups.items()},
            "operations": {name: base64.b64encode(op).decode() for name, op in self._operations.items()},
        }
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1, sort_keys=True))
        os.replace(tmp, self._state_path)

    # ---- helpers ----------------------------------------------------------------------------

    def _sweep(self, instances: Iterable[str] = ()) -> None:
        """Drop expired backups (deleting their data) and, for ``instances``, backups whose data is gone."""
        now = _now_us(self._clock)
        changed = False
        for b in [b for b in self._backups.values() if b.expire_time <= now]:
            self._emu.delete_table(b.data_table)
            del self._backups[b.name]
            changed = True
        for instance in set(instances):
            present = self._emu.table_ids(instance)
            for b in [b for b in self._backups.values() if b.instance == instance]:
                if b.data_table.rsplit("/", 1)[-1] not in present:
                    del self._backups[b.name]
                    changed = True
        if changed:
            self._save()

    def _get(self, name: str) -> _Backup:
        _match(_BACKUP_RE, name, "backup name")
        self._sweep()
        backup = self._backups.get(name)
        if backup is not None and self._emu.get_table(backup.data_table) is None:
            del self._backups[name]  # the emulator lost the data (restarted)
            self._save()
            backup = None
        if backup is None:
            raise _Abort("NOT_FOUND", f"Backup not found: {name}")
        return backup

    def _check_expire(self, expire_ts: Any, created_us: int, has_field: bool) -> int:
        if not has_field:
            raise _Abort("INVALID_ARGUMENT", "expire_time is required")
        expire = _ts_to_us(expire_ts)
        delta = expire - created_us
        if delta < _MIN_RETENTION_US or delta > _MAX_RETENTION_US or expire <= _now_us(self._clock):
            raise _Abort(
                "INVALID_ARGUMENT",
                f"Invalid expire_time {_us_to_iso(expire)}: must be at least 6 hours and at most 90 days "
                f"after the backup's creation time {_us_to_iso(created_us)}",
            )
        return expire

    def _ts(self, us: int) -> Any:
        return self._p.Timestamp(seconds=us // _US, nanos=(us % _US) * 1000)

    def _to_pb(self, b: _Backup) -> Any:
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

    def _backup_info(self, b: _Backup) -> Any:
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
        self._operations[name] = final.SerializeToString()
        self._save()
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
        source_backup: _Backup | None,
        backup_type: int,
    ) -> tuple[_Backup, int]:
        """Validate and copy ``source`` into a new backup's data table; returns it and its start time."""
        cluster = _match(_CLUSTER_RE, parent, "parent cluster")
        if cluster["cluster"] == "-":
            raise _Abort("INVALID_ARGUMENT", f"Invalid parent cluster: {parent!r}")
        _valid_id(backup_id, "backup_id")
        name = f"{parent}/backups/{backup_id}"
        self._sweep()
        if name in self._backups:
            raise _Abort("ALREADY_EXISTS", f"Backup already exists: {name}")
        start = _now_us(self._clock)
        expire_us = self._check_expire(expire, start, has_expire)
        instance = parent.split("/clusters/", 1)[0]
        data_id = _hidden_table_id(cluster["cluster"], backup_id)
        self._emu.delete_table(f"{instance}/tables/{data_id}")  # leftover of a lost backup, if any
        size, _ = self._emu.copy_table(source, instance, data_id)
        backup = _Backup(
            name=name,
            source_table=source_backup.source_table if source_backup else source,
            data_table=f"{instance}/tables/{data_id}",
            expire_time=expire_us,
            start_time=source_backup.start_time if source_backup else start,
            end_time=source_backup.end_time if source_backup else max(_now_us(self._clock), start),
            size_bytes=size,
            source_backup=source_backup.name if source_backup else "",
            backup_type=backup_type or 1,
        )
        self._backups[name] = backup
        return backup, start

    # ---- RPCs -------------------------------------------------------------------------------

    def create_backup(self, req: Any) -> Any:
        """CreateBackup: copy the source table's rows now; the operation is done on first poll."""
        p = self._p
        parent = _match(_CLUSTER_RE, req.parent, "parent cluster")
        source = req.backup.source_table
        table = _match(_TABLE_RE, source, "backup.source_table")
        if (table["project"], table["instance"]) != (parent["project"], parent["instance"]):
            raise _Abort("INVALID_ARGUMENT", f"Source table {source} is not in the backup's instance")
        if req.backup.backup_type != p.Backup.HOT and req.backup.HasField("hot_to_standard_time"):
            raise _Abort("INVALID_ARGUMENT", "hot_to_standard_time applies to hot backups only")
        with self._lock:
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
        _match(_CLUSTER_RE, req.parent, "parent cluster")
        with self._lock:
            source = self._get(req.source_backup)
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
            meta.progress.CopyFrom(self._progress(start, _now_us(self._clock)))
            return self._operation(f"{backup.name}/operations/{uuid.uuid4().hex}", meta, self._to_pb(backup))

    def get_backup(self, req: Any) -> Any:
        with self._lock:
            return self._to_pb(self._get(req.name))

    def update_backup(self, req: Any) -> Any:
        """UpdateBackup: only ``expire_time`` may change (6 h..90 days after creation, in the future)."""
        paths = list(req.update_mask.paths)
        if not paths or any(path != "expire_time" for path in paths):
            raise _Abort("INVALID_ARGUMENT", f"Only expire_time can be updated, not {paths}")
        with self._lock:
            backup = self._get(req.backup.name)
            backup.expire_time = self._check_expire(
                req.backup.expire_time, backup.start_time, req.backup.HasField("expire_time")
            )
            self._save()
            return self._to_pb(backup)

    def delete_backup(self, req: Any) -> Any:
        with self._lock:
            backup = self._get(req.name)
            self._emu.delete_table(backup.data_table)
            del self._backups[backup.name]
            self._save()
            return self._p.Empty()

    def list_backups(self, req: Any) -> Any:
        """ListBackups: ``clusters/-`` lists the whole instance; filter, order_by and paging apply."""
        parent = _match(_CLUSTER_RE, req.parent, "parent cluster")
        instance = req.parent.split("/clusters/", 1)[0]
        predicate = _parse_filter(req.filter)
        with self._lock:
            self._sweep([instance])
            backups = [
                b
                for b in self._backups.values()
                if b.instance == instance
                and parent["cluster"] in ("-", b.cluster)
                and predicate(_backup_fields(b))
            ]
        backups = _sort_backups(backups, req.order_by)
        try:
            offset = int(req.page_token or 0)
        except ValueError:
            raise _Abort("INVALID_ARGUMENT", f"Invalid page_token {req.page_token!r}") from None
        end = offset + req.page_size if req.page_size > 0 else len(backups)
        response = self._p.ListBackupsResponse(backups=[self._to_pb(b) for b in backups[offset:end]])
        if end < len(backups):
            response.next_page_token = str(end)
        return response

    def restore_table(self, req: Any) -> Any:
        """RestoreTable: create the table with the backup's families and rows; done on first poll."""
        p = self._p
        _match(_INSTANCE_RE, req.parent, "parent instance")
        _valid_id(req.table_id, "table_id")
        if req.WhichOneof("source") != "backup":
            raise _Abort("INVALID_ARGUMENT", "A backup to restore from is required")
        target = f"{req.parent}/tables/{req.table_id}"
        with self._lock:
            backup = self._get(req.backup)
            if self._emu.get_table(target) is not None:
                raise _Abort("ALREADY_EXISTS", f"Table already exists: {target}")
            start = _now_us(self._clock)
            _, schema = self._emu.copy_table(backup.data_table, req.parent, req.table_id)
            meta = p.RestoreTableMetadata(name=target, source_type=_RESTORE_SOURCE_BACKUP)
            meta.backup_info.CopyFrom(self._backup_info(backup))
            meta.progress.CopyFrom(self._progress(start, _now_us(self._clock)))
            return self._operation(f"{target}/operations/{uuid.uuid4().hex}", meta, schema)

    # google.longrunning.Operations

    def _find_operation(self, name: str) -> Any:
        with self._lock:
            raw = self._operations.get(name)
        if raw is None:
            raise _Abort("NOT_FOUND", f"Operation not found: {name}")
        return self._p.Operation.FromString(raw)

    def get_operation(self, req: Any) -> Any:
        return self._find_operation(req.name)

    def wait_operation(self, req: Any) -> Any:
        return self._find_operation(req.name)  # every operation here is already finished

    def cancel_operation(self, req: Any) -> Any:
        self._find_operation(req.name)  # finished operations cannot be cancelled: a no-op
        return self._p.Empty()

    def delete_operation(self, req: Any) -> Any:
        with self._lock:
            if self._operations.pop(req.name, None) is None:
                raise _Abort("NOT_FOUND", f"Operation not found: {req.name}")
            self._save()
        return self._p.Empty()

    def list_operations(self, req: Any) -> Any:
        """ListOperations: operations whose name starts with ``name`` (all if it is empty or "operations")."""
        prefix = "" if req.name in ("", "operations") else req.name.rstrip("/") + "/"
        with self._lock:
            names = sorted(n for n in self._operations if n.startswith(prefix))
        offset = int(req.page_token or 0)
        end = offset + req.page_size if req.page_size > 0 else len(names)
        response = self._p.ListOperationsResponse()
        for name in names[offset:end]:
            response.operations.add().CopyFrom(self._find_operation(name))
        if end < len(names):
            response.next_page_token = str(end)
        return response


# --------------------------------------------------------------------------------------------
# gRPC plumbing
# --------------------------------------------------------------------------------------------


def _forward_metadata(context: grpc.ServicerContext) -> list[tuple[str, Any]]:
    return [
        (m.key, m.value) for m in context.invocation_metadata() or () if not m.key.startswith(_DROP_METADATA)
    ]


def _timeout(context: grpc.ServicerContext) -> float | None:
    """The caller's remaining deadline, to pass upstream (None when the caller set none)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e7 else remaining


def _abort_from_upstream(context: grpc.ServicerContext, exc: grpc.RpcError) -> None:
    """Relay an upstream error (status, message and status details) to our caller."""
    trailers = [
        (k, v)
        for k, v in (exc.trailing_metadata() or ())
        if k == "grpc-status-details-bin" or not k.startswith(_DROP_METADATA)
    ]
    if trailers:
        context.set_trailing_metadata(trailers)
    context.abort(exc.code(), exc.details() or "")


def _make_handler(service: _BackupService, channel: grpc.Channel) -> grpc.GenericRpcHandler:
    """The single generic handler: own backup/operations RPCs, filtered table RPCs, raw forwarding."""
    import grpc

    p = service._p

    def own(request_cls: Any, fn: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return fn(request_cls.FromString(raw)).SerializeToString()
            except _Abort as exc:
                context.abort(grpc.StatusCode[exc.code], exc.message)
            except grpc.RpcError as exc:  # an emulator call failed
                _abort_from_upstream(context, exc)
            except Exception as exc:
                log.exception("%s failed", getattr(fn, "__name__", fn))
                context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            raise AssertionError("unreachable")  # context.abort always raises

        return grpc.unary_unary_rpc_method_handler(handle)

    def forward_unary(method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return channel.unary_unary(method)(
                raw, metadata=_forward_metadata(context), timeout=_timeout(context)
            )
        except grpc.RpcError as exc:
            _abort_from_upstream(context, exc)
            raise

    def hide_named(method: str, request_cls: Any) -> grpc.RpcMethodHandler:
        """GetTable/DeleteTable: the hidden backup-data tables do not exist for callers."""

        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            name = request_cls.FromString(raw).name
            if _is_hidden(name):
                context.abort(grpc.StatusCode.NOT_FOUND, f'table "{name}" not found')
            return forward_unary(method, raw, context)

        return grpc.unary_unary_rpc_method_handler(handle)

    def list_tables(raw: bytes, context: grpc.ServicerContext) -> bytes:
        response = p.ListTablesResponse.FromString(forward_unary(_ADMIN + "ListTables", raw, context))
        visible = [t for t in response.tables if not _is_hidden(t.name)]
        del response.tables[:]
        response.tables.extend(visible)
        return response.SerializeToString()

    def forward_stream(method: str) -> grpc.RpcMethodHandler:
        """Relay any RPC (unary or streaming, both ways) as raw bytes; wire-compatible with all four kinds."""

        def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            call = channel.stream_stream(method)(
                requests, metadata=_forward_metadata(context), timeout=_timeout(context)
            )
            context.add_callback(call.cancel)  # our caller went away: cancel upstream too
            try:
                yield from call
            except grpc.RpcError as exc:
                _abort_from_upstream(context, exc)
            trailers = [
                (k, v) for k, v in (call.trailing_metadata() or ()) if not k.startswith(_DROP_METADATA)
            ]
            if trailers:
                context.set_trailing_metadata(trailers)

        return grpc.stream_stream_rpc_method_handler(handle)

    routes: dict[str, grpc.RpcMethodHandler] = {
        _ADMIN + "CreateBackup": own(p.CreateBackupRequest, service.create_backup),
        _ADMIN + "GetBackup": own(p.GetBackupRequest, service.get_backup),
        _ADMIN + "UpdateBackup": own(p.UpdateBackupRequest, service.update_backup),
        _ADMIN + "DeleteBackup": own(p.DeleteBackupRequest, service.delete_backup),
        _ADMIN + "ListBackups": own(p.ListBackupsRequest, service.list_backups),
        _ADMIN + "CopyBackup": own(p.CopyBackupRequest, service.copy_backup),
        _ADMIN + "RestoreTable": own(p.RestoreTableRequest, service.restore_table),
        _ADMIN + "ListTables": grpc.unary_unary_rpc_method_handler(list_tables),
        _ADMIN + "GetTable": hide_named(_ADMIN + "GetTable", p.GetTableRequest),
        _ADMIN + "DeleteTable": hide_named(_ADMIN + "DeleteTable", p.DeleteTableRequest),
        _OPS + "GetOperation": own(p.GetOperationRequest, service.get_operation),
        _OPS + "ListOperations": own(p.ListOperationsRequest, service.list_operations),
        _OPS + "DeleteOperation": own(p.DeleteOperationRequest, service.delete_operation),
        _OPS + "CancelOperation": own(p.CancelOperationRequest, service.cancel_operation),
        _OPS + "WaitOperation": own(p.WaitOperationRequest, service.wait_operation),
    }

    class Handler(grpc.GenericRpcHandler):
        def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            method = handler_call_details.method
            return routes.get(method) or forward_stream(method)

    return Handler()


class BigtableBackupServer:
    """A gRPC server in front of cbtemulator that adds managed backups (see the module docstring).

    Example::

        with BigtableBackupServer(upstream="127.0.0.1:8086", state_dir=tmp) as server:
            os.environ["BIGTABLE_EMULATOR_HOST"] = server.address
            ...

    Args:
        upstream: ``host:port`` of a running cbtemulator.
        port: Port to listen on (0 picks a free one; see :attr:`address`).
        state_dir: Directory for the backup-metadata file; ``None`` keeps metadata in memory only.
        host: Interface to listen on.
        clock: Seconds-since-epoch clock used for backup times and expiry (tests move it forward).
        max_workers: Size of the RPC thread pool (each streaming RPC holds one thread while it runs).
    """

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        max_workers: int = 32,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._port = port
        self._clock = clock
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to put in ``BIGTABLE_EMULATOR_HOST`` (after :meth:`start`)."""
        return f"{self.host}:{self.port}"

    def start(self) -> BigtableBackupServer:
        """Bind and start serving; returns self.

        Raises:
            OSError: If the port cannot be bound.
            RuntimeError: If already started.
        """
        if self._server is not None:
            raise RuntimeError("server already started")
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        p = _protos()
        self._channel = grpc.insecure_channel(self.upstream, options=unlimited)
        service = _BackupService(_Emulator(self._channel, p), p, self.state_dir, self._clock)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="bt-backup"),
            handlers=[_make_handler(service, self._channel)],
            options=[*unlimited, ("grpc.so_reuseport", 0)],  # a taken port is an error, not shared
        )
        try:
            port = server.add_insecure_port(f"{self.host}:{self._port}")  # grpc raises RuntimeError
        except RuntimeError:
            port = 0
        if not port:
            self._channel.close()
            self._channel = None
            raise OSError(f"cannot listen on {self.host}:{self._port}")
        server.start()
        self._port, self._server = port, server
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds) and close the upstream channel."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def wait(self) -> None:
        """Block until the server stops."""
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> BigtableBackupServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: serve until SIGTERM/SIGINT, after printing ``listening HOST:PORT``."""
    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.bigtable_backup_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--upstream", required=True, help="host:port of the running cbtemulator")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--state-dir", default=None, help="directory for backup metadata (default: memory only)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    server = BigtableBackupServer(args.upstream, args.port, args.state_dir, host=args.host).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"listening {server.address}", flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
