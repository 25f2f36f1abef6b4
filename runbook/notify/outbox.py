"""The notification outbox: journal first, deliver in the background, never block the operator.

Every notification is appended to the journal (``notification_queued``) before anything is sent,
then a single sender thread delivers it through :class:`~runbook.notify.transport.SlackTransport` and
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

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.core import incident as S
from runbook.core.events import NOTIFICATION_EVENTS, Event, EventType
from runbook.core.redact import scrub
from runbook.journal.store import Journal, JournalError, LostLockError
from runbook.notify.compose import UPDATES_PARENT, IncidentContext, replies_for
from runbook.notify.messages import fit_message, mrkdwn_escape, parent_message, reply_message
from runbook.notify.queue import Pending, Queue, pending_from
from runbook.notify.sender import Delivery
from runbook.notify.settings import SlackSettings
from runbook.notify.transport import SlackTransport

QUEUED, SENT, FAILED = EventType.NOTIFICATION_QUEUED, EventType.NOTIFICATION_SENT, EventType.NOTIFICATION_FAILED
RECENT = timedelta(days=7)  # resume delivers what was queued within this window


class Outbox(Delivery):
    """Journal-backed Slack outbox with a background sender.

    Args:
        journal: The journal (notifications are events of their incident).
        settings: Slack settings (variable names only; secrets are read when sending).
        transport: Delivery (defaults to :class:`SlackTransport`); tests may pass their own.
        secrets: Values to scrub from every message (environment secrets, the token).
    """

    def __init__(
        self, journal: Journal, settings: SlackSettings, *, transport: Any = None, secrets: Iterable[str] = ()
    ) -> None:
        self.journal = journal
        self.settings = settings
        self.transport = transport or SlackTransport(settings)
        self._secrets = [s for s in (*secrets, *settings.secret_values()) if s]
        self._redactors: list[Callable[[str], str]] = []
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._queues: dict[tuple[str, str], Queue] = {}
        self._order: list[tuple[str, str]] = []  # round-robin order of queues
        self._known: set[str] = set()  # ids queued or delivered (never enqueue/send twice)
        self._sent: dict[str, tuple[str | None, str | None]] = {}  # id -> (channel id, ts)
        self._incidents: dict[str, IncidentContext] = {}
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
        if ev.kind in NOTIFICATION_EVENTS or self._closed:
            return  # our own events: ignoring them avoids loops
        try:
            with self._lock:
                self._handle(ev)
        except Exception as exc:  # noqa: BLE001 - the operator's append already succeeded; never fail it
            self._journal_error = f"{type(exc).__name__}: {exc}"

    def enqueue_message(
        self, incident: str, text: str, *, channel: str | None = None, step: str | None = None, thread: bool = True
    ) -> str:
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
            info = ctx.info()
            tag = "" if parent else f"[{info.incident}] "
            head = f"{info.prefix()}{tag}"
            if self.settings.via == "webhook" and not same:
                head += f"(for {dest}) "
            body = mrkdwn_escape(head + text)  # the fallback text is mrkdwn too, like the block
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]
            ids = self._enqueue(
                incident,
                dest,
                "message",
                body,
                blocks,
                thread=parent,
                step=step,
                prefix="a" + uuid.uuid4().hex[:10],
                role=role,
            )
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
            item = Pending(
                incident,
                {
                    "id": nid,
                    "channel": channel if via == "api" else "webhook",
                    "kind": kind,
                    "via": via,
                    "text": part_text,
                    "blocks": part_blocks,
                    "thread": thread,
                    "update_of": update_of,
                    "role": role,
                },
            )
            try:
                self.journal.append(incident, QUEUED, item.msg, step=step)
            except LostLockError:
                # Someone took the incident over: our token is gone; record it unlocked.
                self.journal.append(incident, QUEUED, item.msg, step=step)
            except JournalError as exc:
                # Not durable, but still worth delivering from memory; the status says so.
                self._journal_error = str(exc)
            self._known.add(nid)
            self._push(item)
            ids.append(nid)
        return ids

    def _push(self, item: Pending) -> None:
        key = (item.incident, item.msg["channel"])
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = Queue(key)
            self._order.append(key)
        q.items.append(item)
        self._cv.notify_all()

    # -- composing -----------------------------------------------------------------------------

    def _context(self, incident: str, first: Event | None = None) -> IncidentContext:
        ctx = self._incidents.get(incident)
        if ctx is not None:
            return ctx
        ctx = self._incidents[incident] = IncidentContext(S.IncidentState(incident))
        if first is not None and first.kind == EventType.INCIDENT_OPENED:
            return ctx
        # An incident opened by an earlier process (resume): rebuild what the messages show, and
        # queue what that process journaled but never delivered (before anything new).
        for ev in self.journal.iter_events(incident):
            ctx.apply(ev)
        for nid, n in ctx.state.notifications.items():
            if n.settled:
                self._known.add(nid)
                if n.ts:
                    self._sent[nid] = (n.channel_id, n.ts)
            elif nid not in self._known:
                self._known.add(nid)
                self._push(pending_from(incident, n.queued, self.settings))
        return ctx

    def _ensure_parent(self, ctx: IncidentContext) -> str:
        if ctx.parent_id is None:
            text, blocks = parent_message(ctx.info(), via=self.settings.via)
            ids = self._enqueue(ctx.state.id, self.settings.channel, "parent", text, blocks, prefix="parent")
            ctx.parent_id = ids[0] if ids else f"{ctx.state.id}#parent"
        return ctx.parent_id

    def _handle(self, ev: Event) -> None:
        ctx = self._context(ev.incident, ev)
        ctx.apply(ev)
        if ctx.state.mode == "dry-run":
            return  # a rehearsal of the plan: nothing happened that a channel needs to hear about
        if ev.kind == EventType.INCIDENT_OPENED:
            self._ensure_parent(ctx)
            return
        replies = replies_for(ctx, ev)
        updates = ev.kind in UPDATES_PARENT
        if not replies and not updates:
            return
        parent = self._ensure_parent(ctx)
        via, info = self.settings.via, ctx.info()
        for i, (emoji, headline, detail) in enumerate(replies):
            text, blocks = reply_message(info, emoji, headline, detail, via=via)
            self._enqueue(
                ev.incident,
                self.settings.channel,
                "reply",
                text,
                blocks,
                thread=parent if via == "api" else None,
                step=ev.step,
                prefix=f"{ev.n}" + (f"r{i}" if i else ""),
            )
        if via == "api" and updates:
            text, blocks = parent_message(info, via=via)
            self._enqueue(
                ev.incident, self.settings.channel, "update", text, blocks, update_of=parent, prefix=f"{ev.n}u"
            )

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
                self._push(pending_from(ev.incident, p, self.settings))
                count += 1
        return count

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
