"""The supervisor's front end: relays the engine's events to attached clients and their decisions back.

Why the engine never waits on a client: every client has its own writer thread and queue, so a
slow terminal (or one stopped with Ctrl-Z) costs the engine one list append per message. Output
lines beyond :data:`MAX_QUEUED` are dropped for that client (it is told how many; the step log has
them all); journaled events are never dropped, and a client that stops reading them altogether is
disconnected.

Who answers a question:

* an *interactive* driver (the TUI) gets the request and answers it;
* otherwise the *standing answers* given on a headless command line answer it (as
  :class:`~runbook.headless.HeadlessFrontend` always did: what they cannot answer ends the run
  with "needs a human", exit 3);
* with neither, the question waits for someone to attach, journaled as ``waiting`` with who last
  drove the incident. A client that goes away never answers anything.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from runbook.core.errors import NeedsHuman
from runbook.engine.frontend import Decision, EngineEvent, Journaled, OutputLine, Request, StepChanged
from runbook.engine.outcome import Outcome
from runbook.headless import HeadlessAnswers, HeadlessFrontend
from runbook.supervisor import protocol as W

MAX_QUEUED = 20_000  # output lines waiting for one client before its lines are dropped
MAX_EVENTS_QUEUED = 200_000  # journaled events waiting for one client before it is cut off
TAIL_LINES = 200  # output lines a client gets when it attaches


class Connection:
    """One attached client: its role and a writer thread that never blocks the engine."""

    def __init__(self, sock: socket.socket, hello: dict[str, Any]) -> None:
        self.sock = sock
        self.who = str(hello.get("who") or "someone")[:200]
        pid = hello.get("pid")
        self.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else 0
        self.interactive = bool(hello.get("interactive"))
        self.role = "watch"
        self.since = ""
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._events = 0
        self._dropped = 0
        self._cond = threading.Condition()
        self._closed = False
        self.writer = threading.Thread(target=self._write, name=f"client-{self.pid}", daemon=True)
        self.writer.start()

    @property
    def label(self) -> str:
        return f"{self.who} (pid {self.pid})"

    def send(self, data: bytes, *, droppable: bool = False) -> None:
        with self._cond:
            if self._closed:
                return
            if droppable and len(self._queue) - self._events >= MAX_QUEUED:
                self._dropped += 1
                return
            if not droppable:
                self._events += 1
                if self._events > MAX_EVENTS_QUEUED:
                    self._closed = True  # it stopped reading: cut it off, it can attach again
            self._queue.append((data, droppable))
            self._cond.notify()

    def close(self, *, flush: bool = True) -> None:
        """Stop writing (after what is queued, when ``flush``) and close the socket."""
        with self._cond:
            if not flush:
                self._queue.clear()
            self._closed = True
            self._cond.notify()

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch = list(self._queue)
                self._queue.clear()
                self._events = 0
                dropped, self._dropped = self._dropped, 0
                closing = self._closed
            data = b"".join(d for d, _ in batch)
            if dropped:
                data = W.encode("dropped", lines=dropped) + data
            try:
                if data:
                    self.sock.sendall(data)
            except OSError:
                closing = True
            if closing and not self._queue:
                break
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Pending:
    def __init__(self, number: int, request: Request) -> None:
        self.id = number
        self.request = request
        self.decision: Decision | None = None


class Relay:
    """The engine's :class:`~runbook.engine.frontend.Frontend` inside the supervisor.

    Args:
        answers: The standing answers of a headless command line, or None (a person answers).
        last_driver: Who started the supervisor (named while a question waits for nobody).
    """

    def __init__(self, answers: HeadlessAnswers | None, last_driver: str) -> None:
        self.standing = HeadlessFrontend(answers) if answers is not None else None
        self.driver: Connection | None = None
        self.last_driver = last_driver
        self.clients: list[Connection] = []
        self.last_n = -1
        self.running: str | None = None
        self.tail_step: str | None = None  # whose output the tail holds (the running or the last step)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pending: _Pending | None = None
        self.outcome: Outcome | None = None
        self.journal_waiting: Callable[[Request, str], None] | None = None
        self.on_take_over: Callable[[Connection, Connection], None] | None = None
        self._finished: list[Connection] = []
        self.serving = False  # set once clients can attach (until then nobody could answer)
        self._ids = itertools.count(1)
        self._cond = threading.Condition(threading.RLock())

    # -- the Frontend protocol (engine thread) ----------------------------------------------------

    def emit(self, event: EngineEvent) -> None:
        with self._cond:
            if isinstance(event, OutputLine):
                self.tail.append(event.line)
                if self.clients:
                    self._broadcast(W.encode("output", step=event.step, line=event.line), droppable=True)
            elif isinstance(event, Journaled):
                self.last_n = max(self.last_n, event.event.n)
                if self.clients:
                    self._broadcast(W.encode("event", event=W.event_to_wire(event.event)))
            elif isinstance(event, StepChanged):
                if event.status == "running":
                    self.running = self.tail_step = event.step
                    self.tail.clear()
                elif self.running == event.step:
                    self.running = None
                if self.clients:
                    self._broadcast(W.encode("status", step=event.step, status=event.status))

    def decide(self, request: Request) -> Decision:
        with self._cond:
            interactive = self.driver is not None and self.driver.interactive
            standing = None if interactive else self.standing
        if standing is not None:
            return standing.decide(request)  # may raise NeedsHuman, as headless runs always did
        return self._ask_a_person(request)

    def _ask_a_person(self, request: Request) -> Decision:
        if not self.serving:
            # Opening or resuming, before any client can attach (a secret nobody gave): say so.
            raise NeedsHuman(f"Incident {request.incident} needs an answer before it can run "
                             f"({request.title or request.ask.value}); give it on the command line and resume.")
        with self._cond:
            pending = self.pending = _Pending(next(self._ids), request)
            if self.driver is not None and self.driver.interactive:
                self.driver.send(self._request_message(pending))
                asked = True
            else:
                asked = False
        if not asked and self.journal_waiting is not None:
            self.journal_waiting(request, self.last_driver)
        with self._cond:
            while pending.decision is None and not self._standing_applies():
                self._cond.wait()
            self.pending = None
            decision, standing = pending.decision, self.standing
        if decision is None:
            assert standing is not None
            return standing.decide(request)  # a headless driver attached with its flags
        return decision

    def _standing_applies(self) -> bool:
        return self.standing is not None and not (self.driver is not None and self.driver.interactive)

    # -- clients (their reader threads) ------------------------------------------------------------

    def attach(self, conn: Connection, role: str, take_over: bool, since: str,
               answers: HeadlessAnswers | None = None) -> str | None:
        """Register a client; returns a sentence when it may not have the role it asked for.

        A driver's ``answers`` (its command-line flags) become the standing answers; an interactive
        driver answers for itself; a headless driver without flags keeps the ones in force.
        """
        with self._cond:
            if self.outcome is not None:  # it ended while this client connected: say how, and let go
                conn.send(self._welcome(conn))
                conn.send(self._outcome_message(self.outcome, []))
                conn.close()
                return None
            old = self.driver
            if role == "drive" and old is not None and not take_over:
                return f"is being driven by {old.label} since {old.since}"
            conn.since = since
            if role == "drive":
                conn.role = "drive"
                self.driver = conn
                self.last_driver = conn.label
                if conn.interactive or answers is not None:
                    self.standing = HeadlessFrontend(answers) if answers is not None else None
                self._cond.notify_all()
            self.clients.append(conn)
            conn.send(self._welcome(conn))
            if role == "drive" and self.pending is not None and conn.interactive:
                conn.send(self._request_message(self.pending))
        if role == "drive" and old is not None:
            old.role = "watch"
            old.send(W.encode("role", role="watch", by=conn.label))
            if self.on_take_over is not None:
                self.on_take_over(old, conn)
        return None

    def drives(self, conn: Connection) -> bool:
        with self._cond:
            return conn is self.driver

    def detach(self, conn: Connection) -> None:
        """A client went away; if it drove and a question was open, the question now waits (journaled)."""
        with self._cond:
            if conn in self.clients:
                self.clients.remove(conn)
            left_waiting = None
            if self.driver is conn:
                self.driver = None
                if self.pending is not None and self.pending.decision is None:
                    left_waiting = self.pending.request
            conn.close(flush=False)
        if left_waiting is not None and self.journal_waiting is not None:
            self.journal_waiting(left_waiting, conn.label)

    def answer(self, conn: Connection, number: int, decision: Decision) -> None:
        """A driver answered question ``number`` (a stale or foreign answer is ignored)."""
        with self._cond:
            pending = self.pending
            if (conn is self.driver and pending is not None and pending.id == number
                    and decision.choice in pending.request.choices):
                pending.decision = decision
                self._cond.notify_all()

    def finish(self, outcome: Outcome, notices: list[str] | None = None) -> None:
        """The engine ended: tell every client how (with ``notices``, e.g. the Slack line), then let them go."""
        with self._cond:
            self.outcome = outcome
            message = self._outcome_message(outcome, notices or [])
            for conn in self.clients:
                conn.send(message)
                conn.close()
            self._finished, self.clients = self.clients, []
            self.driver = None

    def join_clients(self, timeout: float = 5.0) -> None:
        """Wait (a bounded time) until every client has been sent the outcome."""
        for conn in self._finished:
            conn.writer.join(timeout)

    def waiting_for(self) -> dict[str, Any] | None:
        with self._cond:
            if self.pending is None:
                return None
            r = self.pending.request
            return {"ask": r.ask.value, "step": r.step, "title": r.title}

    # -- helpers ---------------------------------------------------------------------------------

    def _broadcast(self, data: bytes, *, droppable: bool = False) -> None:
        for conn in self.clients:
            conn.send(data, droppable=droppable)

    @staticmethod
    def _outcome_message(outcome: Outcome, notices: list[str]) -> bytes:
        return W.encode("outcome", status=outcome.status.value, message=outcome.message, code=outcome.exit_code,
                        notices=notices)

    def _request_message(self, pending: _Pending) -> bytes:
        return W.encode("request", id=pending.id, request=W.request_to_wire(pending.request))

    def _welcome(self, conn: Connection) -> bytes:
        driver = self.driver.label if self.driver is not None else None
        return W.encode("welcome", v=W.VERSION, role=conn.role, driver=driver, after_n=self.last_n,
                        running=self.running, tail=list(self.tail), tail_step=self.tail_step,
                        waiting=self.waiting_for(), outcome=None)
