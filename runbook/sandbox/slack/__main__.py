"""``python -m runbook.sandbox.slack --port 0 --state-dir DIR [--token T]``: serve until SIGTERM."""

import sys

from runbook.sandbox.slack.server import main

sys.exit(main())
