"""The headless front end: prints the run, answers questions from command-line flags.

A question the flags do not answer (a confirmation without ``--yes``/``--confirm``, an
interrupted step without ``--retry-interrupted``/``--mark-done``/``--skip``) ends the run with
exit code 3 and a sentence saying which flag would answer it; the incident stays resumable.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape

from runbook.core.durations import format_duration
from runbook.core.errors import NeedsHuman
from runbook.engine.frontend import Ask, Choice, Decision, EngineEvent, Journaled, OutputLine, Request


@dataclass
class HeadlessAnswers:
    """What the operator decided in advance, on the command line."""

    yes: bool = False
    confirms: dict[str, str] = field(default_factory=dict)  # step -> typed value (or "done" for manual)
    auto: bool = False  # drills: confirm everything, typed with the expected value
    interrupted: str | None = None  # retry | done | skip
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
        ev = event.event
        p = ev.payload
        c = self.console
        if ev.type == "step_started":
            c.print(f"[bold]▶ {escape(ev.step or '')}[/] [dim]{escape(str(p.get('action', '')))}[/]")
        elif ev.type == "step_finished":
            dur = p.get("duration")
            c.print(f"[green]✓ {escape(ev.step or '')}[/]" + (f" [dim]({format_duration(dur)})[/]" if dur is not None else ""))
        elif ev.type == "step_failed":
            retry = " — retrying" if p.get("will_retry") else ""
            c.print(f"[red]✗ {escape(ev.step or '')}: {escape(str(p.get('error', '')))}[/]{retry}")
        elif ev.type == "step_skipped":
            c.print(f"[yellow]↷ {escape(ev.step or '')} skipped: {escape(str(p.get('reason', '')))}[/]")
        elif ev.type == "step_planned":
            what = p.get("action") or p.get("reason") or ""
            c.print(f"[cyan]• {escape(ev.step or '')} (dry-run, not run): {escape(str(what))}[/]")
        elif ev.type == "step_marked_done":
            c.print(f"[green]✓ {escape(ev.step or '')} marked done: {escape(str(p.get('reason', '')))}[/]")
        elif ev.type == "confirmation_given":
            how = p.get("how") or "operator"
            who = escape(ev.actor) if how == "operator" else f"{escape(ev.actor)}, {escape(str(how))}"
            c.print(f"[magenta]  confirmed ({p.get('level')}) by {who}[/]")
        elif ev.type == "confirmation_refused":
            c.print(f"[red]  confirmation refused: {escape(str(p.get('reason', 'refused')))}[/]")
        elif ev.type == "take_over":
            c.print(f"[yellow]taken over from {escape(str(p.get('from')))}[/]")
        elif ev.type == "incident_closed":
            status = p.get("status")
            colour = "green" if status == "completed" else "red"
            rto = p.get("rto_target")
            extra = ""
            if rto:
                met = "met" if p.get("rto_met") else "MISSED"
                extra = f" — elapsed {format_duration(p.get('elapsed', 0))} vs RTO {format_duration(rto)} ({met})"
            c.print(f"[{colour} bold]incident {status}[/]{extra}")

    # -- decisions ------------------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        a = self.answers
        step = request.step or ""
        if request.ask == Ask.BEFORE_STEP:
            return Decision(Choice.RUN)
        if request.ask == Ask.CONFIRM:
            key = (step, "confirm")
            self._asked[key] = self._asked.get(key, 0) + 1
            if self._asked[key] > 1:
                raise NeedsHuman(
                    f"Step {step!r} needs a typed confirmation and --confirm {step}=… did not match: "
                    f"type the target exactly ({request.expected!r})."
                )
            if a.auto:
                return Decision(Choice.CONFIRM, typed=request.expected, reason="auto-confirmed (drill)")
            if request.confirm == "typed":
                if step in a.confirms:
                    return Decision(Choice.CONFIRM, typed=a.confirms[step])
                raise NeedsHuman(
                    f"Step {step!r} is {request.effect} ({request.action}) and needs a typed confirmation: "
                    f"rerun with --confirm {step}={request.expected} (resume the incident with `runbook resume {request.incident}`)."
                )
            if a.yes or step in a.confirms:
                return Decision(Choice.CONFIRM)
            raise NeedsHuman(
                f"Step {step!r} is {request.effect} ({request.action}) and needs confirmation: pass --yes "
                f"(resume the incident with `runbook resume {request.incident} --headless --yes`)."
            )
        if request.ask == Ask.MANUAL:
            if a.auto:
                return Decision(Choice.DONE, reason="drill: manual step auto-completed")
            if a.confirms.get(step) == "done":
                return Decision(Choice.DONE, reason="confirmed with --confirm on the command line")
            raise NeedsHuman(
                f"Step {step!r} is a manual task ({request.title}); when it is done, resume with "
                f"`runbook resume {request.incident} --headless --confirm {step}=done`."
            )
        if request.ask == Ask.INTERRUPTED:
            when = request.extra.get("started_at") or "earlier"
            if a.interrupted is None:
                raise NeedsHuman(
                    f"Step {step!r} was interrupted (started {when}) and is never re-run automatically: "
                    "resume with --retry-interrupted, --mark-done or --skip, and --reason TEXT."
                )
            choice = {"retry": Choice.RETRY, "done": Choice.DONE, "skip": Choice.SKIP}[a.interrupted]
            a.interrupted = None  # one decision answers one interrupted step
            return Decision(choice, reason=a.reason)
        if request.ask == Ask.FAILURE:
            if a.failed == "retry" and a.failed_step in (None, step):
                a.failed = None  # one decision answers one failed step
                return Decision(Choice.RETRY, reason=a.reason or "retry requested with --retry-failed")
            if a.auto:
                return Decision(Choice.STOP)
            raise NeedsHuman(
                f"Step {step!r} failed: {request.error} Retry it with `runbook resume {request.incident} "
                "--headless --retry-failed`, or decide in the TUI with `runbook resume`."
            )
        if request.ask == Ask.SECRET:
            name = str(request.extra.get("param", ""))
            value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
            if value:
                return Decision(Choice.VALUE, value=value)
            return Decision(Choice.QUIT)
        return Decision(Choice.QUIT)
