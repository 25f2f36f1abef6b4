"""The backup service's state: backup metadata and finished operations, behind one lock.

Kept in memory and, when a state directory is given, in ``bigtable_backups.json`` (written
atomically) so that it survives a restart of the server against the same emulator. Backups past
their expire time and backups whose data table has vanished (the emulator was restarted) disappear.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from runbook.sandbox.bigtable_backup.emulator import Emulator
from runbook.sandbox.bigtable_backup.model import (
    BACKUP_RE,
    MAX_KEPT_OPERATIONS,
    STATE_FILE,
    Abort,
    Backup,
    match_name,
    now_us,
)


class BackupState:
    """Backups by name and finished operations (serialized) by name.

    Args:
        emulator: Where the backups' data tables live (to drop them, or notice they are gone).
        state_dir: Directory for the state file; in memory only when None.
        clock: Seconds-since-epoch clock for expiry.
    """

    def __init__(self, emulator: Emulator, state_dir: Path | None, clock: Callable[[], float]) -> None:
        self.emulator = emulator
        self.clock = clock
        self.lock = threading.RLock()
        self.backups: dict[str, Backup] = {}
        self.operations: dict[str, bytes] = {}  # name -> serialized, finished Operation
        self._state_path = state_dir / STATE_FILE if state_dir else None
        self._load()

    # ---- persistence ------------------------------------------------------------------------

    def _load(self) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        raw = json.loads(self._state_path.read_text())
        self.backups = {name: Backup.from_json(b) for name, b in raw.get("backups", {}).items()}
        self.operations = {name: base64.b64decode(op) for name, op in raw.get("operations", {}).items()}

    def save(self) -> None:
        """Write the state file (call with the lock held, after a mutation)."""
        if self._state_path is None:
            return
        while len(self.operations) > MAX_KEPT_OPERATIONS:  # oldest first (dicts keep order)
            self.operations.pop(next(iter(self.operations)))
        raw = {
            "version": 1,
            "backups": {name: b.to_json() for name, b in self.backups.items()},
            "operations": {name: base64.b64encode(op).decode() for name, op in self.operations.items()},
        }
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1, sort_keys=True))
        os.replace(tmp, self._state_path)

    # ---- helpers ----------------------------------------------------------------------------

    def sweep(self, instances: Iterable[str] = ()) -> None:
        """Drop expired backups (deleting their data) and, for ``instances``, backups whose data is gone."""
        now = now_us(self.clock)
        changed = False
        for b in [b for b in self.backups.values() if b.expire_time <= now]:
            self.emulator.delete_table(b.data_table)
            del self.backups[b.name]
            changed = True
        for instance in set(instances):
            present = self.emulator.table_ids(instance)
            for b in [b for b in self.backups.values() if b.instance == instance]:
                if b.data_table.rsplit("/", 1)[-1] not in present:
                    del self.backups[b.name]
                    changed = True
        if changed:
            self.save()

    def get(self, name: str) -> Backup:
        """The backup named ``name`` (NOT_FOUND if it is gone, expired or lost its data)."""
        match_name(BACKUP_RE, name, "backup name")
        self.sweep()
        backup = self.backups.get(name)
        if backup is not None and self.emulator.get_table(backup.data_table) is None:
            del self.backups[name]  # the emulator lost the data (restarted)
            self.save()
            backup = None
        if backup is None:
            raise Abort("NOT_FOUND", f"Backup not found: {name}")
        return backup
