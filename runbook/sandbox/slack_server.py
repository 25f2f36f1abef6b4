"""Former home of the Slack stand-in, now the package :mod:`runbook.sandbox.slack`.

Kept so that code importing ``runbook.sandbox.slack_server`` (or running it with ``python -m``)
keeps working until it moves to the package; every name is the package's.
"""

import sys
from typing import Any

import runbook.sandbox.slack as _package

__all__ = list(_package.__all__)


def __getattr__(name: str) -> Any:
    return getattr(_package, name)


if __name__ == "__main__":
    sys.exit(_package.main())
