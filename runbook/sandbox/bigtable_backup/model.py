"""The backup service's vocabulary: names, limits, times, the :class:`Backup` record, the protos.

Times are microseconds since the epoch (what the protos carry, in seconds + nanos). The protobuf
classes are imported by :func:`protos` when a server starts, not with this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from runbook.core.timestamps import parse_utc

#: Table-id prefix of the hidden tables that hold backup data.
HIDDEN_TABLE_PREFIX = "_backup__"
#: File (inside ``state_dir``) holding backup metadata and finished operations.
STATE_FILE = "bigtable_backups.json"

US = 1_000_000
MIN_RETENTION_US = 6 * 3600 * US  # expire_time must be >= 6 h after creation ...
MAX_RETENTION_US = 90 * 86400 * US  # ... and <= 90 days after it (as the real service)
MAX_KEPT_OPERATIONS = 1000
MUTATE_BATCH_ROWS = 500
MUTATE_BATCH_BYTES = 8 << 20
UPSTREAM_TIMEOUT_S = 300.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RESTORE_SOURCE_BACKUP = 1  # google.bigtable.admin.v2.RestoreSourceType.BACKUP

ADMIN = "/google.bigtable.admin.v2.BigtableTableAdmin/"
OPS = "/google.longrunning.Operations/"

ID_RE = re.compile(r"[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}")
INSTANCE_RE = re.compile(r"projects/(?P<project>[^/]+)/instances/(?P<instance>[a-z][-a-z0-9]*)")
CLUSTER_RE = re.compile(INSTANCE_RE.pattern + r"/clusters/(?P<cluster>[a-z][-a-z0-9]*|-)")
TABLE_RE = re.compile(INSTANCE_RE.pattern + r"/tables/(?P<table>[^/]+)")
BACKUP_RE = re.compile(CLUSTER_RE.pattern + r"/backups/(?P<backup>[^/]+)")

# Forwarded metadata: everything but transport-level headers.
DROP_METADATA = ("user-agent", "content-type", "te", "grpc-")


class Abort(Exception):
    """Ends the current RPC with a gRPC status (``code`` is a ``grpc.StatusCode`` name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def protos() -> SimpleNamespace:
    """Import and return the raw protobuf classes used here (slow imports, done once per server)."""
    from google.cloud.bigtable_admin_v2.types import bigtable_table_admin as bta
    from google.cloud.bigtable_admin_v2.types import common
    from google.cloud.bigtable_admin_v2.types import table as tbl
    from google.cloud.bigtable_v2.types import bigtable as bt
    from google.cloud.bigtable_v2.types import data
    from google.longrunning import operations_pb2
    from google.protobuf import empty_pb2, timestamp_pb2

    plain = {
        operations_pb2: (
            "Operation GetOperationRequest ListOperationsRequest ListOperationsResponse "
            "DeleteOperationRequest CancelOperationRequest WaitOperationRequest"
        ),
        empty_pb2: "Empty",
        timestamp_pb2: "Timestamp",
    }
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
    # A proto-plus class is used through its raw protobuf class (``.pb()``).
    return SimpleNamespace(
        **dict(_classes(plain)), **{name: cls.pb() for name, cls in _classes(proto_plus)}
    )


def _classes(names_by_module: dict[Any, str]) -> Iterator[tuple[str, Any]]:
    """(name, class) for each space-separated class name, looked up in its module."""
    for module, names in names_by_module.items():
        for name in names.split():
            yield name, getattr(module, name)


def now_us(clock: Callable[[], float]) -> int:
    """The clock's time in microseconds since the epoch."""
    return int(clock() * US)


def us_to_iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 with ``+00:00`` (the state file's format)."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def iso_to_us(text: str) -> int:
    """ISO 8601 (naive means UTC) to microseconds since the epoch; ValueError if it is not one."""
    return (parse_utc(text) - _EPOCH) // timedelta(microseconds=1)


def ts_to_us(ts: Any) -> int:
    return ts.seconds * US + ts.nanos // 1000


def match_name(pattern: re.Pattern[str], value: str, what: str) -> re.Match[str]:
    m = pattern.fullmatch(value or "")
    if m is None:
        raise Abort("INVALID_ARGUMENT", f"Invalid {what}: {value!r}")
    return m


def valid_id(value: str, what: str) -> str:
    if not ID_RE.fullmatch(value or ""):
        raise Abort(
            "INVALID_ARGUMENT",
            f"Invalid {what} {value!r}: must match [_a-zA-Z0-9][-_.a-zA-Z0-9]* (1-50 chars)",
        )
    return value


def hidden_table_id(cluster: str, backup_id: str) -> str:
    # Cluster ids cannot contain "_", so the "__" separator is unambiguous.
    return f"{HIDDEN_TABLE_PREFIX}{cluster}__{backup_id}"


def is_hidden(table_name: str) -> bool:
    return table_name.rsplit("/", 1)[-1].startswith(HIDDEN_TABLE_PREFIX)


@dataclass
class Backup:
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
            out[key] = us_to_iso(out[key])
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Backup:
        raw = dict(raw)
        for key in ("expire_time", "start_time", "end_time"):
            raw[key] = iso_to_us(raw[key])
        return cls(**raw)
