"""Every ``run:`` name a playbook may use, and ``shell``.

The spec modules are imported statically (so import-linter and readers see every edge); they are
light (pydantic models and functions): the heavy store clients load inside the functions, so
building the registry never pulls in google-cloud, psycopg or slack_sdk.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from runbook.actions.spec import ActionSpec, NoOutputs, StepContext

SPEC_MODULES: tuple[ModuleType, ...] = (shell, files, notify, git, postgres, storage, bigquery, bigtable, dataflow, pubsub)


@cache
def registry() -> dict[str, ActionSpec[Any, Any]]:
    """Every known action by name."""
    out: dict[str, ActionSpec[Any, Any]] = {}
    for module in SPEC_MODULES:
        specs = getattr(module, "SPECS", None)
        if specs is None:
            specs = [_legacy(cls) for cls in module.ACTIONS]
        for spec in specs:
            if spec.name in out:
                raise RuntimeError(f"two actions are named {spec.name!r}")
            out[spec.name] = spec
    return out


def get_action(name: str) -> ActionSpec[Any, Any] | None:
    return registry().get(name)


class _LegacySpec(ActionSpec[Any, Any]):
    """TRANSITIONAL: a class-based action as a spec (its outputs are not type-checked)."""

    legacy_outputs: Mapping[str, str] = {}

    @property
    def outputs(self) -> Mapping[str, str]:
        return self.legacy_outputs

    def run(self, ctx: StepContext, params: Any) -> dict[str, Any]:
        return self.fn(ctx, params) or {}


def _legacy(cls: Any) -> ActionSpec[Any, Any]:
    impl = cls()
    spec = _LegacySpec(cls.name, cls.effect, cls.summary, cls.Params, NoOutputs, impl.run, impl.target, impl.describe)
    object.__setattr__(spec, "legacy_outputs", dict(cls.outputs))
    return spec
