"""The operator's answers to the engine's questions: the keys, the dialogs they open, the decisions.

:class:`RunAnswers` is a part of :class:`~.run.RunScreen` (a mixin): the engine asks through the
front end (:class:`~runbook.tui.frontend.DecisionRequested`); the screen says what it needs on the
prompt line, opens the confirmation, interrupted-step or secret dialog when the question needs
one, and answers the pending question once, with the operator's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook.engine.frontend import Ask, Choice, Decision, Request
from runbook.tui.frontend import DecisionRequested, PendingDecision
from runbook.tui.screens import run_view

if TYPE_CHECKING:
    from textual.app import App

    from runbook.core.environment import Environment

# The engine's questions each key answers: the key shows in the footer (and the palette) only
# while one of them is asked.
ANSWERS: dict[str, tuple[Ask, ...]] = {
    "run_step": (Ask.BEFORE_STEP,),
    "confirm": (Ask.CONFIRM,),
    "retry": (Ask.FAILURE, Ask.INTERRUPTED),
    "done": (Ask.MANUAL, Ask.INTERRUPTED),
    "skip": (Ask.BEFORE_STEP, Ask.CONFIRM, Ask.MANUAL, Ask.FAILURE, Ask.INTERRUPTED),
    "interrupted": (Ask.INTERRUPTED,),
    "stop_incident": (Ask.FAILURE,),
}

# The choice each answering key makes (a question that lists its choices may not offer it).
_CHOICES = {"run_step": Choice.RUN, "confirm": Choice.CONFIRM, "retry": Choice.RETRY, "done": Choice.DONE,
            "skip": Choice.SKIP, "stop_incident": Choice.STOP}


class RunAnswers:
    """Answers the engine's questions (mixed into the run screen)."""

    if TYPE_CHECKING:
        # Provided by the run screen.
        app: App[Any]
        env: Environment
        mode: str
        pending: PendingDecision | None
        _refused_typed: set[str]

        def _flush(self) -> None: ...
        def _refresh_view(self) -> None: ...
        def _say(self, text: str, level: str = ...) -> None: ...
        def _show_step(self, step_id: str, request: Request | None = None) -> None: ...

    # -- questions from the engine ---------------------------------------------------------------

    def on_decision_requested(self, message: DecisionRequested) -> None:
        self._flush()
        pending = message.pending
        if pending.answered:
            return
        self.pending = pending
        request = pending.request
        if request.step:
            self._show_step(request.step, request)
        prompt = run_view.question_prompt(request, self.mode)
        if prompt is None:
            self._answer(Decision(Choice.QUIT))
            return
        self._say(*prompt)
        if request.ask == Ask.CONFIRM:
            self._open_confirm()
        elif request.ask == Ask.INTERRUPTED:
            self._open_interrupted()
        elif request.ask == Ask.SECRET:
            self._open_secret()
        self._refresh_view()

    def _answer(self, decision: Decision) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.answer(decision)
        if decision.choice == Choice.QUIT:
            self._say("Pausing the incident…")
        elif decision.choice in (Choice.RUN, Choice.CONFIRM, Choice.RETRY):
            self._say(run_view.RUNNING_PROMPT)
        else:
            self._say("…")
        self._refresh_view()

    def _ask(self, *asks: Ask) -> bool:
        return self.pending is not None and self.pending.request.ask in asks

    def _offered(self, action: str) -> bool:
        """Whether the pending question offers the choice ``action`` makes (all, if it lists none)."""
        choice = _CHOICES.get(action)
        choices = self.pending.request.choices if self.pending is not None else ()
        return choice is None or not choices or choice in choices

    def _open_confirm(self) -> None:
        from runbook.tui.screens.dialogs.confirm import ConfirmScreen

        assert self.pending is not None
        req = self.pending.request
        note = ""
        if req.confirm == "typed" and req.step in self._refused_typed:
            note = "The last value did not match; the step was not run."

        def done(decision: Decision | None) -> None:
            if decision is None or not self._ask(Ask.CONFIRM):
                return
            if decision.choice == Choice.CONFIRM and req.confirm == "typed" and not req.matches(decision.typed):
                self._refused_typed.add(req.step or "")
            self._answer(decision)

        self.app.push_screen(ConfirmScreen(req, mode=self.mode, env=self.env.name, attempt_note=note), done)

    def _open_interrupted(self) -> None:
        from runbook.tui.screens.dialogs.interrupted import InterruptedScreen

        assert self.pending is not None

        def done(decision: Decision | None) -> None:
            if decision is not None and self._ask(Ask.INTERRUPTED):
                self._answer(decision)

        self.app.push_screen(InterruptedScreen(self.pending.request), done)

    def _open_secret(self) -> None:
        from runbook.tui.screens.dialogs.reason import ReasonScreen

        assert self.pending is not None
        name = str(self.pending.request.extra.get("param", ""))

        def done(value: str | None) -> None:
            if self._ask(Ask.SECRET):
                self._answer(Decision(Choice.VALUE, value=value) if value else Decision(Choice.QUIT))

        self.app.push_screen(
            ReasonScreen("Secret parameter", f"Value of {name} (never journaled):", password=True), done
        )

    def _with_reason(self, title: str, prompt: str, make: Callable[[str], Decision], *, optional: bool = False) -> None:
        from runbook.tui.screens.dialogs.reason import ReasonScreen

        expected = self.pending

        def done(reason: str | None) -> None:
            if reason is None or self.pending is not expected or expected is None:
                return
            self._answer(make(reason))

        self.app.push_screen(ReasonScreen(title, prompt, optional=optional), done)

    def action_run_step(self) -> None:
        """Run the next step (answers the engine's question with RUN)."""
        if self._ask(Ask.BEFORE_STEP):
            self._answer(Decision(Choice.RUN))

    def action_confirm(self) -> None:
        """Open the confirmation dialog again."""
        if self._ask(Ask.CONFIRM):
            self._open_confirm()

    def action_retry(self) -> None:
        """Retry the failed or interrupted step."""
        if self._ask(Ask.FAILURE, Ask.INTERRUPTED):
            self._answer(Decision(Choice.RETRY, reason="operator chose retry"))

    def action_done(self) -> None:
        """Mark the manual (or interrupted) step done."""
        if self._ask(Ask.MANUAL):
            self._with_reason(
                "Manual step done",
                "Note (optional, journaled):",
                lambda r: Decision(Choice.DONE, reason=r or None),
                optional=True,
            )
        elif self._ask(Ask.INTERRUPTED):
            self._with_reason(
                "Mark the interrupted step done",
                "Why is it done? (journaled)",
                lambda r: Decision(Choice.DONE, reason=r),
            )

    def action_skip(self) -> None:
        """Skip the step, with a reason."""
        if self.pending is None:
            return
        title = self.pending.request.title
        self._with_reason(f"Skip {title}", "Why skip this step? (journaled)", lambda r: Decision(Choice.SKIP, reason=r))

    def action_interrupted(self) -> None:
        """Show the interrupted-step dialog again."""
        if self._ask(Ask.INTERRUPTED):
            self._open_interrupted()

    def action_stop_incident(self) -> None:
        """End the incident as failed (after a failure)."""
        if self._ask(Ask.FAILURE):
            self._answer(Decision(Choice.STOP))
