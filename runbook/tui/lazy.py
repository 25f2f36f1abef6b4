"""Lazy package exports (Textual's style): a name's module is imported on first access.

A package's ``__init__`` maps each exported name to the module defining it and sets
``__getattr__ = lazy_exports(__name__, MODULES)``; ``from runbook.tui.screens import RunScreen``
then imports ``runbook.tui.screens.run`` only, so the home screen pays for nothing it does not show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``modules`` maps a name to its module (relative)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__
