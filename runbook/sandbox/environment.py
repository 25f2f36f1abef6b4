"""The built-in ``sandbox`` environment: store connections pointing at the local stand-ins.

Paths and ports come from the sandbox's state directory; the stores are started on demand by
``runbook sandbox up`` (or by a command that needs them).
"""

from __future__ import annotations

from runbook.paths import home
from runbook.stores.environment import Environment


def sandbox_environment() -> Environment:
    base = home() / "sandbox"
    stores = {
        "storage": {
            "root": str(base / "storage" / "datasets"),
            "backups": str(base / "backups" / "storage"),
        },
        "files": {
            "backups": str(base / "backups"),
            "db_backups": str(base / "backups" / "database"),
        },
    }
    return Environment(name="sandbox", stores=stores, sandbox=True, description="Local sandbox (real local stand-ins)")
