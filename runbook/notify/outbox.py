"""The notification outbox: journal first, deliver in the background, never block the operator.

Every notification is appended to the journal (``notification_queued``) before anything is sent,
then a single sender thread delivers it through :class:`~runbook.notify.slack.SlackTransport` and
journals the outcome (``notification_sent`` with Slack's ``ts``, or ``notification_failed`` with the
error and attempt). So a crash, a kill or a quit leaves undelivered messages in the journal, and
:meth:`Outbox.resume_pending` in a later process delivers exactly those: an id with a
``notification_sent`` is never posted again.

Ordering: one FIFO queue per (incident, channel). Only the head of a queue is ever in flight, so a
thread reply never leaves before its parent (it needs the parent's ``ts``) and replies keep their
order. A failing queue (Slack down, bad channel) holds its own messages only.

Retry policy: a 429 pauses *all* sending until its ``Retry-After`` has passed (Slack's limits are
per workspace and method); connection errors and 5xx back off exponentially up to ``retry_cap``;
permanent errors (``invalid_auth``, ``channel_not_found``…) are retried every ``permanent_retry``
seconds and on resume, and show as "failing since HH:MM: error" in :meth:`Outbox.status`.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.journal.store import Event, Journal, JournalError, LostLockError
from runbook.notify.slack import (
    MAX_SECTION,
    DeliveryError,
    IncidentInfo,
    SlackSettings,
    SlackTransport,
    fit_message,
    mrkdwn_escape,
    parent_message,
    reply_message,
    scrub,
)

QUEUED = "notification_queued"
SENT = "notification_sent"
FAILED = "notification_failed"
RECENT = timedelta(days=7)  # resume delivers what was queued within this window

_RESOLVING = {"step_finished", "step_failed", "step_skipped", "step_marked_done", "step_planned", "step_retry_requested"}


@dataclass
class Pending:
    """One notification waiting for delivery (mirrors its ``notification_queued`` payload)."""

    id: str
    incident: str
    channel: str
    kind: str  # parent | reply | update | message
    via: str  # api | webhook
    text: str
    blocks: list[dict[str, Any]] | None
    thread: str | None = None  # id of the notification this replies under
    update_of: str | None = None  # kind == update: id of the message it rewrites
    role: str = "incident"  # incident | security | explicit: a fixed config re-routes on resume
    attempts: int = 0
    degraded: bool = False  # refused for its content once: resend as plain, short text
    unthreaded: bool = False  # its parent message is gone: post at top level
    last_error: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "kind": self.kind,
            "via": self.via,
            "text": self.text,
            "blocks": self.blocks,
            "thread": self.thread,
            "update_of": self.update_of,
            "role": self.role,
        }


@dataclass
class _Queue:
    key: tuple[str, str]
    items: deque[Pending] = field(default_factory=deque)
    due: float = 0.0  # monotonic time the head may next be tried
    backoff: float = 0.0
    error: str | None = None  # last error of the head, until it is delivered
    error_kind: str | None = None
    failing_since: float | None = None  # wall-clock time of the first failure of this streak


@dataclass
class _Incident:
    info: IncidentInfo
    steps: dict[str, tuple[str, bool | str]] = field(default_factory=dict)  # id -> (title, notify)
    status: dict[str, str] = field(default_factory=dict)  # step id -> done|failed|skipped
    parent_id: str | None = None


class Outbox:
    """Journal-backed Slack outbox with a background sender.

    Args:
        journal: The journal (notifications are events of their incident).
        settings: Slack settings (variable names only; secrets are read when sending).
        transport: Delivery (defaults to :class:`SlackTransport`); tests may pass their own.
        secrets: Values to scrub from every message (environment secrets, the token).
    """

    def __init__(self, journal: Journal, settings: SlackSettings, *, transport: Any = None, secrets: Iterable[str] = ()) -> None:
        self.journal = journal
        self.settings = settings
        self.transport = transport or SlackTransport(settings)
        self._secrets = [s for s in (*secrets, *settings.secret_values()) if s]
        self._redactors: list[Callable[[str], str]] = []
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._order: list[tuple[str, str]] = []  # round-robin order of queues
        self._known: set[str] = set()  # ids queued or delivered (never enqueue/send twice)
        self._sent: dict[str, tuple[str | None, str | None]] = {}  # id -> (channel id, ts)
        self._incidents: dict[str, _Incident] = {}
        self._not_before = 0.0  # monotonic: a 429's Retry-After window
        self._rate_limited_until: float | None = None
        self._given_up = 0
        self._delivered = 0
        self._journal_error: str | None = None
        self._in_flight = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._resumer: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Outbox:
        """Start the sender thread (a daemon: a quitting process never waits for Slack)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="slack-outbox", daemon=True)
                self._thread.start()
        return self

    def close(self) -> None:
        """Stop the sender; what is still queued stays in the journal for the next process."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.settings.timeout + 1)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def default_channel(self) -> str:
        return self.settings.channel

    @property
    def security_channel(self) -> str | None:
        return self.settings.security_channel

    def use_redactor(self, redact: Any) -> None:
        """Also mask what the engine's redactor masks (secret param values bound later)."""
        fn = getattr(redact, "text", redact)
        if callable(fn):
            self._redactors.append(fn)

    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 3:
            self._secrets.append(value)

    # -- the operator's path: journal listener and enqueue --------------------------------------

    def on_event(self, ev: Event) -> None:
        """Journal listener: turn an engine event into notifications. Never raises."""
        if ev.type.startswith("notification_") or self._closed:
            return  # our own events: ignoring them avoids loops
        try:
            with self._lock:
                self._handle(ev)
        except Exception as exc:  # noqa: BLE001 - the operator's append already succeeded; never fail it
            self._journal_error = f"{type(exc).__name__}: {exc}"

    def enqueue_message(self, incident: str, text: str, *, channel: str | None = None, step: str | None = None, thread: bool = True) -> str:
        """Queue a playbook's own message (``notify.slack``); returns its notification id.

        Args:
            incident: The incident it belongs to.
            text: Message text (plain; escaped for mrkdwn here).
            channel: Destination; default the incident channel. Another channel gets a
                top-level message tagged with the incident id.
            step: The step that sent it (journaled with the event).
            thread: In the incident channel, reply in the incident's thread.
        """
        with self._lock:
            ctx = self._context(incident)
            dest = channel or self.settings.channel
            same = dest == self.settings.channel
            role = "incident" if same else ("security" if dest == self.settings.security_channel else "explicit")
            parent = None
            if same and thread and self.settings.via == "api":
                parent = self._ensure_parent(ctx)
            info = ctx.info
            tag = "" if parent else f"[{info.incident}] "
            head = f"{info.prefix()}{tag}"
            if self.settings.via == "webhook" and not same:
                head += f"(for {dest}) "
            body = head + text
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn_escape(body)}}]
            ids = self._enqueue(incident, dest, "message", body, blocks, thread=parent, step=step, prefix="a" + uuid.uuid4().hex[:10], role=role)
            return ids[0]

    def _enqueue(
        self,
        incident: str,
        channel: str,
        kind: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        *,
        thread: str | None = None,
        update_of: str | None = None,
        step: str | None = None,
        prefix: str,
        role: str = "incident",
    ) -> list[str]:
        """Journal then queue one message (split into parts when over Slack's limits). Lock held."""
        text = self._scrub(text)
        blocks = self._scrub_value(blocks) if blocks is not None else None
        ids = []
        via = self.settings.via
        parts = fit_message(text, blocks)
        for i, (part_text, part_blocks) in enumerate(parts):
            nid = f"{incident}#{prefix}" + (f".{i + 1}" if len(parts) > 1 else "")
            if nid in self._known:
                continue
            item = Pending(nid, incident, channel if via == "api" else "webhook", kind, via, part_text, part_blocks, thread, update_of, role)
            try:
                self.journal.append(incident, QUEUED, item.payload(), step=step)
            except LostLockError:
                # Someone took the incident over: our token is gone; record it unlocked.
                self.journal.append(incident, QUEUED, item.payload(), step=step)
            except JournalError as exc:
                # Not durable, but still worth delivering from memory; the status says so.
                self._journal_error = str(exc)
            self._known.add(nid)
            self._push(item)
            ids.append(nid)
        return ids

    def _push(self, item: Pending) -> None:
        key = (item.incident, item.channel)
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue(key)
            self._order.append(key)
        q.items.append(item)
        self._cv.notify_all()

    # -- composing -----------------------------------------------------------------------------

    def _context(self, incident: str, first: Event | None = None) -> _Incident:
        ctx = self._incidents.get(incident)
        if ctx is not None:
            return ctx
        ctx = self._incidents[incident] = _Incident(IncidentInfo(incident))
        if first is not None and first.type == "incident_opened":
            return ctx
        # An incident opened by an earlier process (resume): rebuild what the messages show, and
        # queue what that process journaled but never delivered (before anything new).
        queued: dict[str, dict[str, Any]] = {}
        for ev in self.journal.iter_events(incident):
            p = ev.payload
            if ev.type == QUEUED:
                if p.get("kind") == "parent":
                    ctx.parent_id = p.get("id")
                queued[p.get("id", "")] = p
            elif ev.type == SENT:
                queued.pop(p.get("id", ""), None)
                self._known.add(p.get("id", ""))
                if p.get("ts"):
                    self._sent[p["id"]] = (p.get("channel"), p.get("ts"))
            elif ev.type == FAILED:
                if p.get("final"):
                    queued.pop(p.get("id", ""), None)
                    self._known.add(p.get("id", ""))
            elif not ev.type.startswith("notification_"):
                self._apply(ctx, ev)
        for nid, p in queued.items():
            if nid not in self._known:
                self._known.add(nid)
                self._push(_pending(incident, p, self.settings))
        return ctx

    def _ensure_parent(self, ctx: _Incident) -> str:
        if ctx.parent_id is None:
            text, blocks = parent_message(ctx.info, via=self.settings.via)
            ids = self._enqueue(ctx.info.incident, self.settings.channel, "parent", text, blocks, prefix="parent")
            ctx.parent_id = ids[0] if ids else f"{ctx.info.incident}#parent"
        return ctx.parent_id

    @staticmethod
    def _apply(ctx: _Incident, ev: Event) -> None:
        """Fold one engine event into what the parent message shows."""
        p, t, info = ev.payload, ev.type, ctx.info
        if t == "incident_opened":
            info.title = str(p.get("title") or "")
            info.playbook = str(p.get("playbook") or "")
            info.tier = str(p.get("tier") or "")
            info.level = p.get("level")
            info.env = str(p.get("env") or "")
            info.mode = str(p.get("mode") or "")
            info.rto = p.get("rto")
            info.rpo = p.get("rpo")
            info.operator = ev.actor
            info.opened = ev.ts
            ctx.steps = _playbook_steps(str(p.get("playbook_text") or ""))
            info.total = len(ctx.steps)
        elif t in ("take_over", "resumed"):
            info.operator = ev.actor
            info.status = "running"
        elif t == "reopened":
            info.status, info.elapsed, info.rto_met = "running", None, None
        elif t == "paused":
            info.status = "paused"
        elif t == "incident_closed":
            info.status = str(p.get("status") or "closed")
            info.elapsed = p.get("elapsed")
            info.rto_met = p.get("rto_met")
        elif ev.step is not None:
            if t in ("step_finished", "step_marked_done"):
                ctx.status[ev.step] = "done"
            elif t == "step_failed" and not p.get("will_retry"):
                ctx.status[ev.step] = "failed"
            elif t == "step_skipped":
                ctx.status[ev.step] = "skipped"
            elif t == "step_retry_requested":
                ctx.status.pop(ev.step, None)
        if ev.step is not None or t == "incident_closed":
            vals = list(ctx.status.values())
            info.done, info.failed, info.skipped = vals.count("done"), vals.count("failed"), vals.count("skipped")

    def _handle(self, ev: Event) -> None:
        ctx = self._context(ev.incident, ev)
        self._apply(ctx, ev)
        info, p, t = ctx.info, ev.payload, ev.type
        if info.mode == "dry-run":
            return  # a rehearsal of the plan: nothing happened that a channel needs to hear about
        via = self.settings.via
        replies: list[tuple[str, str, str]] = []  # (emoji, headline, detail)
        step_title = ""
        notify: bool | str = False
        if ev.step is not None:
            step_title, notify = ctx.steps.get(ev.step, (ev.step, False))
            step_title = f"{step_title} (`{ev.step}`)" if step_title != ev.step else f"`{ev.step}`"
        dur = _dur(p.get("duration"))
        if t == "incident_opened":
            self._ensure_parent(ctx)
            return
        if t in ("step_finished", "step_marked_done") and notify:
            headline = notify if isinstance(notify, str) else f"Step {step_title} done"
            detail = f"Step {step_title} done" + (f" in {dur}" if dur else "") if isinstance(notify, str) else (f"Took {dur}." if dur else "")
            if t == "step_marked_done":
                detail = f"Marked done by {ev.actor}: {p.get('reason')}"
            last = _last_line(p.get("outputs"))
            if last:
                detail += f"\nLast output line: {last}"
            replies.append(("✅", headline, detail.strip()))
        elif t == "step_failed" and not p.get("will_retry"):
            detail = str(p.get("error") or "")
            if p.get("attempt"):
                detail += f" (attempt {p.get('attempt')})"
            replies.append(("❌", f"Step {step_title} failed", detail))
        elif t == "step_skipped":
            who = "the engine" if p.get("by") == "engine" else ev.actor
            replies.append(("⏭️", f"Step {step_title} skipped by {who}", f"Reason: {p.get('reason')}"))
        elif t == "confirmation_given" and (p.get("effect") == "destructive" or p.get("level") == "typed"):
            typed = f", typed “{p.get('typed')}”" if "typed" in p else ""
            how = f" ({p.get('how')})" if p.get("how") and p.get("how") != "operator" else ""
            replies.append(
                ("⚠️", f"{p.get('effect', 'destructive')} step {step_title} confirmed by {ev.actor}{typed}{how}", f"Runs: {p.get('action')}\nTarget: {p.get('target')}")
            )
        elif t == "take_over":
            replies.append(("🔁", f"Incident taken over by {ev.actor}", f"From {p.get('from')} (pid {p.get('from_pid')})."))
        elif t == "paused":
            replies.append(("⏸️", "Incident paused", str(p.get("reason") or "")))
        elif t == "incident_closed":
            replies.append(("🏁" if p.get("status") == "completed" else "🛑", f"Incident {p.get('status')}", _close_detail(info, p)))
        elif t == "drill_result":
            replies.append(("🧪", "Drill result", _drill_detail(p)))
        if not replies and not (t in _RESOLVING or t in ("paused", "resumed", "take_over", "reopened", "incident_closed")):
            return
        parent = self._ensure_parent(ctx)
        for i, (emoji, headline, detail) in enumerate(replies):
            text, blocks = reply_message(info, emoji, headline, detail, via=via)
            self._enqueue(ev.incident, self.settings.channel, "reply", text, blocks, thread=parent if via == "api" else None, step=ev.step, prefix=f"{ev.n}" + (f"r{i}" if i else ""))
        if via == "api" and (t in _RESOLVING or t in ("paused", "resumed", "take_over", "reopened", "incident_closed")):
            text, blocks = parent_message(info, via=via)
            self._enqueue(ev.incident, self.settings.channel, "update", text, blocks, update_of=parent, prefix=f"{ev.n}u")

    # -- scrubbing -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for fn in self._redactors:
            text = fn(text)
        return scrub(text, self._secrets)

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._scrub_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._scrub_value(v) for k, v in value.items()}
        return value

    # -- resume ----------------------------------------------------------------------------------

    def resume_pending_in_background(self) -> None:
        """:meth:`resume_pending` off the operator's path (it scans every incident's outbox)."""
        with self._lock:
            if self._resumer is None:
                self._resumer = threading.Thread(target=self._resume_quietly, name="slack-outbox-resume", daemon=True)
                self._resumer.start()

    def _resume_quietly(self) -> None:
        try:
            self.resume_pending()
        except Exception as exc:  # noqa: BLE001 - a journal problem shows in the status, never as a crash
            self._journal_error = f"resume: {exc}"

    def resume_pending(self, *, within: timedelta = RECENT, incidents: Iterable[str] | None = None) -> int:
        """Queue what earlier processes journaled but never delivered.

        Skips incidents driven right now by another live process (its own outbox delivers them)
        and notifications older than ``within``.

        Returns:
            How many notifications were queued for delivery.
        """
        wanted = set(incidents) if incidents is not None else None
        cutoff = (datetime.now(UTC) - within).isoformat()
        done: set[str] = set()
        for ev in self.journal.events_of_type(SENT):
            nid = ev.payload.get("id", "")
            done.add(nid)
            if ev.payload.get("ts"):
                self._sent.setdefault(nid, (ev.payload.get("channel"), ev.payload.get("ts")))
        for ev in self.journal.events_of_type(FAILED):
            if ev.payload.get("final"):
                done.add(ev.payload.get("id", ""))
        locks: dict[str, bool] = {}
        count = 0
        with self._lock:
            for ev in self.journal.events_of_type(QUEUED):
                p = ev.payload
                nid = p.get("id", "")
                if nid in done or nid in self._known or ev.ts < cutoff:
                    continue
                if wanted is not None and ev.incident not in wanted:
                    continue
                if ev.incident not in locks:
                    lock = self.journal.lock_info(ev.incident)
                    locks[ev.incident] = lock is None or self.journal.holds(ev.incident) or not lock.alive()
                if not locks[ev.incident]:
                    continue
                self._known.add(nid)
                self._push(_pending(ev.incident, p, self.settings))
                count += 1
        return count

    # -- the sender --------------------------------------------------------------------------------

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

    def _next_ready(self) -> tuple[_Queue | None, float | None]:
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

    def _deliver(self, q: _Queue, item: Pending) -> None:
        if item.kind == "update":
            with self._lock:
                later = next((x for x in list(q.items)[1:] if x.kind == "update" and x.update_of == item.update_of), None)
            if later is not None:
                # Only the latest status matters: skip an update a newer one replaces.
                self._finish(q, item, {"id": item.id, "superseded_by": later.id})
                return
        target = self._sent.get(item.update_of or "") if item.kind == "update" else None
        if item.kind == "update" and (target is None or not target[1]):
            self._finish(q, item, {"id": item.id, "skipped": "the message to update was not delivered"})
            return
        thread_ts = None
        if item.thread and not item.unthreaded:
            parent = self._sent.get(item.thread)
            thread_ts = parent[1] if parent else None
        text, blocks = item.text, item.blocks
        if item.degraded:
            text, blocks = text[: MAX_SECTION * 3], None
        item.attempts += 1
        try:
            if item.kind == "update":
                assert target is not None and target[1] is not None
                posted = self.transport.update(target[0] or item.channel, target[1], text, blocks)
            else:
                posted = self.transport.post(item.channel, text, blocks, thread_ts)
        except DeliveryError as err:
            self._failed(q, item, err)
            return
        with self._lock:
            self._sent[item.id] = (posted.channel, posted.ts)
            self._delivered += 1
        payload: dict[str, Any] = {"id": item.id, "channel": posted.channel, "ts": posted.ts, "attempts": item.attempts}
        if item.kind == "update":
            payload["updated"] = target[1] if target else None
        if item.degraded:
            payload["degraded"] = "sent as plain text after Slack refused its blocks"
        if thread_ts:
            payload["thread_ts"] = thread_ts
        self._finish(q, item, payload)

    def _finish(self, q: _Queue, item: Pending, payload: dict[str, Any]) -> None:
        with self._lock:
            if q.items and q.items[0] is item:
                q.items.popleft()
            q.error = q.error_kind = None
            q.failing_since = None
            q.backoff = 0.0
            q.due = 0.0
        self._record(item.incident, SENT, payload)

    def _failed(self, q: _Queue, item: Pending, err: DeliveryError) -> None:
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
            elif err.kind == "content" or (item.kind == "update" and err.error == "message_not_found"):
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

    # -- what the operator sees --------------------------------------------------------------------

    def waiting(self, incident: str | None = None) -> int:
        """Notifications not yet delivered (of one incident, or all)."""
        with self._lock:
            return sum(len(q.items) for key, q in self._queues.items() if incident is None or key[0] == incident)

    def status_info(self) -> dict[str, Any]:
        """Machine-readable outbox state for front ends."""
        with self._lock:
            waiting = sum(len(q.items) for q in self._queues.values())
            failing = [q for q in self._queues.values() if q.items and q.error]
            permanent = [q for q in failing if q.error_kind == "permanent"]
            worst = min(permanent or failing, key=lambda q: q.failing_since or 0.0) if failing else None
            limited = self._rate_limited_until is not None and self._rate_limited_until > time.time()
            return {
                "waiting": waiting,
                "delivered": self._delivered,
                "given_up": self._given_up,
                "failing": bool(permanent),
                "retrying": bool(failing) and not permanent,
                "error": worst.error if worst else None,
                "since": worst.failing_since if worst else None,
                "rate_limited": limited,
                "journal_error": self._journal_error,
                "via": self.settings.via,
            }

    def status(self) -> str:
        """One line: ``all sent``, ``3 waiting``, ``failing since 04:12: channel_not_found``…"""
        s = self.status_info()
        since = datetime.fromtimestamp(s["since"]).strftime("%H:%M") if s["since"] else ""
        if s["waiting"] == 0:
            text = "all sent"
            if s["given_up"]:
                text += f" ({s['given_up']} refused by Slack; kept in the journal)"
        elif s["failing"]:
            text = f"failing since {since}: {s['error']} ({s['waiting']} waiting)"
        elif s["retrying"]:
            text = f"{s['waiting']} waiting; retrying since {since}: {s['error']}"
        elif s["rate_limited"]:
            text = f"{s['waiting']} waiting (rate limited by Slack)"
        else:
            text = f"{s['waiting']} waiting"
        if s["journal_error"]:
            text += f"; journal: {s['journal_error']}"
        return text

    def retry_now(self) -> None:
        """Try every waiting queue again now (Retry-After windows still honoured)."""
        with self._cv:
            for q in self._queues.values():
                q.due = 0.0
                q.backoff = 0.0
            self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> str:
        """Wait up to ``timeout`` seconds for delivery (short-lived runs call this at exit).

        Returns:
            :meth:`status`, or ``"N waiting; delivered on resume"`` when some are left queued.
        """
        timeout = self.settings.flush_seconds if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        self.start()
        if self._resumer is not None:
            self._resumer.join(max(0.0, deadline - time.monotonic()))
        self.retry_now()
        with self._cv:
            while True:
                waiting = sum(len(q.items) for q in self._queues.values())
                if waiting == 0 and self._in_flight == 0:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(timeout=min(left, 0.2))
        if waiting:
            s = self.status_info()
            why = f" ({s['error']})" if s["error"] else ""
            return f"{waiting} waiting{why}; delivered on resume"
        return self.status()


def _pending(incident: str, p: dict[str, Any], settings: SlackSettings) -> Pending:
    """A queue entry from a journaled ``notification_queued`` payload.

    Messages for the incident (or security) channel go where the configuration says *now*, so
    fixing a wrong channel in runbook.toml and resuming delivers them.
    """
    role = str(p.get("role") or "incident")
    channel = str(p.get("channel") or settings.channel)
    if settings.via == "webhook":
        channel = "webhook"
    elif role == "incident":
        channel = settings.channel
    elif role == "security" and settings.security_channel:
        channel = settings.security_channel
    return Pending(
        str(p.get("id", "")),
        incident,
        channel,
        str(p.get("kind") or "reply"),
        str(p.get("via") or "api"),
        str(p.get("text") or ""),
        p.get("blocks"),
        p.get("thread"),
        p.get("update_of"),
        role,
    )


def _playbook_steps(text: str) -> dict[str, tuple[str, bool | str]]:
    """Step id -> (title, notify) from the journaled playbook YAML (parsed once per incident)."""
    if not text:
        return {}
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - a message without step titles is still a message
        return {}
    out: dict[str, tuple[str, bool | str]] = {}
    for s in (data or {}).get("steps") or []:
        if isinstance(s, dict) and isinstance(s.get("id"), str):
            out[s["id"]] = (str(s.get("title") or s["id"]), s.get("notify") or False)
    return out


def _dur(value: Any) -> str:
    if value is None:
        return ""
    from runbook.core.durations import format_duration

    try:
        return format_duration(float(value))
    except (TypeError, ValueError):
        return ""


def _last_line(outputs: Any) -> str:
    if not isinstance(outputs, dict):
        return ""
    line = outputs.get("last_line")
    return str(line)[:500] if isinstance(line, str) else ""


def _close_detail(info: IncidentInfo, p: dict[str, Any]) -> str:
    elapsed = p.get("elapsed")
    lines = []
    rto = p.get("rto_target")
    if rto:
        lines.append(f"RTO: achieved {_dur(elapsed)} vs target {_dur(rto)} — {'met' if p.get('rto_met') else 'MISSED'}")
    else:
        lines.append(f"Elapsed {_dur(elapsed)} (no RTO target)")
    if info.rpo is not None:
        lines.append(f"RPO target {_dur(info.rpo)}" + (" (achieved RPO follows in the drill result)" if info.drill else " (data loss is assessed in the review)"))
    lines.append(f"Steps: {info.done} done, {info.failed} failed, {info.skipped} skipped of {info.total}")
    if p.get("message"):
        lines.append(str(p["message"]))
    return "\n".join(lines)


def _drill_detail(p: dict[str, Any]) -> str:
    lines = []
    for key, value in p.items():
        if isinstance(value, dict | list):
            continue
        if key in ("rto", "rpo", "rto_target", "rpo_target", "rto_achieved", "rpo_achieved", "elapsed") and isinstance(value, int | float):
            value = _dur(value)
        lines.append(f"{key}: {value}")
    return "\n".join(lines[:30])
