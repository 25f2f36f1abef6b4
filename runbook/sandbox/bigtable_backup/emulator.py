"""Typed calls to the upstream Bigtable emulator, used to keep backup data as hidden tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from runbook.sandbox.bigtable_backup.model import (
    ADMIN,
    MUTATE_BATCH_BYTES,
    MUTATE_BATCH_ROWS,
    UPSTREAM_TIMEOUT_S,
    Abort,
)

if TYPE_CHECKING:
    import grpc

Cell = tuple[str, bytes, int, bytes]  # (family, qualifier, timestamp_micros, value)
Row = tuple[bytes, list[Cell]]


class Emulator:
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
        return call(request, timeout=UPSTREAM_TIMEOUT_S)

    def get_table(self, name: str) -> Any | None:
        """The table's schema, or None if it does not exist."""
        import grpc

        try:
            return self._unary(
                ADMIN + "GetTable",
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
            response = self._unary(ADMIN + "ListTables", request, self._p.ListTablesResponse)
            ids.update(t.name.rsplit("/", 1)[-1] for t in response.tables)
            if not response.next_page_token:
                return ids
            request.page_token = response.next_page_token

    def delete_table(self, name: str) -> None:
        """Delete a table; a missing one is fine."""
        import grpc

        try:
            self._unary(ADMIN + "DeleteTable", self._p.DeleteTableRequest(name=name), self._p.Empty)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def read_rows(self, table: str) -> Iterator[Row]:
        """Every row of ``table`` as ``(key, [(family, qualifier, timestamp_micros, value), ...])``."""
        call = self._channel.unary_stream(
            "/google.bigtable.v2.Bigtable/ReadRows",
            request_serializer=self._p.ReadRowsRequest.SerializeToString,
            response_deserializer=self._p.ReadRowsResponse.FromString,
        )
        key, family, qualifier, ts = b"", "", b"", 0
        cells: list[Cell] = []
        value: bytearray | None = None  # the cell being assembled (values may be split over chunks)
        for response in call(self._p.ReadRowsRequest(table_name=table), timeout=UPSTREAM_TIMEOUT_S):
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

    def write_rows(self, table: str, rows: Iterable[Row]) -> int:
        """Write rows (every cell with its own timestamp) with MutateRows; returns the bytes written."""
        p = self._p
        call = self._channel.unary_stream(
            "/google.bigtable.v2.Bigtable/MutateRows",
            request_serializer=p.MutateRowsRequest.SerializeToString,
            response_deserializer=p.MutateRowsResponse.FromString,
        )
        total = 0

        def flush(request: Any) -> None:
            for response in call(request, timeout=UPSTREAM_TIMEOUT_S):
                for entry in response.entries:
                    if entry.status.code:
                        raise Abort("INTERNAL", f"Copying rows into {table} failed: {entry.status.message}")

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
            if len(request.entries) >= MUTATE_BATCH_ROWS or pending >= MUTATE_BATCH_BYTES:
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
            Abort: NOT_FOUND if ``source`` does not exist.
        """
        p = self._p
        schema = self.get_table(source)
        if schema is None:
            raise Abort("NOT_FOUND", f"Table not found: {source}")
        new = p.Table(granularity=schema.granularity)
        for family_id, family in schema.column_families.items():
            new.column_families[family_id].CopyFrom(family)
        target = f"{instance}/tables/{table_id}"
        self._unary(
            ADMIN + "CreateTable",
            p.CreateTableRequest(parent=instance, table_id=table_id, table=new),
            p.Table,
        )
        try:
            size = self.write_rows(target, self.read_rows(source))
        except BaseException:
            self.delete_table(target)
            raise
        return size, self.get_table(target)
