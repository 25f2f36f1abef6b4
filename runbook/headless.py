"""The headless front end: prints the run, answers questions from command-line flags.

A question the flags do not answer (a confirmation without ``--yes``/``--confirm``, an
interrupted step without ``--retry-interrupted``/``--mark-done``/``--skip``) ends the run with
exit code 3 and a sentence saying which flag would answer it; the incident stays resumable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape

from runbook.core.durations import format_duration
from runbook.core.errors import NeedsHuman
from runbook.core.events import Event, EventType
from runbook.core.procs import describe_running
from runbook.engine.frontend import Ask, Choice, Decision, EngineEvent, Journaled, OutputLine, Request


@dataclass
class HeadlessAnswers:
    """What the operator decided in advance, on the command line."""

    yes: bool = False
    confirms: dict[str, str] = field(default_factory=dict)  # step -> typed value (or "done" for manual)
    auto: bool = False  # drills: confirm everything, typed with the expected value
    interrupted: str | None = None  # retry | done | skip
    stop_interrupted: bool = False  # stop what an interrupted step left running (once)
    failed: str | None = None  # retry: a step that failed in an earlier run is retried on resume
    failed_step: str | None = None  # …only that step (the one failed when the resume started)
    reason: str | None = None
    quiet_output: bool = False


class HeadlessFrontend:
    """Prints events with Rich and answers from :class:`HeadlessAnswers`."""

    def __init__(self, answers: HeadlessAnswers, console: Console | None = None) -> None:
        self.answers = answers
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._asked: dict[tuple[str, str], int] = {}
        self._out = sys.stdout

    # -- events ---------------------------------------------------------------------------------

    def emit(self, event: EngineEvent) -> None:
        if isinstance(event, OutputLine):
            if not self.answers.quiet_output:
                self._out.write(f"    {event.line}\n")
            return
        if not isinstance(event, Journaled):
            return
        kind = event.event.kind
        line = _LINES.get(kind) if kind is not None else None
        if line is not None:
            self.console.print(line(event.event))

    # -- decisions ------------------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        answer = {
            Ask.BEFORE_STEP: lambda r: Decision(Choice.RUN),
            Ask.CONFIRM: self._confirm,
            Ask.MANUAL: self._manual,
            Ask.INTERRUPTED: self._interrupted,
            Ask.FAILURE: self._failure,
            Ask.SECRET: _secret,
        }.get(request.ask)
        return answer(request) if answer is not None else Decision(Choice.QUIT)

    def _confirm(self, request: Request) -> Decision:
        a, step = self.answers, request.step or ""
        key = (step, "confirm")
        self._asked[key] = self._asked.get(key, 0) + 1
        if self._asked[key] > 1:
            raise NeedsHuman(
                f"Step {step!r} needs a typed confirmation and --confirm {step}=… did not match: "
                f"type the target exactly ({request.expected_text()!r})."
            )
        if a.auto:
            return Decision(Choice.CONFIRM, typed=request.expected, reason="auto-confirmed (drill)")
        if request.confirm == "typed":
            if step in a.confirms:
                return Decision(Choice.CONFIRM, typed=a.confirms[step])
            raise NeedsHuman(
                f"Step {step!r} is {request.effect} ({request.action}) and needs a typed confirmation: "
                f"rerun with --confirm {step}={_typed_hint(request)} "
                f"(resume the incident with `runbook resume {request.incident}`)."
            )
        if a.yes or step in a.confirms:
            return Decision(Choice.CONFIRM)
        raise NeedsHuman(
            f"Step {step!r} is {request.effect} ({request.action}) and needs confirmation: pass --yes "
            f"(resume the incident with `runbook resume {request.incident} --headless --yes`)."
        )

    def _manual(self, request: Request) -> Decision:
        a, step = self.answers, request.step or ""
        if a.auto:
            return Decision(Choice.DONE, reason="drill: manual step auto-completed")
        if a.confirms.get(step) == "done":
            return Decision(Choice.DONE, reason="confirmed with --confirm on the command line")
        raise NeedsHuman(
            f"Step {step!r} is a manual task ({request.title}); when it is done, resume with "
            f"`runbook resume {request.incident} --headless --confirm {step}=done`."
        )

    def _interrupted(self, request: Request) -> Decision:
        a = self.answers
        running = request.extra.get("running")
        if running:
            if a.stop_interrupted:
                a.stop_interrupted = False
                return Decision(Choice.TERMINATE, typed=request.expected)
            raise NeedsHuman(
                f"Step {request.step or ''!r} was interrupted and is still running from before "
                f"({describe_running(running)}); it is never run twice: wait for it to end and resume again, "
                f"or stop it with `runbook resume {request.incident} --headless --stop-interrupted`."
            )
        if a.interrupted is None:
            when = request.extra.get("started_at") or "earlier"
            raise NeedsHuman(
                f"Step {request.step or ''!r} was interrupted (started {when}) and is never re-run automatically: "
                "resume with --retry-interrupted, --mark-done or --skip, and --reason TEXT."
            )
        choice = {"retry": Choice.RETRY, "done": Choice.DONE, "skip": Choice.SKIP}[a.interrupted]
        a.interrupted = None  # one decision answers one interrupted step
        return Decision(choice, reason=a.reason)

    def _failure(self, request: Request) -> Decision:
        a, step = self.answers, request.step or ""
        if a.failed == "retry" and a.failed_step in (None, step):
            a.failed = None  # one decision answers one failed step
            return Decision(Choice.RETRY, reason=a.reason or "retry requested with --retry-failed")
        if a.auto:
            return Decision(Choice.STOP)
        raise NeedsHuman(
            f"Step {step!r} failed: {request.error} Retry it with `runbook resume {request.incident} "
            "--headless --retry-failed`, or decide in the TUI with `runbook resume`."
        )


def _secret(request: Request) -> Decision:
    name = str(request.extra.get("param", ""))
    value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
    return Decision(Choice.VALUE, value=value) if value else Decision(Choice.QUIT)


# -- what is printed for each journaled event ---------------------------------------------------


def _step(ev: Event) -> str:
    return escape(ev.step or "")


def _finished(ev: Event) -> str:
    dur = ev.payload.get("duration")
    return f"[green]✓ {_step(ev)}[/]" + (f" [dim]({format_duration(dur)})[/]" if dur is not None else "")


def _failed(ev: Event) -> str:
    retry = " — retrying" if ev.payload.get("will_retry") else ""
    return f"[red]✗ {_step(ev)}: {escape(str(ev.payload.get('error', '')))}[/]{retry}"


def _confirmed(ev: Event) -> str:
    how = ev.payload.get("how") or "operator"
    who = escape(ev.actor) if how == "operator" else f"{escape(ev.actor)}, {escape(str(how))}"
    return f"[magenta]  confirmed ({ev.payload.get('level')}) by {who}[/]"


def _closed(ev: Event) -> str:
    p = ev.payload
    status = p.get("status")
    colour = "green" if status == "completed" else "red"
    rto = p.get("rto_target")
    extra = ""
    if rto:
        met = "met" if p.get("rto_met") else "MISSED"
        extra = f" — elapsed {format_duration(p.get('elapsed', 0))} vs RTO {format_duration(rto)} ({met})"
    accepted = p.get("failures_accepted") or []
    if accepted:  # exit 0 (the playbook declared them non-fatal), but never read as a clean run
        n = len(accepted)
        extra += f" — {n} failure{'s' if n != 1 else ''} accepted (on_failure: continue): {escape(', '.join(accepted))}"
    return f"[{colour} bold]incident {status}[/]{extra}"


_LINES: dict[EventType, Callable[[Event], str]] = {
    EventType.STEP_STARTED: lambda ev: f"[bold]▶ {_step(ev)}[/] [dim]{escape(str(ev.payload.get('action', '')))}[/]",
    EventType.STEP_FINISHED: _finished,
    EventType.STEP_FAILED: _failed,
    EventType.STEP_SKIPPED: lambda ev: f"[yellow]↷ {_step(ev)} skipped: {escape(str(ev.payload.get('reason', '')))}[/]",
    EventType.STEP_PLANNED: lambda ev: (
        f"[cyan]• {_step(ev)} (dry-run, not run): "
        f"{escape(str(ev.payload.get('action') or ev.payload.get('reason') or ''))}[/]"
    ),
    EventType.STEP_MARKED_DONE: lambda ev: (
        f"[green]✓ {_step(ev)} marked done: {escape(str(ev.payload.get('reason', '')))}[/]"
    ),
    EventType.CONFIRMATION_GIVEN: _confirmed,
    EventType.CONFIRMATION_REFUSED: lambda ev: (
        f"[red]  confirmation refused: {escape(str(ev.payload.get('reason', 'refused')))}[/]"
    ),
    EventType.TAKE_OVER: lambda ev: f"[yellow]taken over from {escape(str(ev.payload.get('from')))}[/]",
    EventType.INCIDENT_CLOSED: _closed,
}


def _typed_hint(request: Request) -> str:
    """The value to pass to ``--confirm``: the target itself, or a placeholder when it is a secret."""
    return "VALUE (the secret target, not shown)" if request.expected_is_secret() else request.expected_text()
