"""TRANSITIONAL: the class-based action shape, until every store package declares specs.

Legacy modules expose ``ACTIONS`` (classes); :mod:`runbook.actions.registry` adapts them to
:class:`~runbook.actions.spec.ActionSpec`. New code uses :func:`runbook.actions.spec.action`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from runbook.actions.spec import ActionParams, StepContext
from runbook.core.effect import Effect

__all__ = ["ActionParams", "BaseAction", "Effect", "StepContext"]


class BaseAction:
    name: ClassVar[str] = ""
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = ""
    Params: ClassVar[type[ActionParams]] = ActionParams
    outputs: ClassVar[Mapping[str, str]] = {}

    def target(self, params: Any) -> str:
        return self.name

    def describe(self, params: Any) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in params.model_dump(exclude_none=True).items())
        return f"{self.name}({args})"

    def run(self, ctx: StepContext, params: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
