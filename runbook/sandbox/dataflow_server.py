"""Former home of the Dataflow stand-in, now the package :mod:`runbook.sandbox.dataflow`.

Kept so that code importing ``runbook.sandbox.dataflow_server`` (or running it with ``python -m``)
keeps working until it moves to the package.
"""

import sys

from runbook.sandbox.dataflow import STATE_FILE, DataflowApiError, DataflowServer, main

__all__ = ["STATE_FILE", "DataflowApiError", "DataflowServer", "main"]

if __name__ == "__main__":
    sys.exit(main())
