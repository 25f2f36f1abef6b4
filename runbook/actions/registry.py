"""Every ``run:`` name a playbook may use, and ``shell``.

The spec modules are imported statically (so import-linter and readers see every edge); they are
light (pydantic models and functions): the heavy store clients load inside the functions, so
building the registry never pulls in google-cloud, psycopg or slack_sdk.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

from runbook.actions import (
    bigquery,
    bigtable,
    dataflow,
    files,
    git,
    notify,
    postgres,
    pubsub,
    shell,
    storage,
)
from runbook.actions.spec import ActionSpec

SPEC_MODULES: tuple[ModuleType, ...] = (
    shell,
    files,
    notify,
    git,
    postgres,
    storage,
    bigquery,
    bigtable,
    dataflow,
    pubsub,
)


@cache
def registry() -> dict[str, ActionSpec[Any, Any]]:
    """Every known action by name."""
    out: dict[str, ActionSpec[Any, Any]] = {}
    for module in SPEC_MODULES:
        for spec in module.SPECS:
            if spec.name in out:
                raise RuntimeError(f"two actions are named {spec.name!r}")
            out[spec.name] = spec
    return out


def get_action(name: str) -> ActionSpec[Any, Any] | None:
    return registry().get(name)
