"""The store clients one process keeps between steps.

Building a Google client costs more than most calls made with it, and steps call the stores over
and over, so clients are kept — in a :class:`ClientPool` the engine hands to every action through
``StepContext.services.clients``, never in a module global: a drill closes its own clients when
its sandbox stops, and two contexts (two tests, two drills) never share one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ClientCache(Generic[T]):
    """Clients built once per key (environment, project, region, endpoint…).

    Building a Google client costs more than most calls made with it, and steps call the stores
    over and over; lookups take no lock once a client exists.

    Args:
        close: How to close a client that is dropped (best effort: its server may be gone).
    """

    def __init__(self, close: Callable[[T], None] | None = None) -> None:
        self._items: dict[Hashable, T] = {}
        self._lock = threading.Lock()
        self._close = close

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        found = self._items.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._items.get(key)
            if found is None:
                found = build()
                self._items[key] = found
            return found

    def _closing(self, items: list[T]) -> None:
        if self._close is None:
            return
        for item in items:
            try:
                self._close(item)
            except Exception:  # noqa: BLE001, S110 - closing a dead channel must not mask the real error
                pass

    def pop(self, key: Hashable) -> None:
        """Drop one client (after its store became unreachable), closing it."""
        with self._lock:
            found = self._items.pop(key, None)
        self._closing([found] if found is not None else [])

    def clear(self) -> None:
        """Drop every client (tests, or after the sandbox moved to new ports)."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        self._closing(items)


class ClientPool:
    """One :class:`ClientCache` per store, made on first use."""

    def __init__(self) -> None:
        self._caches: dict[str, ClientCache[Any]] = {}
        self._lock = threading.Lock()

    def cache(self, store: str, close: Callable[[Any], None] | None = None) -> ClientCache[Any]:
        """The cache of ``store`` (``close`` closes one of its clients when it is dropped)."""
        with self._lock:
            found = self._caches.get(store)
            if found is None:
                found = self._caches[store] = ClientCache(close)
            return found

    def close(self) -> None:
        """Close and drop every client (a drill's sandbox is about to stop)."""
        with self._lock:
            caches = list(self._caches.values())
        for cache in caches:
            cache.clear()
