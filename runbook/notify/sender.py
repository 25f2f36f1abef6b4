"""The outbox's sender thread: delivers each queue's head, journals the outcome, backs off.

A 429 pauses *all* sending until its ``Retry-After`` has passed (Slack's limits are per workspace
and method); connection errors and 5xx back off exponentially up to ``retry_cap``; permanent
errors (``invalid_auth``, ``channel_not_found``…) are retried every ``permanent_retry`` seconds and
on resume; content errors are retried once as plain short text, then given up (the message stays
in the journal and the export).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from runbook.core.events import EventType
from runbook.journal.store import Journal, LostLockError
from runbook.notify.messages import MAX_SECTION
from runbook.notify.queue import Pending, Queue
from runbook.notify.settings import SlackSettings
from runbook.notify.transport import DeliveryError

SENT, FAILED = EventType.NOTIFICATION_SENT, EventType.NOTIFICATION_FAILED


class Delivery:
    """The sending half of :class:`~runbook.notify.outbox.Outbox` (its state lives there)."""

    journal: Journal
    settings: SlackSettings
    transport: Any
    _lock: threading.RLock
    _cv: threading.Condition
    _queues: dict[tuple[str, str], Queue]
    _order: list[tuple[str, str]]
    _sent: dict[str, tuple[str | None, str | None]]
    _not_before: float
    _rate_limited_until: float | None
    _given_up: int
    _delivered: int
    _journal_error: str | None
    _in_flight: int
    _closed: bool

    def _run(self) -> None:
        while True:
            with self._cv:
                if self._closed:
                    return
                q, wait = self._next_ready()
                if q is None:
                    self._cv.wait(timeout=wait)
                    continue
                item = q.items[0]
                self._in_flight += 1
            try:
                self._deliver(q, item)
            except Exception as exc:  # noqa: BLE001 - the sender must survive anything
                with self._lock:
                    q.error, q.error_kind = f"{type(exc).__name__}: {exc}", "transient"
                    q.failing_since = q.failing_since or time.time()
                    q.due = time.monotonic() + self.settings.retry_cap
            finally:
                with self._cv:
                    self._in_flight -= 1
                    self._cv.notify_all()

    def _next_ready(self) -> tuple[Queue | None, float | None]:
        now = time.monotonic()
        if now < self._not_before:
            return None, self._not_before - now
        soonest: float | None = None
        for i, key in enumerate(self._order):
            q = self._queues[key]
            if not q.items:
                continue
            if q.due <= now:
                # Round robin: the next search starts after this queue.
                self._order.append(self._order.pop(i))
                return q, None
            soonest = q.due if soonest is None else min(soonest, q.due)
        return None, (None if soonest is None else max(0.01, soonest - now))

    def _deliver(self, q: Queue, item: Pending) -> None:
        if item.is_update:
            with self._lock:
                later = next(
                    (x for x in list(q.items)[1:] if x.is_update and x.msg["update_of"] == item.msg["update_of"]), None
                )
            if later is not None:
                # Only the latest status matters: skip an update a newer one replaces.
                self._finish(q, item, {"id": item.id, "superseded_by": later.id})
                return
        target = self._sent.get(item.msg["update_of"] or "") if item.is_update else None
        if item.is_update and (target is None or not target[1]):
            self._finish(q, item, {"id": item.id, "skipped": "the message to update was not delivered"})
            return
        thread_ts = None
        if item.msg["thread"] and not item.unthreaded:
            parent = self._sent.get(item.msg["thread"])
            thread_ts = parent[1] if parent else None
        text, blocks = item.msg["text"], item.msg["blocks"]
        if item.degraded:
            text, blocks = text[: MAX_SECTION * 3], None
        item.attempts += 1
        try:
            if item.is_update:
                assert target is not None and target[1] is not None
                posted = self.transport.update(target[0] or item.msg["channel"], target[1], text, blocks)
            else:
                posted = self.transport.post(item.msg["channel"], text, blocks, thread_ts)
        except DeliveryError as err:
            self._failed(q, item, err)
            return
        with self._lock:
            self._sent[item.id] = (posted.channel, posted.ts)
            self._delivered += 1
        payload: dict[str, Any] = {"id": item.id, "channel": posted.channel, "ts": posted.ts, "attempts": item.attempts}
        if item.is_update:
            payload["updated"] = target[1] if target else None
        if item.degraded:
            payload["degraded"] = "sent as plain text after Slack refused its blocks"
        if thread_ts:
            payload["thread_ts"] = thread_ts
        self._finish(q, item, payload)

    def _finish(self, q: Queue, item: Pending, payload: dict[str, Any]) -> None:
        with self._lock:
            if q.items and q.items[0] is item:
                q.items.popleft()
            q.error = q.error_kind = None
            q.failing_since = None
            q.backoff = 0.0
            q.due = 0.0
        self._record(item.incident, SENT, payload)

    def _failed(self, q: Queue, item: Pending, err: DeliveryError) -> None:
        now = time.monotonic()
        final = False
        with self._lock:
            if err.kind == "rate_limited":
                # Slack's window is global to the workspace: pause every queue, plus a margin.
                wait = (err.retry_after if err.retry_after is not None else 1.0) + 0.05
                self._not_before = max(self._not_before, now + wait)
                self._rate_limited_until = time.time() + wait
            elif err.kind == "content" and not item.degraded:
                item.degraded = True  # once more, as plain short text
            elif err.error == "thread_not_found" and not item.unthreaded:
                item.unthreaded = True  # its parent is gone: post at top level rather than lose it
            elif err.kind == "content" or (item.is_update and err.error == "message_not_found"):
                final = True  # Slack will never take it; it stays in the journal and the export
                if q.items and q.items[0] is item:
                    q.items.popleft()
                self._given_up += 1
            elif err.kind == "transient":
                q.backoff = min(self.settings.retry_cap, max(0.25, q.backoff * 2))
                q.due = now + q.backoff * random.uniform(0.8, 1.0)
            else:  # permanent: bad token or channel; slow retries (and on resume)
                q.due = now + self.settings.permanent_retry
            if not final and err.kind != "rate_limited":
                if q.error is None:
                    q.failing_since = time.time()
                q.error, q.error_kind = err.error, err.kind
            changed = err.error != item.last_error
            item.last_error = err.error
            n = item.attempts
        # Journal the first failure, a changed error and then every power of two, so a long
        # outage leaves a readable trail instead of thousands of events.
        if final or changed or (n & (n - 1)) == 0:
            payload: dict[str, Any] = {"id": item.id, "error": err.error, "kind": err.kind, "attempt": n}
            if err.retry_after is not None:
                payload["retry_after"] = err.retry_after
            if final:
                payload["final"] = True
            self._record(item.incident, FAILED, payload)

    def _record(self, incident: str, type_: str, payload: dict[str, Any]) -> None:
        try:
            try:
                self.journal.append(incident, type_, payload)
            except LostLockError:
                self.journal.append(incident, type_, payload)  # the token is dropped now: append unlocked
        except Exception as exc:  # noqa: BLE001 - delivery happened; the status tells the journal failed
            self._journal_error = str(exc)
