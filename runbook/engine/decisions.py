"""What only a person may decide, asked through the front end and journaled with who and what.

* confirmations: ``yes`` for a mutating step; for a destructive one the target typed exactly
  (three tries, then the incident waits for a human);
* a manual step: done (with a note) or skipped (with a reason);
* an interrupted step (started before a crash, never finished): retry, mark done or skip, the last
  two with a reason. It is never re-run without that choice, and never while a command it started
  is still alive (the operator stops that first, typing the step's id).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runbook.core import incident as S
from runbook.core.errors import NeedsHuman, UsageError
from runbook.core.events import EventType
from runbook.core.procs import describe_running, still_running, stop_group, wait_gone
from runbook.core.text import capitalized, sentence
from runbook.engine.calls import Call
from runbook.engine.frontend import Ask, Choice, Decision, Frontend, Request, StepChanged
from runbook.engine.recorder import Recorder
from runbook.playbook import params as P
from runbook.playbook.model import Step
from runbook.playbook.validate import step_effect

# How long a resume waits for what a dead run's reaper is still stopping (its grace is 3 s).
LEFTOVER_WAIT = 5.0


class QuitRequested(Exception):
    """The operator quit: the incident pauses and stays resumable."""


class StopIncident(Exception):
    """The incident ends as failed, with this sentence."""


def _reason(text: str | None) -> str:
    try:
        return P.check_text("reason", (text or "").strip()[:2000], allow_newlines=True)
    except P.ParamError as exc:
        raise UsageError(sentence(capitalized(str(exc)))) from None


class Decisions:
    """Asks the operator (through the front end) and journals the answer."""

    def __init__(self, rec: Recorder, frontend: Frontend) -> None:
        self.rec = rec
        self.frontend = frontend

    def request(self, ask: Ask, step: Step, call: Call, **kw: Any) -> Request:
        st = self.rec.state
        return Request(
            ask=ask,
            incident=st.id,
            step=step.id,
            title=step.label,
            description=step.description or "",
            action=call.describe,
            effect=call.effect,
            target=call.target,
            confirm=call.confirm,
            attempt=st.step(step.id).attempts,
            **kw,
        )

    def ask(self, step: Step, ask: Ask, choices: tuple[Choice, ...], **kw: Any) -> Decision:
        """Ask about ``step`` itself (not a call): a failure or an interrupted run."""
        st = self.rec.state
        request = Request(ask, st.id, step.id, title=step.label, description=step.description or "",
                          attempt=st.step(step.id).attempts, choices=choices, **kw)
        return self.frontend.decide(request)

    def skip(self, step: Step, reason: str | None) -> None:
        text = (reason or "").strip()
        if not text:
            raise NeedsHuman(f"Skipping step {step.id!r} needs a reason.")
        self.rec.append(
            EventType.STEP_SKIPPED,
            {"reason": P.check_text("reason", text[:2000], allow_newlines=True), "by": "operator"},
            step=step.id,
        )

    def confirm(self, step: Step, call: Call) -> bool:
        """True when confirmed; False when refused or skipped (the step's status tells which)."""
        if call.confirm == "none":
            return True
        for _ in range(3):
            self.frontend.emit(StepChanged(self.rec.state.id, step.id, "needs-confirmation"))
            d = self.frontend.decide(
                self.request(
                    Ask.CONFIRM,
                    step,
                    call,
                    expected=call.expected,
                    shown_expected=self.rec.redactor.text(call.expected) if call.expected else None,
                    choices=(Choice.CONFIRM, Choice.REFUSE, Choice.SKIP, Choice.QUIT),
                )
            )
            if d.choice == Choice.QUIT:
                raise QuitRequested()
            if d.choice == Choice.SKIP:
                self.skip(step, d.reason)
                return False
            if d.choice == Choice.REFUSE:
                self.rec.append(
                    EventType.CONFIRMATION_REFUSED,
                    {"level": call.confirm, "action": call.describe, "target": call.target},
                    step=step.id,
                )
                return False
            given = {
                "level": call.confirm,
                "action": call.describe,
                "target": call.target,
                "effect": call.effect,
                "how": d.reason or "operator",
            }
            if call.confirm == "typed":
                typed = _typed_text(d.typed)
                if typed != call.expected:
                    self.rec.append(
                        EventType.CONFIRMATION_REFUSED,
                        {
                            "level": call.confirm,
                            "typed": typed,
                            "expected": call.expected,
                            "reason": "typed value does not match",
                        },
                        step=step.id,
                    )
                    continue
                given["typed"] = typed
            self.rec.append(EventType.CONFIRMATION_GIVEN, given, step=step.id)
            return True
        shown = self.rec.redactor.text(call.expected or "")
        raise NeedsHuman(f"Step {step.id!r} was not confirmed: the typed value did not match {shown!r}.")

    def manual(self, step: Step, call: Call) -> None:
        ss = self.rec.state.step(step.id)
        if ss.status != S.StepStatus.RUNNING:
            self.rec.append(
                EventType.STEP_STARTED,
                {"attempt": ss.attempts + 1, "action": "manual", "effect": "manual"},
                step=step.id,
            )
        d = self.frontend.decide(self.request(Ask.MANUAL, step, call, choices=(Choice.DONE, Choice.SKIP, Choice.QUIT)))
        if d.choice == Choice.DONE:
            self.rec.append(
                EventType.STEP_FINISHED,
                {"manual": True, "note": d.reason, "outputs": {}, "duration": None},
                step=step.id,
            )
        elif d.choice == Choice.SKIP:
            self.skip(step, d.reason)
        else:
            raise QuitRequested()

    def interrupted(self, step: Step, ss: S.StepState, tail: Callable[[str | None, int], list[str]]) -> None:
        """Resolve a step that was running when its process died (never re-run by itself)."""
        extra = {"started_at": ss.started, "last_output": tail(ss.log, 20), "log": ss.log}
        self._end_leftovers(step, ss, extra)
        choices = (Choice.RETRY, Choice.DONE, Choice.SKIP, Choice.QUIT)
        d = self.ask(step, Ask.INTERRUPTED, choices, effect=step_effect(step).value, extra=extra)
        reason = _reason(d.reason)
        if d.choice == Choice.QUIT:
            raise QuitRequested()
        if d.choice in (Choice.DONE, Choice.SKIP) and not reason:
            raise NeedsHuman(f"Step {step.id!r} was interrupted: a reason is needed to mark it done or skip it.")
        self.rec.append(
            EventType.INTERRUPTED_RESOLVED,
            {"choice": d.choice.value, "reason": reason or None, "started_at": ss.started},
            step=step.id,
        )
        if d.choice == Choice.RETRY:
            self.rec.append(
                EventType.STEP_RETRY_REQUESTED, {"reason": reason or "retry after interruption"}, step=step.id
            )
        elif d.choice == Choice.DONE:
            self.rec.append(EventType.STEP_MARKED_DONE, {"reason": reason}, step=step.id)
        elif d.choice == Choice.SKIP:
            self.rec.append(EventType.STEP_SKIPPED, {"reason": reason, "by": "operator"}, step=step.id)
        else:
            raise NeedsHuman(f"Step {step.id!r} was interrupted and needs a decision.")

    def _end_leftovers(self, step: Step, ss: S.StepState, extra: dict[str, Any]) -> None:
        """A command the step started may outlive its process: nothing is decided while it runs.

        The operator stops it (typing the step's id) or comes back later; a retry beside it would
        be a second copy of the step.
        """
        wrong = 0
        running = wait_gone(ss.processes, LEFTOVER_WAIT)
        while running:
            d = self.ask(step, Ask.INTERRUPTED, (Choice.TERMINATE, Choice.QUIT), effect=step_effect(step).value,
                         extra={**extra, "running": running}, expected=step.id)
            if d.choice == Choice.QUIT:
                raise QuitRequested()
            if d.choice == Choice.TERMINATE and (d.typed or "").strip() == step.id:
                self._stop_leftovers(step, ss, running)
            else:
                wrong += 1
            running = still_running(ss.processes)
            if running and wrong >= 3:
                raise NeedsHuman(f"Step {step.id!r} is still running from before ({describe_running(running)}) "
                                 "and is never run twice: wait for it to end or stop it, then resume.")

    def _stop_leftovers(self, step: Step, ss: S.StepState, running: list[dict[str, Any]]) -> None:
        left = [pid for r in running for pid in stop_group(r["pgid"])]
        reason = f"stopped what was still running: {describe_running(running)}"
        self.rec.append(EventType.INTERRUPTED_RESOLVED, {"choice": "terminate", "reason": reason,
                                                         "started_at": ss.started}, step=step.id)
        if left:
            raise NeedsHuman(f"Step {step.id!r} left processes that could not be stopped (pid "
                             f"{', '.join(map(str, left))}): stop them by hand, then resume.")


def _typed_text(typed: str | None) -> str:
    text = typed if typed is not None else ""
    try:
        return P.check_text("typed confirmation", text)
    except P.ParamError:
        return text.encode("utf-8", "replace").decode("utf-8")[:200]  # journaled as refused
