"""gRPC plumbing: one generic handler routes each method to our own handlers, to a filtered
table RPC, or byte-for-byte to the emulator (with the caller's metadata and deadline).

The hidden backup-data tables do not exist for callers: ``ListTables`` leaves them out and
``GetTable``/``DeleteTable`` answer NOT_FOUND for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from runbook.sandbox.bigtable_backup.backups import BackupHandlers
from runbook.sandbox.bigtable_backup.model import ADMIN, DROP_METADATA, OPS, Abort, is_hidden
from runbook.sandbox.bigtable_backup.operations import OperationHandlers

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)


def _forward_metadata(context: grpc.ServicerContext) -> list[tuple[str, Any]]:
    return [
        (m.key, m.value) for m in context.invocation_metadata() or () if not m.key.startswith(DROP_METADATA)
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
        if k == "grpc-status-details-bin" or not k.startswith(DROP_METADATA)
    ]
    if trailers:
        context.set_trailing_metadata(trailers)
    context.abort(exc.code(), exc.details() or "")


def own(request_cls: Any, fn: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """A unary handler served here: parse, call ``fn``, map :class:`Abort` and upstream errors."""
    import grpc

    def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return bytes(fn(request_cls.FromString(raw)).SerializeToString())
        except Abort as exc:
            context.abort(grpc.StatusCode[exc.code], exc.message)
        except grpc.RpcError as exc:  # an emulator call failed
            _abort_from_upstream(context, exc)
        except Exception as exc:
            log.exception("%s failed", getattr(fn, "__name__", fn))
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # context.abort always raises

    return grpc.unary_unary_rpc_method_handler(handle)


class Upstream:
    """Relays RPCs to the emulator over ``channel``."""

    def __init__(self, channel: grpc.Channel, p: SimpleNamespace) -> None:
        self._channel = channel
        self._p = p

    def unary(self, method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        import grpc

        try:
            return bytes(
                self._channel.unary_unary(method)(
                    raw, metadata=_forward_metadata(context), timeout=_timeout(context)
                )
            )
        except grpc.RpcError as exc:
            _abort_from_upstream(context, exc)
            raise

    def hide_named(self, method: str, request_cls: Any) -> grpc.RpcMethodHandler:
        """GetTable/DeleteTable: the hidden backup-data tables do not exist for callers."""
        import grpc

        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            name = request_cls.FromString(raw).name
            if is_hidden(name):
                context.abort(grpc.StatusCode.NOT_FOUND, f'table "{name}" not found')
            return self.unary(method, raw, context)

        return grpc.unary_unary_rpc_method_handler(handle)

    def list_tables(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """ListTables without the hidden tables."""
        response = self._p.ListTablesResponse.FromString(self.unary(ADMIN + "ListTables", raw, context))
        visible = [t for t in response.tables if not is_hidden(t.name)]
        del response.tables[:]
        response.tables.extend(visible)
        return bytes(response.SerializeToString())

    def stream(self, method: str) -> grpc.RpcMethodHandler:
        """Relay any RPC (unary or streaming, both ways) as raw bytes; wire-compatible with all four kinds."""
        import grpc

        def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            call = self._channel.stream_stream(method)(
                requests, metadata=_forward_metadata(context), timeout=_timeout(context)
            )
            context.add_callback(call.cancel)  # our caller went away: cancel upstream too
            try:
                yield from call
            except grpc.RpcError as exc:
                _abort_from_upstream(context, exc)
            trailers = [
                (k, v) for k, v in (call.trailing_metadata() or ()) if not k.startswith(DROP_METADATA)
            ]
            if trailers:
                context.set_trailing_metadata(trailers)

        return grpc.stream_stream_rpc_method_handler(handle)


def routes(
    backups: BackupHandlers, operations: OperationHandlers, upstream: Upstream, p: SimpleNamespace
) -> dict[str, grpc.RpcMethodHandler]:
    """The methods not simply forwarded: our backup and operation RPCs, the filtered table RPCs."""
    import grpc

    return {
        ADMIN + "CreateBackup": own(p.CreateBackupRequest, backups.create_backup),
        ADMIN + "GetBackup": own(p.GetBackupRequest, backups.get_backup),
        ADMIN + "UpdateBackup": own(p.UpdateBackupRequest, backups.update_backup),
        ADMIN + "DeleteBackup": own(p.DeleteBackupRequest, backups.delete_backup),
        ADMIN + "ListBackups": own(p.ListBackupsRequest, backups.list_backups),
        ADMIN + "CopyBackup": own(p.CopyBackupRequest, backups.copy_backup),
        ADMIN + "RestoreTable": own(p.RestoreTableRequest, backups.restore_table),
        ADMIN + "ListTables": grpc.unary_unary_rpc_method_handler(upstream.list_tables),
        ADMIN + "GetTable": upstream.hide_named(ADMIN + "GetTable", p.GetTableRequest),
        ADMIN + "DeleteTable": upstream.hide_named(ADMIN + "DeleteTable", p.DeleteTableRequest),
        OPS + "GetOperation": own(p.GetOperationRequest, operations.get_operation),
        OPS + "ListOperations": own(p.ListOperationsRequest, operations.list_operations),
        OPS + "DeleteOperation": own(p.DeleteOperationRequest, operations.delete_operation),
        OPS + "CancelOperation": own(p.CancelOperationRequest, operations.cancel_operation),
        OPS + "WaitOperation": own(p.WaitOperationRequest, operations.wait_operation),
    }


def make_handler(
    backups: BackupHandlers, operations: OperationHandlers, channel: grpc.Channel, p: SimpleNamespace
) -> grpc.GenericRpcHandler:
    """The single generic handler: own backup/operations RPCs, filtered table RPCs, raw forwarding."""
    import grpc

    upstream = Upstream(channel, p)
    own_routes = routes(backups, operations, upstream, p)

    class Handler(grpc.GenericRpcHandler):
        def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            method = handler_call_details.method
            return own_routes.get(method) or upstream.stream(method)

    return Handler()
