"""The action registry: every ``run:`` name a playbook may use, and ``shell``.

Action modules are light (pydantic models and plain classes); the heavy store clients they use
are imported inside ``run``, so loading the registry never pulls in google-cloud, psycopg or slack.
"""

from __future__ import annotations

import importlib
from functools import cache

from runbook.actions.base import Action, BaseAction, Effect, StepContext

__all__ = ["Action", "BaseAction", "Effect", "StepContext", "registry", "get_action"]

# Each module exposes ``ACTIONS``: a list of action classes.
_MODULES = (
    "runbook.actions.shell",
    "runbook.actions.files",
)


def _extra_modules() -> tuple[str, ...]:
    found = []
    for mod in ("postgres", "storage", "bigquery", "bigtable", "dataflow", "pubsub", "gitconfig", "notify"):
        spec = importlib.util.find_spec(f"runbook.actions.{mod}")
        if spec is not None:
            found.append(f"runbook.actions.{mod}")
    return tuple(found)


@cache
def registry() -> dict[str, Action]:
    """Every known action by name (instantiated once)."""
    out: dict[str, Action] = {}
    for mod_name in (*_MODULES, *_extra_modules()):
        module = importlib.import_module(mod_name)
        for cls in module.ACTIONS:
            action = cls()
            if action.name in out:
                raise RuntimeError(f"two actions are named {action.name!r}")
            out[action.name] = action
    return out


def get_action(name: str) -> Action | None:
    return registry().get(name)
