"""Environments: named sets of store connections, from ``runbook.toml`` or the built-in sandbox.

Secrets are never in the file: a store names the environment variable that holds its password
or token (``password_env = "VARLOR_DB_PASSWORD"``) and :meth:`Environment.secret` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.core.errors import ActionError


@dataclass
class Environment:
    """A named set of store connections.

    Attributes:
        name: ``sandbox``, ``staging``, ``prod``…
        stores: Store kind (``postgres``, ``storage``, ``gcp``, ``slack``…) → its settings.
        sandbox: True for the built-in local sandbox (drills run here).
        description: Shown in headers so nobody mistakes prod for a drill.
    """

    name: str
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    sandbox: bool = False
    description: str = ""
    production: bool = False
    location: str = ""  # the sandbox's directory, so a resumed drill finds its own stores

    def store(self, kind: str) -> dict[str, Any]:
        """Settings of one store.

        Raises:
            ActionError: The environment has no such store configured.
        """
        if kind not in self.stores:
            raise ActionError(
                f"Environment {self.name!r} has no {kind} store: add [environments.{self.name}.{kind}] to runbook.toml."
            )
        return self.stores[kind]

    def secret(self, env_var: str | None) -> str | None:
        """The value of the environment variable named by a store setting, or None."""
        if not env_var:
            return None
        return os.environ.get(env_var)

    def secret_values(self) -> list[str]:
        """Every secret this environment can produce, so the engine can redact them."""
        out = []
        for settings in self.stores.values():
            for key, value in settings.items():
                if key.endswith("_env") and isinstance(value, str):
                    got = os.environ.get(value)
                    if got:
                        out.append(got)
        return out

    def lookup(self, parts: tuple[str, ...]) -> Any:
        """``{{ env.name }}`` / ``{{ env.STORE.KEY }}`` for playbooks (never a secret)."""
        if parts == ("name",):
            return self.name
        if parts == ("sandbox",):
            return self.sandbox
        if parts == ("python",):
            # The interpreter runbook runs on (with the store clients), for scenario and helper scripts.
            import sys

            return sys.executable
        if len(parts) == 2 and parts[0] in self.stores:
            key = parts[1]
            if key.endswith("_env") or "password" in key or "token" in key:
                raise ActionError(f"env.{parts[0]}.{key} is a secret and cannot be used in a playbook value.")
            if key in self.stores[parts[0]]:
                return self.stores[parts[0]][key]
        raise ActionError(f"Environment {self.name!r} has no setting env.{'.'.join(parts)}.")


class LocalEnvironment(Protocol):
    """A built-in environment whose stores run on this machine (the sandbox).

    The command line registers it with the config; front ends use it only through this
    interface (they never import the sandbox itself).
    """

    def environment(self) -> Environment:
        """Its store connections (cheap: starts nothing)."""
        ...

    def status(self) -> str:
        """One line for the home screen: which stores run."""
        ...

    def ensure(self, playbook: Any) -> None:
        """Start the stores ``playbook`` needs (all when None); blocking."""
        ...
