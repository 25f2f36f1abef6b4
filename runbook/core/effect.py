"""How much an action can change the world; it drives confirmations and dry-run."""

from __future__ import annotations

from enum import StrEnum


class Effect(StrEnum):
    """How much an action can change the world; drives confirmations and dry-run."""

    READ_ONLY = "read-only"
    MUTATING = "mutating"
    DESTRUCTIVE = "destructive"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Effect.READ_ONLY: 0, Effect.MUTATING: 1, Effect.DESTRUCTIVE: 2}
