"""The run screen: drives an incident (the engine in a worker thread) or follows one read-only.

Layout (80×24 and up): the mode bar (LIVE/DRILL/DRY-RUN · env, RTO clock) on top; the step list
on the left; on the right the current step (title, Markdown description, the exact resolved
action, its effect and target), a prompt saying which key does what, the live output tail and a
tail of the timeline; the footer shows the keys that apply now.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Log, Markdown, Static

from runbook.core import incident as S
from runbook.engine.frontend import Ask, Choice, Decision, Journaled, StepChanged
from runbook.tui.frontend import DecisionRequested, PendingDecision, TuiFrontend
from runbook.tui.widgets import ModeBar, Prompt, StepList

if TYPE_CHECKING:
    from runbook.core.environment import Environment
    from runbook.journal.store import Event

FLUSH_INTERVAL = 0.08
# While the engine thread streams output it holds the GIL for whole switch intervals; the UI
# thread (keys, painting) waits for one at every turn of its event loop. 1 ms instead of
# Python's 5 ms keeps a key press under 100 ms during a 200,000-line flood.
UI_SWITCH_INTERVAL = 0.001
FOLLOW_INTERVAL = 0.5
TIMELINE_TAIL = 50


class EngineEnded(Message):
    """The engine's worker finished (or could not start).

    Args:
        status: completed, failed, paused, needs-human, error or locked.
        message: One sentence for the operator.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__()
        self.status = status
        self.message = message


class LockChanged(Message):
    """Read-only view: who holds the incident changed (None: nobody alive holds it)."""

    def __init__(self, holder: str | None) -> None:
        super().__init__()
        self.holder = holder


class RunScreen(Screen[None]):
    """Drives one incident, or follows it read-only when another operator holds it.

    Args:
        ctx: The command-line context (config, journal, playbook dirs).
        env: The environment the incident runs in.
        loaded: For a new incident: the validated playbook.
        given: For a new incident: the parameter values given.
        mode: For a new incident: live, dry-run or drill.
        incident: For resume / read-only: the incident id.
        take_over: Resume even if another live operator holds it (journaled).
        read_only: Follow the incident without driving it.
    """

    CSS_PATH = "run.tcss"

    BINDINGS = [
        Binding("r", "run_step", "Run step", id="run.run"),
        Binding("y", "confirm", "Confirm…", id="run.confirm"),
        Binding("t", "retry", "Retry", id="run.retry"),
        Binding("d", "done", "Done…", id="run.done"),
        Binding("s", "skip", "Skip…", id="run.skip"),
        Binding("i", "interrupted", "Decide…", id="run.interrupted"),
        Binding("k", "stop_incident", "End as failed", id="run.stop"),
        Binding("x", "cancel_step", "Stop step", id="run.cancel"),
        Binding("o", "take_over", "Take over", id="run.take_over"),
        Binding("n", "note", "Note", id="run.note"),
        Binding("l", "timeline", "Timeline", id="run.timeline"),
        Binding("q", "quit_safely", "Quit", id="run.quit"),
    ]

    def __init__(
        self,
        ctx: Any,
        env: Environment,
        *,
        loaded: Any = None,
        given: dict[str, Any] | None = None,
        mode: str = "live",
        incident: str | None = None,
        take_over: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.env = env
        self.loaded = loaded
        self.given = dict(given or {})
        self.mode = mode if loaded is not None else ""
        self.incident = incident
        self.take_over_at_start = take_over
        self.read_only = read_only
        self.frontend = TuiFrontend(self)
        self.engine: Any = None
        self.state = S.IncidentState(incident or "")
        self.last_n = -1
        self._history_n = -1
        self.steps_meta: dict[str, Any] = {}
        self.step_info: dict[str, dict[str, Any]] = {}
        self.needs_confirm: set[str] = set()
        self.running_step: str | None = None
        self.pending: PendingDecision | None = None
        self.driving = False
        self.ended: str | None = None
        self.end_message = ""
        self.holder: str | None = None
        self._leave_when_done = False
        self._stop_follow = threading.Event()
        self._timeline: deque[str] = deque(maxlen=TIMELINE_TAIL)
        self._output_lines = 0
        self._refused_typed: set[str] = set()

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        sub = self.loaded.playbook.id if self.loaded is not None else (self.incident or "")
        yield ModeBar(mode=self.mode, env=self.env.name, production=getattr(self.env, "production", False), subtitle=sub, id="modebar")
        with Horizontal(id="run-body"):
            with VerticalScroll(id="steps-pane"):
                yield StepList(id="steps")
            with Vertical(id="run-main"):
                yield Static("", id="step-title")
                with VerticalScroll(id="desc-pane"):
                    yield Markdown("", id="step-desc")
                yield Static("", id="step-action")
                yield Prompt("Starting…", id="prompt")
                yield Static("Output", id="output-title", classes="section")
                yield Log(max_lines=1000, id="output")
                yield Static("Timeline", id="timeline-title", classes="section")
                yield Static("", id="timeline-tail")
        yield Footer()

    def on_mount(self) -> None:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, UI_SWITCH_INTERVAL))
        if self.loaded is not None:
            self._set_steps(self.loaded.playbook)
        self.set_interval(FLUSH_INTERVAL, self._flush)
        if self.read_only:
            self._set_prompt("Read-only: another operator drives this incident. o take over · l timeline · q leave.", "attention")
            self._follow()
        else:
            self.driving = True
            self._drive(self.take_over_at_start)
        self.refresh_bindings()

    def on_unmount(self) -> None:
        # The app is going away: every question is answered QUIT (the incident pauses); a step
        # still running is stopped (journaled as failed by the operator) so nothing hangs.
        self._stop_follow.set()
        self.frontend.close()
        if self.engine is not None and self.running_step is not None and self.driving:
            self.engine.cancel_current()
        sys.setswitchinterval(getattr(self, "_switch_interval", sys.getswitchinterval()))

    # -- engine worker ---------------------------------------------------------------------------

    @work(thread=True, group="engine", exit_on_error=False)
    def _drive(self, take_over: bool) -> None:
        """Run the engine (blocks this worker thread until the incident ends or pauses)."""
        from runbook.core.errors import RunbookError
        from runbook.engine.runner import Engine
        from runbook.journal.store import LockedError
        from runbook.tui.app import state_home

        journal = self.ctx.journal
        try:
            local = getattr(self.ctx.config, "local", {}).get(self.env.name)
            if local is not None:
                # Start the local stores this playbook needs (in this worker, never the UI thread).
                local.ensure(self.loaded.playbook if self.loaded is not None else None)
                self.env = self.ctx.config.environment(self.env.name)
            engine = Engine(journal, self.frontend, home=state_home(self.ctx), environment=self.env)
            self.engine = engine
            try:
                from runbook.notify import cli_hook

                cli_hook(self.ctx, self.env, engine)
            except Exception as exc:  # noqa: BLE001 - notifications must never stop the incident
                self.app.call_from_thread(self.notify, f"Slack notifications are off: {exc}", severity="warning")
            if self.loaded is not None and self.incident is None:
                st = engine.open(self.loaded, self.given, mode=self.mode)
                self.incident = st.id
            else:
                assert self.incident is not None
                history = journal.events(self.incident)
                self._history_n = max(self._history_n, history[-1].n if history else -1)
                for ev in history:
                    self.frontend.emit(Journaled(self.incident, ev))
                engine.resume(self.incident, take_over=take_over)
            outcome = engine.run()
        except LockedError as exc:
            self.post_message(EngineEnded("locked", str(exc)))
            return
        except RunbookError as exc:
            self.post_message(EngineEnded("error", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the operator, never a traceback
            self.post_message(EngineEnded("error", f"Unexpected error ({type(exc).__name__}: {exc})."))
            return
        self.post_message(EngineEnded(outcome.status, outcome.message))

    @work(thread=True, group="follow", exit_on_error=False)
    def _follow(self) -> None:
        """Read-only: poll the journal for new events and for the lock holder."""
        journal = self.ctx.journal
        assert self.incident is not None
        after = -1
        holder: str | None = "?"
        while not self._stop_follow.is_set():
            try:
                events = journal.events(self.incident, after_n=after)
                for ev in events:
                    self.frontend.emit(Journaled(self.incident, ev))
                if events:
                    after = events[-1].n
                lock = journal.lock_info(self.incident)
                now = f"{lock.holder} (pid {lock.pid})" if lock is not None and lock.alive() else None
            except Exception as exc:  # noqa: BLE001 - keep following; say why once
                now = f"unknown ({exc})"
            if now != holder:
                holder = now
                self.post_message(LockChanged(holder))
            self._stop_follow.wait(FOLLOW_INTERVAL)

    # -- events from the engine ----------------------------------------------------------------

    def _flush(self) -> None:
        events, output, count = self.frontend.drain()
        changed = False
        for event in events:
            if isinstance(event, Journaled):
                changed |= self._apply(event.event)
            elif isinstance(event, StepChanged):
                if event.status == "needs-confirmation":
                    self.needs_confirm.add(event.step)
                    changed = True
        if output:
            log = self.query_one("#output", Log)
            self._output_lines += count
            if count > len(output):
                log.write_line(f"… {count - len(output):,} lines not shown (full output in the step log)")
            log.write_lines([o.line for o in output])
        if changed:
            self._refresh_view()

    def _apply(self, ev: Event) -> bool:
        if ev.n <= self.last_n:
            return False
        self.last_n = ev.n
        S.apply(self.state, ev)
        if ev.type == "incident_opened":
            self.incident = ev.incident
            self.state.id = ev.incident
            self._playbook_from_text()
            bar = self.query_one("#modebar", ModeBar)
            bar.mode = self.state.mode
            bar.env = self.state.env
            self.mode = self.state.mode
            bar.subtitle = f"{self.state.playbook_id} · {ev.incident}"
        live = self.read_only or ev.n > self._history_n
        if ev.step is not None:
            self.needs_confirm.discard(ev.step)
            if ev.type == "step_started":
                p = ev.payload
                info = self.step_info.setdefault(ev.step, {})
                info.update({k: p[k] for k in ("action", "effect", "target") if k in p})
                if live:
                    self.running_step = ev.step
                    self.query_one("#output", Log).write_line(f"── {ev.step} (attempt {p.get('attempt')}) ──")
                    self._show_step(ev.step)
            elif ev.type.startswith("step_") and self.running_step == ev.step:
                self.running_step = None
        from runbook.reports.timeline import describe_event, local_time

        who = f" {ev.step}" if ev.step else ""
        self._timeline.append(f"{local_time(ev.ts)}{who}: {describe_event(ev)}")
        return True

    def _playbook_from_text(self) -> None:
        if self.steps_meta or not self.state.playbook_text:
            return
        try:
            from pathlib import Path

            from runbook.playbook import yamlload
            from runbook.playbook.validate import validate_raw

            loaded = validate_raw(yamlload.loads(self.state.playbook_text), Path(self.state.playbook_path or "playbook.yaml"))
        except Exception:  # noqa: BLE001 - the list stays as the journal shows it
            return
        if loaded.playbook is not None:
            self._set_steps(loaded.playbook)

    def _set_steps(self, pb: Any) -> None:
        self.steps_meta = {s.id: s for s in pb.steps}
        self.query_one("#steps", StepList).set_steps([(s.id, s.label, s.phase) for s in pb.steps])

    def display_status(self) -> dict[str, str]:
        """Every step's status as shown (interrupted, needs-confirmation included)."""
        out: dict[str, str] = {}
        for sid, ss in self.state.steps.items():
            status = ss.status
            if status == S.StepStatus.RUNNING and sid != self.running_step:
                status = S.StepStatus.INTERRUPTED
            if status == S.StepStatus.FAILED and ss.continued:
                status = "failed"
            out[sid] = status
        for sid in self.needs_confirm:
            out[sid] = "needs-confirmation"
        return out

    def _current_step(self) -> str | None:
        if self.pending is not None and self.pending.request.step:
            return self.pending.request.step
        return self.running_step

    def _refresh_view(self) -> None:
        self.query_one("#steps", StepList).set_status(self.display_status(), self._current_step())
        tail = list(self._timeline)[-4:]
        self.query_one("#timeline-tail", Static).update(Text("\n".join(tail), no_wrap=True, overflow="ellipsis"))
        st = self.state
        self.query_one("#modebar", ModeBar).set_times(st.opened or None, st.closed, st.rto)
        self.refresh_bindings()

    def _show_step(self, step_id: str, request: Any = None) -> None:
        meta = self.steps_meta.get(step_id)
        info = self.step_info.setdefault(step_id, {})
        if request is not None:
            fresh = {"action": request.action, "effect": request.effect, "target": request.target, "confirm": request.confirm}
            info.update({k: v for k, v in fresh.items() if v})
        title = (request.title if request is not None else None) or (meta.label if meta is not None else step_id)
        phase = f"[dim]{escape(meta.phase)} ›[/] " if meta is not None and meta.phase else ""
        self.query_one("#step-title", Static).update(f"{phase}[b]{escape(title)}[/] [dim]({escape(step_id)})[/]")
        desc = (request.description if request is not None else None) or (meta.description if meta is not None else "") or ""
        self.query_one("#step-desc", Markdown).update(desc)
        action = info.get("action") or ("manual task" if meta is not None and meta.kind == "manual" else "")
        effect = info.get("effect", "")
        if meta is not None and meta.kind == "manual":
            effect = "manual"
        target = info.get("target") or ""
        lines = f"[b]Action:[/] {escape(str(action))}"
        blast = f"[b]Effect:[/] [{'bold red' if effect == 'destructive' else 'bold yellow' if effect == 'mutating' else 'green'}]{escape(str(effect))}[/]"
        if target:
            blast += f"  [b]Target:[/] {escape(str(target))}"
        widget = self.query_one("#step-action", Static)
        widget.update(f"{lines}\n{blast}")
        widget.set_class(effect == "destructive", "-destructive")
        self.query_one("#output-title", Static).update(f"Output — {escape(step_id)} [dim](last lines; all in the step log)[/]")

    def _set_prompt(self, text: str, level: str = "") -> None:
        prompt = self.query_one("#prompt", Prompt)
        prompt.update(text)
        prompt.set_class(level == "attention", "-attention")
        prompt.set_class(level == "danger", "-danger")

    # -- decisions -------------------------------------------------------------------------------

    def on_decision_requested(self, message: DecisionRequested) -> None:
        self._flush()
        pending = message.pending
        if pending.answered:
            return
        self.pending = pending
        r = pending.request
        if r.step:
            self._show_step(r.step, r)
        title = escape(r.title)
        live_danger = "danger" if r.effect == "destructive" and self.mode != "dry-run" else "attention"
        if r.ask == Ask.BEFORE_STEP:
            self._set_prompt(f"Next: [b]{title}[/] — [b]r[/] run it · [b]s[/] skip (reason) · [b]q[/] pause and quit", live_danger)
        elif r.ask == Ask.CONFIRM:
            self._set_prompt(f"[b]{title}[/] needs confirmation — [b]y[/] to confirm it", live_danger)
            self._open_confirm()
        elif r.ask == Ask.MANUAL:
            self._set_prompt(f"Manual task: do [b]{title}[/] by hand, then [b]d[/] mark done · [b]s[/] skip", "attention")
        elif r.ask == Ask.FAILURE:
            self._set_prompt(
                f"[b]✗ {title} failed:[/] {escape(r.error or '')} — [b]t[/] retry · [b]s[/] skip · [b]k[/] end as failed · [b]q[/] pause",
                "danger",
            )
        elif r.ask == Ask.INTERRUPTED:
            self._set_prompt(f"[b]{title}[/] was interrupted — [b]t[/] retry · [b]d[/] mark done · [b]s[/] skip · [b]i[/] details", "danger")
            self._open_interrupted()
        elif r.ask == Ask.SECRET:
            self._set_prompt("A secret parameter is needed to go on.", "attention")
            self._open_secret()
        else:
            self._answer(Decision(Choice.QUIT))
            return
        self._refresh_view()

    def _answer(self, decision: Decision) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.answer(decision)
        if decision.choice == Choice.QUIT:
            self._set_prompt("Pausing the incident…")
        elif decision.choice in (Choice.RUN, Choice.CONFIRM, Choice.RETRY):
            self._set_prompt("Running… [b]x[/] stops the step · [b]n[/] adds a note")
        else:
            self._set_prompt("…")
        self._refresh_view()

    def _ask(self, *asks: Ask) -> bool:
        return self.pending is not None and self.pending.request.ask in asks

    def _open_confirm(self) -> None:
        from runbook.tui.dialogs import ConfirmScreen

        assert self.pending is not None
        req = self.pending.request
        note = ""
        if req.confirm == "typed" and req.step in self._refused_typed:
            note = "The last value did not match; the step was not run."

        def done(decision: Decision | None) -> None:
            if decision is None or not self._ask(Ask.CONFIRM):
                return
            if decision.choice == Choice.CONFIRM and req.confirm == "typed" and decision.typed != req.expected:
                self._refused_typed.add(req.step or "")
            self._answer(decision)

        self.app.push_screen(ConfirmScreen(req, mode=self.mode, env=self.env.name, attempt_note=note), done)

    def _open_interrupted(self) -> None:
        from runbook.tui.dialogs import InterruptedScreen

        assert self.pending is not None

        def done(decision: Decision | None) -> None:
            if decision is not None and self._ask(Ask.INTERRUPTED):
                self._answer(decision)

        self.app.push_screen(InterruptedScreen(self.pending.request), done)

    def _open_secret(self) -> None:
        from runbook.tui.dialogs import ReasonScreen

        assert self.pending is not None
        name = str(self.pending.request.extra.get("param", ""))

        def done(value: str | None) -> None:
            if self._ask(Ask.SECRET):
                self._answer(Decision(Choice.VALUE, value=value) if value else Decision(Choice.QUIT))

        self.app.push_screen(ReasonScreen("Secret parameter", f"Value of {name} (never journaled):", password=True), done)

    def _with_reason(self, title: str, prompt: str, make: Any, *, optional: bool = False) -> None:
        from runbook.tui.dialogs import ReasonScreen

        expected = self.pending

        def done(reason: str | None) -> None:
            if reason is None or self.pending is not expected or expected is None:
                return
            self._answer(make(reason))

        self.app.push_screen(ReasonScreen(title, prompt, optional=optional), done)

    # -- actions ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_step":
            return self._ask(Ask.BEFORE_STEP)
        if action == "confirm":
            return self._ask(Ask.CONFIRM)
        if action == "retry":
            return self._ask(Ask.FAILURE, Ask.INTERRUPTED)
        if action == "done":
            return self._ask(Ask.MANUAL, Ask.INTERRUPTED)
        if action == "skip":
            return self._ask(Ask.BEFORE_STEP, Ask.CONFIRM, Ask.MANUAL, Ask.FAILURE, Ask.INTERRUPTED)
        if action == "interrupted":
            return self._ask(Ask.INTERRUPTED)
        if action == "stop_incident":
            return self._ask(Ask.FAILURE)
        if action == "cancel_step":
            return self.driving and self.pending is None and self.running_step is not None
        if action == "take_over":
            return self.read_only and not self.driving and self.ended is None
        if action == "note":
            return self.driving and self.ended is None and self.engine is not None
        return True

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
            self._with_reason("Manual step done", "Note (optional, journaled):", lambda r: Decision(Choice.DONE, reason=r or None), optional=True)
        elif self._ask(Ask.INTERRUPTED):
            self._with_reason("Mark the interrupted step done", "Why is it done? (journaled)", lambda r: Decision(Choice.DONE, reason=r))

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

    def action_cancel_step(self) -> None:
        """Stop the running step (journaled as failed by the operator)."""
        if self.engine is not None and self.running_step is not None:
            self.engine.cancel_current()
            self.notify(f"Stopping {self.running_step}…")

    def action_note(self) -> None:
        """Add a note to the timeline."""
        from runbook.tui.dialogs import ReasonScreen

        def done(text: str | None) -> None:
            if text:
                self._add_note(text)

        self.app.push_screen(ReasonScreen("Note", "Note for the timeline:"), done)

    @work(thread=True, group="note", exit_on_error=False)
    def _add_note(self, text: str) -> None:
        try:
            self.engine.add_note(text)
        except Exception as exc:  # noqa: BLE001 - one sentence to the operator
            self.app.call_from_thread(self.notify, f"The note was not saved: {exc}", severity="error")
        else:
            self.app.call_from_thread(self.notify, "Note added to the timeline.")

    def action_timeline(self) -> None:
        """Open the full timeline."""
        if not self.incident:
            return
        from runbook.tui.timeline import TimelineScreen

        self.app.push_screen(TimelineScreen(self.ctx, self.incident))

    def action_take_over(self) -> None:
        """Take the incident over from the operator who holds it (journaled)."""
        if not self.read_only or self.driving:
            return
        self._stop_follow.set()
        self.read_only = False
        self.driving = True
        self._history_n = self.last_n
        self.running_step = None
        self._set_prompt("Taking over…", "attention")
        self._drive(True)
        self.refresh_bindings()

    def action_quit_safely(self) -> None:
        """Pause the incident (it stays resumable) and leave."""
        if not self.driving or self.ended is not None:
            self._leave()
            return
        self._leave_when_done = True
        self.frontend.quit_requested = True
        if self.pending is not None:
            self._answer(Decision(Choice.QUIT))
            return
        if self.running_step is not None:
            from runbook.tui.dialogs import LeaveScreen

            def done(choice: str | None) -> None:
                if choice is None:
                    self._leave_when_done = False
                    self.frontend.quit_requested = False
                    return
                if choice == "stop" and self.engine is not None:
                    self.engine.cancel_current()
                self._set_prompt("The incident will pause when the step ends…", "attention")

            self.app.push_screen(LeaveScreen(), done)
            return
        self._set_prompt("Pausing…")

    def _leave(self) -> None:
        self._stop_follow.set()
        self.frontend.close()
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
            home = self.app.screen
            if hasattr(home, "reload"):
                home.reload()
        else:
            self.app.exit(self.end_message or None)

    # -- end ---------------------------------------------------------------------------------

    def on_engine_ended(self, message: EngineEnded) -> None:
        self._flush()
        self.pending = None
        self.driving = False
        if message.status == "locked":
            # Someone else drives it: follow it read-only.
            self.read_only = True
            self.notify(message.message, severity="warning", timeout=8)
            self._stop_follow.clear()
            self._set_prompt("Read-only: another operator drives this incident. o take over · l timeline · q leave.", "attention")
            self._follow()
            self.refresh_bindings()
            return
        self.ended = message.status
        inc = self.incident or ""
        if message.status == "completed":
            self.end_message = f"Incident {inc} completed."
            self._set_prompt("[b]✓ Incident completed.[/] l timeline · q leave", "")
        elif message.status == "paused":
            self.end_message = message.message or f"Incident {inc} paused; resume it with `runbook resume {inc}`."
            self._set_prompt(f"[b]Paused.[/] {escape(self.end_message)} q leave", "attention")
        elif message.status == "error" and not inc:
            self.end_message = message.message
            self.notify(message.message, severity="error", timeout=10)
            self._set_prompt(f"[b]Not started:[/] {escape(message.message)} q back", "danger")
        else:
            self.end_message = message.message or f"Incident {inc} {message.status}."
            self._set_prompt(f"[b]{escape(message.status)}:[/] {escape(self.end_message)} l timeline · q leave", "danger")
        self._refresh_view()
        if self._leave_when_done:
            self._leave()

    def on_lock_changed(self, message: LockChanged) -> None:
        self.holder = message.holder
        if not self.read_only:
            return
        if message.holder:
            self._set_prompt(f"Read-only: [b]{escape(message.holder)}[/] drives this incident. o take over · l timeline · q leave", "attention")
        else:
            self._set_prompt("Read-only: nobody drives this incident now. o take it over (resume) · q leave", "attention")

    # -- for the command palette -------------------------------------------------------------

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for every action that applies now."""
        out = []
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            if self.check_action(b.action, ()):
                out.append((b.description.rstrip("…"), f"key {b.key}", b.action))
        return out
