"""What the tests of the Google store actions share: a running emulator and its sandbox environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from runbook.core.environment import Environment

PROJECT = "runbook-sandbox"
E = TypeVar("E")


def running(emulator: E, clear: Callable[[], None]) -> Iterator[E]:
    """Start ``emulator``, yield it once it answers; afterwards drop the cached clients, then stop it."""
    emulator.start()  # type: ignore[attr-defined]
    emulator.wait_ready()  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        clear()
        emulator.stop()  # type: ignore[attr-defined]


def sandbox_env(**gcp: Any) -> Environment:
    """The sandbox environment with a [gcp] store: the test project, its regions, and ``gcp``."""
    stores = {"gcp": {"project": PROJECT, "region": "us-central1", "secondary_region": "europe-west1", **gcp}}
    return Environment(name="sandbox", sandbox=True, stores=stores)
