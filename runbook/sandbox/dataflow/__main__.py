"""``python -m runbook.sandbox.dataflow --port 0 --state-dir DIR``: serve until SIGTERM."""

import sys

from runbook.sandbox.dataflow.server import main

sys.exit(main())
