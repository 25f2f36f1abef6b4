"""``python -m runbook.sandbox.bigtable_backup --upstream HOST:PORT --port 0 --state-dir DIR``."""

import sys

from runbook.sandbox.bigtable_backup.server import main

sys.exit(main())
