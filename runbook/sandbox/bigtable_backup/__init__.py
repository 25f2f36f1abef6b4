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

    python -m runbook.sandbox.bigtable_backup --upstream 127.0.0.1:8086 --port 0 --state-dir DIR

which prints ``listening 127.0.0.1:PORT`` and serves until SIGTERM.

The package: ``model`` (names, times, the backup record, the protos), ``filters`` (ListBackups'
filter and order_by), ``emulator`` (copying tables upstream), ``state`` (backups and operations),
``backups`` and ``operations`` (the RPC handlers), ``forwarding`` (the gRPC routing), ``server``
(:class:`BigtableBackupServer` and ``main``). grpc and the google.cloud protobuf types are imported
when a server starts, not with this package.
"""

from runbook.sandbox.bigtable_backup.model import HIDDEN_TABLE_PREFIX, STATE_FILE
from runbook.sandbox.bigtable_backup.server import BigtableBackupServer, main

__all__ = ["HIDDEN_TABLE_PREFIX", "STATE_FILE", "BigtableBackupServer", "main"]
