"""The ``google.longrunning.Operations`` RPCs the backup operations are polled on.

Every operation here is already finished (its result recorded when the backup call returned).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from runbook.sandbox.bigtable_backup.model import Abort
from runbook.sandbox.bigtable_backup.state import BackupState


class OperationHandlers:
    """GetOperation, WaitOperation, CancelOperation, DeleteOperation and ListOperations."""

    def __init__(self, state: BackupState, p: SimpleNamespace) -> None:
        self._state = state
        self._p = p

    def _find_operation(self, name: str) -> Any:
        with self._state.lock:
            raw = self._state.operations.get(name)
        if raw is None:
            raise Abort("NOT_FOUND", f"Operation not found: {name}")
        return self._p.Operation.FromString(raw)

    def get_operation(self, req: Any) -> Any:
        return self._find_operation(req.name)

    def wait_operation(self, req: Any) -> Any:
        return self._find_operation(req.name)  # every operation here is already finished

    def cancel_operation(self, req: Any) -> Any:
        self._find_operation(req.name)  # finished operations cannot be cancelled: a no-op
        return self._p.Empty()

    def delete_operation(self, req: Any) -> Any:
        with self._state.lock:
            if self._state.operations.pop(req.name, None) is None:
                raise Abort("NOT_FOUND", f"Operation not found: {req.name}")
            self._state.save()
        return self._p.Empty()

    def list_operations(self, req: Any) -> Any:
        """ListOperations: operations whose name starts with ``name`` (all if it is empty or "operations")."""
        prefix = "" if req.name in ("", "operations") else req.name.rstrip("/") + "/"
        with self._state.lock:
            names = sorted(n for n in self._state.operations if n.startswith(prefix))
        offset = int(req.page_token or 0)
        end = offset + req.page_size if req.page_size > 0 else len(names)
        response = self._p.ListOperationsResponse()
        for name in names[offset:end]:
            response.operations.add().CopyFrom(self._find_operation(name))
        if end < len(names):
            response.next_page_token = str(end)
        return response
