"""The one interface between the engine and a person: the headless CLI and the TUI implement it.

The engine calls it from its own thread:

* :meth:`Frontend.emit` for every engine event (journaled events, streamed output lines, status
  changes) — it must return quickly; a TUI posts a message, a CLI prints.
* :meth:`Frontend.decide` whenever a person must choose: run or skip the next step, confirm a
  mutating or destructive step (typed for destructive), finish a manual step, handle a failure,
  resolve an interrupted step, or supply a secret on resume. It blocks until the person answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from runbook.core.events import Event


class Ask(StrEnum):
    """What the engine needs to know."""

    BEFORE_STEP = "before_step"  # run this step now? (a TUI waits for the operator's key)
    CONFIRM = "confirm"  # a mutating/destructive step needs `yes` or the typed target
    MANUAL = "manual"  # the operator does something by hand and says when it is done
    FAILURE = "failure"  # the step failed and on_failure is `ask`
    INTERRUPTED = "interrupted"  # the step was started before a crash and never finished
    SECRET = "secret"  # a secret parameter's value (never journaled) is needed to go on


class Choice(StrEnum):
    RUN = "run"
    CONFIRM = "confirm"  # with Decision.typed for typed confirmations
    REFUSE = "refuse"
    DONE = "done"  # manual step done / interrupted step marked done
    RETRY = "retry"
    SKIP = "skip"  # with a reason
    STOP = "stop"  # end the incident as failed
    QUIT = "quit"  # pause: the incident stays open and resumable
    TERMINATE = "terminate"  # stop what an interrupted step left running (typed: the step's id)
    VALUE = "value"  # with Decision.value (SECRET)


@dataclass
class Request:
    """A question for the operator, with everything needed to answer it safely."""

    ask: Ask
    incident: str
    step: str | None
    title: str = ""
    description: str = ""  # Markdown from the playbook
    action: str = ""  # the exact resolved call (argv or API), secrets redacted
    effect: str = ""  # read-only | mutating | destructive
    target: str = ""  # what it acts on
    confirm: str = "none"  # none | yes | typed
    expected: str | None = None  # for typed confirmations: what must be typed
    shown_expected: str | None = None  # ``expected`` as a screen may show it (a secret's value masked)
    expected_sha256: str | None = None  # set instead of ``expected`` where a secret target crosses a socket
    error: str | None = None  # FAILURE: why
    attempt: int = 0
    choices: tuple[Choice, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # INTERRUPTED: started_at, last_output, running…


    def expected_text(self) -> str:
        """What a typed confirmation must match, as it may be shown: a secret target stays masked."""
        return self.shown_expected if self.shown_expected is not None else (self.expected or "")

    def expected_is_secret(self) -> bool:
        return self.expected_sha256 is not None or (
            self.shown_expected is not None and self.shown_expected != self.expected)

    def matches(self, typed: str | None) -> bool:
        """Whether ``typed`` is what a typed confirmation asks for (the engine checks it again)."""
        if typed is None:
            return False
        if self.expected is not None:
            return typed == self.expected
        if self.expected_sha256 is not None:
            import hashlib

            return hashlib.sha256(typed.encode("utf-8")).hexdigest() == self.expected_sha256
        return False


@dataclass
class Decision:
    choice: Choice
    reason: str | None = None
    typed: str | None = None
    value: str | None = None


@dataclass
class EngineEvent:
    incident: str


@dataclass
class Journaled(EngineEvent):
    """An event that is now durably in the journal."""

    event: Event


@dataclass
class OutputLine(EngineEvent):
    """One line of a running step's output (redacted). Not journaled; the step log has it."""

    step: str
    line: str


@dataclass
class StepChanged(EngineEvent):
    """A step's status changed (pending, running, done, failed, skipped, interrupted, planned, needs-confirmation)."""

    step: str
    status: str


class Frontend(Protocol):
    def emit(self, event: EngineEvent) -> None: ...

    def decide(self, request: Request) -> Decision: ...
