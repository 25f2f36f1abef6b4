"""The built-in ``sandbox`` environment: store connections pointing at the local stand-ins.

Building it is cheap (it reads port files and starts nothing); commands that run a playbook on
the sandbox start the stores the playbook needs (:meth:`SandboxEnvironment.ensure`). The command
line registers a :class:`SandboxEnvironment` with the config, so front ends reach the sandbox only
through :class:`runbook.core.environment.LocalEnvironment`.
"""

from __future__ import annotations

from typing import Any

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


class SandboxEnvironment:
    """The sandbox as a :class:`~runbook.core.environment.LocalEnvironment`."""

    def environment(self) -> Environment:
        return sandbox_environment()

    def status(self) -> str:
        from runbook.sandbox.manager import status_summary

        return status_summary()

    def ensure(self, playbook: Any) -> None:
        from runbook.sandbox.manager import Sandbox, playbook_components

        Sandbox().ensure(playbook_components(playbook))


def with_sandbox() -> dict[str, SandboxEnvironment]:
    """The ``local=`` argument of :func:`runbook.stores.config.load_config` for the command line."""
    return {"sandbox": SandboxEnvironment()}
