"""The built-in ``sandbox`` environment: store connections pointing at the local stand-ins.

Building it is cheap (it reads port files and starts nothing); commands that run a playbook on
the sandbox start the stores the playbook needs (``Sandbox.ensure``).
"""

from __future__ import annotations

from runbook.core.environment import Environment


def sandbox_environment() -> Environment:
    from runbook.sandbox.manager import Sandbox

    box = Sandbox()
    return Environment(
        name="sandbox",
        stores=box.stores(),
        location=str(box.base),
        sandbox=True,
        description="Local sandbox (real local stand-ins)",
    )
