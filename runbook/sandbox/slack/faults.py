"""Fault injection and request counting for the Slack stand-in.

Faults apply to ``/api/`` and ``/services/`` requests only, so the control endpoints keep working:

* ``down``: the connection is accepted, the request read, and the socket closed without a byte of
  response. urllib raises ``http.client.RemoteDisconnected`` (a ``ConnectionResetError``, hence a
  ``ConnectionError``); slack_sdk's default ``ConnectionErrorRetryHandler`` retries once, then
  re-raises it. (A refused connection is what ``SlackServer.stop`` gives.)
* ``status_500``: HTTP 500 (or ``status``) with ``{"ok": false, "error": "fatal_error"}``.
* ``rate_limited``: HTTP 429, ``Retry-After: N``, ``{"ok": false, "error": "ratelimited"}``.
* ``error``: every call answered ``{"ok": false, "error": E}`` (HTTP 200, as Slack does).
* ``slow``: answer normally after ``delay`` seconds (for client timeouts).
* ``clear``: back to normal. Each fault may be limited to the next ``count`` matching requests
  and to some ``methods`` (API method names, ``"webhook"`` for webhooks).

The counters include ``within_retry_after``: requests that came while a served ``Retry-After``
window was open (a client that ignores Retry-After shows up there).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

FAULTS = ("down", "status_500", "rate_limited", "error", "slow", "clear")
LOG_LIMIT = 10_000  # request log entries kept; enough for any test, bounded for long sandboxes

Fault = dict[str, Any]


def fault_spec(
    fault: str,
    *,
    count: int | None = None,
    retry_after: float = 1,
    error: str = "fatal_error",
    status: int = 500,
    delay: float = 1.0,
    methods: Iterable[str] | None = None,
) -> Fault | None:
    """Check and build a fault (None for ``clear``), what ``SlackServer.set_fault`` puts in force.

    Args:
        fault: One of ``FAULTS``.
        count: Apply to the next ``count`` matching requests only; None until cleared.
        retry_after: ``rate_limited``: seconds in ``Retry-After`` (rounded up to an integer,
            since slack_sdk parses it with ``int``).
        error: ``error``: the Slack error code to answer with.
        status: ``status_500``: the HTTP status (500, 502, 503...).
        delay: ``slow``: seconds to wait before answering.
        methods: Only these API methods (``"webhook"`` for webhooks); None for all.

    Raises:
        ValueError: For an unknown fault or a bad argument.
    """
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
    if count is not None and int(count) < 1:
        raise ValueError("count must be at least 1")
    if fault == "clear":
        return None
    spec: Fault = {
        "fault": fault,
        "remaining": None if count is None else int(count),
        "methods": None if methods is None else sorted(set(methods)),
    }
    if fault == "rate_limited":
        # Rounded up to an integer, since slack_sdk parses Retry-After with int().
        spec["retry_after"] = max(1, math.ceil(float(retry_after)))
    elif fault == "error":
        spec["error"] = str(error)
    elif fault == "status_500":
        if not 500 <= int(status) <= 599:
            raise ValueError("status must be a 5xx code")
        spec["status"] = int(status)
    elif fault == "slow":
        spec["delay"] = float(delay)
    return spec


class Faults:
    """The fault in force and the request counters, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._retry_until = 0.0  # monotonic end of the last Retry-After window served
        self._stats = self._empty_stats()

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {"requests": 0, "by_method": {}, "by_status": {}, "within_retry_after": 0, "log": []}

    def set(self, spec: Fault | None) -> Fault | None:
        """Put ``spec`` in force (None clears, closing any Retry-After window); returns a copy."""
        with self._lock:
            self._fault = spec
            if spec is None:
                self._retry_until = 0.0
            return dict(spec) if spec else None

    def current(self) -> Fault | None:
        """The fault in force (with ``remaining``), or None."""
        with self._lock:
            return dict(self._fault) if self._fault else None

    def stats(self) -> dict[str, Any]:
        """A copy of the counters and the request log."""
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def reset_stats(self) -> None:
        """Zero the request counters and log."""
        with self._lock:
            self._stats = self._empty_stats()

    def begin(self, method: str, *, take_fault: bool = True) -> tuple[dict[str, Any], Fault | None]:
        """Count a request and take the fault (if any) that applies to it.

        Returns:
            The request's log entry (for :meth:`finish`) and the fault taken, or None.
        """
        now = time.monotonic()
        with self._lock:
            early = now < self._retry_until
            entry = {
                "t": time.time(),
                "method": method,
                "status": None,
                "error": None,
                "within_retry_after": early,
            }
            stats = self._stats
            stats["requests"] += 1
            stats["by_method"][method] = stats["by_method"].get(method, 0) + 1
            stats["within_retry_after"] += int(early)
            stats["log"].append(entry)
            del stats["log"][:-LOG_LIMIT]
            fault = self._fault
            if (
                not take_fault
                or fault is None
                or (fault["methods"] is not None and method not in fault["methods"])
            ):
                return entry, None
            taken = dict(fault)
            if fault["remaining"] is not None:
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    self._fault = None
            if taken["fault"] == "rate_limited":
                self._retry_until = now + taken["retry_after"]
            return entry, taken

    def finish(self, entry: dict[str, Any], status: int | None, error: str | None) -> None:
        """Record how a request was answered (status None: the connection was dropped)."""
        with self._lock:
            entry["status"] = status
            entry["error"] = error
            key = "dropped" if status is None else str(status)
            self._stats["by_status"][key] = self._stats["by_status"].get(key, 0) + 1
