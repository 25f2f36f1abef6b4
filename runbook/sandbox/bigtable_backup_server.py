"""Former home of the Bigtable backup server, now the package :mod:`runbook.sandbox.bigtable_backup`.

Kept so that code importing ``runbook.sandbox.bigtable_backup_server`` (or running it with
``python -m``) keeps working until it moves to the package.
"""

import sys

from runbook.sandbox.bigtable_backup import HIDDEN_TABLE_PREFIX, STATE_FILE, BigtableBackupServer, main

__all__ = ["HIDDEN_TABLE_PREFIX", "STATE_FILE", "BigtableBackupServer", "main"]

if __name__ == "__main__":
    sys.exit(main())
