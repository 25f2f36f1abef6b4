"""The TUI's side of the engine interface: :class:`TuiFrontend` implements ``Frontend``.

The engine calls :meth:`TuiFrontend.emit` and :meth:`TuiFrontend.decide` from its own thread.
Nothing here touches a widget:

* events are queued under a lock and the run screen drains the queue on a timer (every 80 ms),
  so a step streaming hundreds of thousands of lines costs one list append per line and the UI
  repaints at most ~12 times a second; only the last ``output_tail`` lines are kept (the full
  output is in the step log);
* a decision is posted to the screen as a :class:`DecisionRequested` message and the engine
  thread blocks on a :class:`PendingDecision` until the screen answers it, or until the front end
  is closed (the app exits), which answers ``QUIT`` so the incident stays resumable.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from textual.message import Message

from runbook.engine.frontend import Choice, Decision, EngineEvent, OutputLine, Request

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

OUTPUT_TAIL = 1000


class PendingDecision:
    """A question from the engine waiting for the operator; answered at most once.

    Args:
        request: What the engine asks.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.decision: Decision | None = None
        self._done = threading.Event()

    @property
    def answered(self) -> bool:
        """Whether an answer was given."""
        return self._done.is_set()

    def answer(self, decision: Decision) -> bool:
        """Answer the question (the first answer wins).

        Args:
            decision: The operator's decision.

        Returns:
            True if this answer was the one taken.
        """
        if self._done.is_set():
            return False
        self.decision = decision
        self._done.set()
        return True

    def wait(self, timeout: float) -> bool:
        """Block (engine thread) until answered or ``timeout`` seconds pass."""
        return self._done.wait(timeout)


class DecisionRequested(Message):
    """The engine needs the operator to decide something.

    Args:
        pending: The question, with the means to answer it.
    """

    def __init__(self, pending: PendingDecision) -> None:
        super().__init__()
        self.pending = pending


class EventsWaiting(Message):
    """New engine events are queued (a hint to drain soon; the timer drains anyway)."""


class TuiFrontend:
    """Frontend for the Textual app (thread-safe; see the module docstring).

    Args:
        target: The message pump (the run screen) that receives :class:`DecisionRequested`.
        output_tail: How many output lines to keep between two drains.
    """

    def __init__(self, target: MessagePump | None = None, *, output_tail: int = OUTPUT_TAIL) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._events: list[EngineEvent] = []
        self._output: deque[OutputLine] = deque(maxlen=output_tail)
        self._output_count = 0
        self._closed = threading.Event()
        self._pending: PendingDecision | None = None
        self.quit_requested = False

    # -- engine thread ---------------------------------------------------------------------------

    def emit(self, event: EngineEvent) -> None:
        """Queue an engine event (never blocks on the UI)."""
        if isinstance(event, OutputLine):
            with self._lock:
                self._output.append(event)
                self._output_count += 1
            return
        with self._lock:
            self._events.append(event)

    def decide(self, request: Request) -> Decision:
        """Ask the screen and block until it answers (``QUIT`` if the app goes away)."""
        if self._closed.is_set() or self.quit_requested or self.target is None:
            return Decision(Choice.QUIT)
        pending = PendingDecision(request)
        with self._lock:
            self._pending = pending
        if not self.target.post_message(DecisionRequested(pending)):
            pending.answer(Decision(Choice.QUIT))
        while not pending.wait(0.2):
            if self._closed.is_set():
                pending.answer(Decision(Choice.QUIT))
        with self._lock:
            if self._pending is pending:
                self._pending = None
        assert pending.decision is not None
        return pending.decision

    # -- UI thread -------------------------------------------------------------------------------

    def drain(self) -> tuple[list[EngineEvent], list[OutputLine], int]:
        """Take the queued events and output lines.

        Returns:
            (events, the last output lines, how many output lines arrived since the last drain).
        """
        with self._lock:
            events, self._events = self._events, []
            output = list(self._output)
            self._output.clear()
            count, self._output_count = self._output_count, 0
        return events, output, count

    @property
    def pending(self) -> PendingDecision | None:
        """The unanswered question, if any."""
        with self._lock:
            p = self._pending
        return p if p is not None and not p.answered else None

    def close(self) -> None:
        """The UI is going away: every pending and future question is answered ``QUIT``."""
        self._closed.set()
        p = self.pending
        if p is not None:
            p.answer(Decision(Choice.QUIT))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()


def answer_quit(pending: Any) -> None:
    """Answer a pending decision with QUIT (helper for screens)."""
    if pending is not None:
        pending.answer(Decision(Choice.QUIT))
