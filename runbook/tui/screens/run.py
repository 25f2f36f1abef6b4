"""The run screen: drives an incident (the engine in a worker thread) or follows one read-only.

Layout (80×24 and up): the mode bar (LIVE/DRILL/DRY-RUN · env, RTO clock) on top; the step list
on the left; on the right the current step (title, Markdown description, the exact resolved
action, its effect and target), a prompt saying which key does what, the live output tail and a
tail of the timeline; the footer shows the keys that apply now.

What the screen has seen of the incident is kept by :class:`~.run_model.RunModel`; the workers
(engine, read-only follower) are in :mod:`.run_engine`; the words in :mod:`.run_view`.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Log, Markdown, Static

from runbook.core.events import Event
from runbook.core.incident import IncidentState
from runbook.engine.frontend import Choice, Decision, Journaled, Request, StepChanged
from runbook.tui.frontend import PendingDecision, TuiFrontend
from runbook.tui.screens import run_engine, run_view
from runbook.tui.screens.run_answers import ANSWERS, RunAnswers
from runbook.tui.screens.run_engine import LOCKED, EngineEnded, LockChanged
from runbook.tui.screens.run_model import RunModel
from runbook.tui.widgets.mode_bar import ModeBar
from runbook.tui.widgets.prompt import Prompt
from runbook.tui.widgets.step_list import NEEDS_CONFIRMATION, StepList

if TYPE_CHECKING:
    from runbook.core.environment import Environment

FLUSH_INTERVAL = 0.08
# While the engine thread streams output it holds the GIL for whole switch intervals; the UI
# thread (keys, painting) waits for one at every turn of its event loop. 1 ms instead of
# Python's 5 ms keeps a key press under 100 ms during a 200,000-line flood.
UI_SWITCH_INTERVAL = 0.001


class RunScreen(RunAnswers, Screen[None]):
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
        Binding("o", "take_over_incident", "Take over", id="run.take_over"),
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
        self.model = RunModel(incident or "")
        self.pending: PendingDecision | None = None
        self.driving = False
        self.ended: str | None = None
        self.end_message = ""
        self.holder: str | None = None
        self.stop_following = threading.Event()
        self._leave_when_done = False
        self._output_lines = 0
        self._refused_typed: set[str] = set()
        self._switch_interval = sys.getswitchinterval()

    @property
    def state(self) -> IncidentState:
        """The incident as folded from the events seen so far."""
        return self.model.state

    @property
    def running_step(self) -> str | None:
        """The step running now in this process (None between steps)."""
        return self.model.running_step

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        sub = self.loaded.playbook.id if self.loaded is not None else (self.incident or "")
        yield ModeBar(
            mode=self.mode,
            env=self.env.name,
            production=getattr(self.env, "production", False),
            subtitle=sub,
            id="modebar",
        )
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
            self._say(run_view.READ_ONLY_PROMPT, run_view.ATTENTION)
            self._follow()
        else:
            self.driving = True
            self._drive(self.take_over_at_start)
        self.refresh_bindings()

    def on_unmount(self) -> None:
        # The app is going away (closed terminal, dropped connection): this client lets go and
        # the incident goes on in its supervisor; a question waits there for whoever attaches.
        self.stop_following.set()
        if self.engine is not None:
            self.engine.detach()
        self.frontend.close()
        sys.setswitchinterval(self._switch_interval)

    # -- workers (run_engine) ----------------------------------------------------------------------

    @work(thread=True, group="engine", exit_on_error=False)
    def _drive(self, take_over: bool) -> None:
        """Run the engine (blocks this worker thread until the incident ends or pauses)."""
        self.post_message(run_engine.drive(self, take_over))

    @work(thread=True, group="follow", exit_on_error=False)
    def _follow(self) -> None:
        """Read-only: follow the journal and the lock holder."""
        run_engine.follow(self)

    # -- events from the engine ----------------------------------------------------------------

    def flush_now(self) -> None:
        """Paint what the front end has queued without waiting for the timer (after an attach)."""
        if self.is_mounted:
            self._flush()

    def _flush(self) -> None:
        events, output, count = self.frontend.drain()
        changed = False
        for event in events:
            if isinstance(event, Journaled):
                changed |= self._apply(event.event)
            elif isinstance(event, StepChanged) and event.status == NEEDS_CONFIRMATION:
                self.model.step_needs_confirmation(event.step)
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
        applied = self.model.apply(ev, read_only=self.read_only)
        if applied is None:
            return False
        if applied.opened:
            self.incident = ev.incident
            self.mode = self.state.mode
            playbook = self.model.playbook_from_journal()
            if playbook is not None:
                self._set_steps(playbook)
            bar = self.query_one("#modebar", ModeBar)
            bar.mode, bar.env = self.state.mode, self.state.env
            bar.subtitle = f"{self.state.playbook_id} · {ev.incident}"
        if applied.started is not None:
            self.query_one("#output", Log).write_line(f"── {applied.started} (attempt {applied.attempt}) ──")
            self._show_step(applied.started)
        return True

    def _set_steps(self, playbook: Any) -> None:
        self.query_one("#steps", StepList).set_steps(self.model.set_steps(playbook))

    def display_status(self) -> dict[str, str]:
        """Every step's status as shown (interrupted, needs-confirmation included)."""
        return self.model.display_status()

    def _current_step(self) -> str | None:
        if self.pending is not None and self.pending.request.step:
            return self.pending.request.step
        return self.running_step

    def _refresh_view(self) -> None:
        self.query_one("#steps", StepList).set_status(self.display_status(), self._current_step())
        tail = list(self.model.timeline)[-4:]
        self.query_one("#timeline-tail", Static).update(Text("\n".join(tail), no_wrap=True, overflow="ellipsis"))
        st = self.state
        self.query_one("#modebar", ModeBar).set_times(st.opened or None, st.closed, st.rto)
        self.refresh_bindings()

    def _show_step(self, step_id: str, request: Request | None = None) -> None:
        info = self.model.step_info.setdefault(step_id, {})
        if request is not None:
            info.update(run_view.request_info(request))
        view = run_view.step_view(step_id, self.model.steps_meta.get(step_id), info, request)
        self.query_one("#step-title", Static).update(view.title)
        self.query_one("#step-desc", Markdown).update(view.description)
        action = self.query_one("#step-action", Static)
        action.update(view.action)
        action.set_class(view.destructive, "-destructive")
        self.query_one("#output-title", Static).update(view.output_title)

    def _say(self, text: str, level: str = run_view.CALM) -> None:
        self.query_one("#prompt", Prompt).say(text, level)

    # -- keys (the answers to questions are in run_answers) ----------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ANSWERS:
            return self._ask(*ANSWERS[action]) and self._offered(action)
        if action == "cancel_step":
            return self.driving and self.pending is None and self.running_step is not None
        if action == "take_over_incident":
            return self.read_only and not self.driving and self.ended is None
        if action == "note":
            return self.driving and self.ended is None and self.engine is not None
        return True

    def action_cancel_step(self) -> None:
        """Stop the running step (journaled as failed by the operator)."""
        if self.engine is not None and self.running_step is not None:
            self.engine.cancel_current()
            self.notify(f"Stopping {self.running_step}…")

    def action_note(self) -> None:
        """Add a note to the timeline."""
        from runbook.tui.screens.dialogs.reason import ReasonScreen

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
        from runbook.tui.screens.timeline import TimelineScreen

        self.app.push_screen(TimelineScreen(self.ctx, self.incident))

    def action_take_over_incident(self) -> None:
        """Take the incident over from the operator who holds it (journaled)."""
        if not self.read_only or self.driving:
            return
        self.stop_following.set()
        self.read_only = False
        self.driving = True
        self.model.history_n = self.model.last_n
        self.model.running_step = None
        self._say("Taking over…", run_view.ATTENTION)
        self._drive(True)
        self.refresh_bindings()

    # -- leaving -----------------------------------------------------------------------------------

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
            self._ask_how_to_leave()
            return
        self._say("Pausing…")

    def _ask_how_to_leave(self) -> None:
        """A step runs: pause when it ends, stop it now, or stay."""
        from runbook.tui.screens.dialogs.leave import LeaveScreen

        def done(choice: str | None) -> None:
            if choice is None:
                self._leave_when_done = False
                self.frontend.quit_requested = False
                return
            if choice == "stop" and self.engine is not None:
                self.engine.cancel_current()
            self._say("The incident will pause when the step ends…", run_view.ATTENTION)

        self.app.push_screen(LeaveScreen(), done)

    def _leave(self) -> None:
        self.stop_following.set()
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
        if message.status == LOCKED:
            # Someone else drives it: follow it read-only.
            self.read_only = True
            self.notify(message.message, severity="warning", timeout=8)
            self.stop_following.clear()
            self._say(run_view.READ_ONLY_PROMPT, run_view.ATTENTION)
            self._follow()
            self.refresh_bindings()
            return
        self.ended = message.status
        end = run_view.ending(message.status, message.message, self.incident or "")
        self.end_message = end.message
        if end.notify:
            self.notify(message.message, severity="error", timeout=10)
        self._say(end.prompt, end.level)
        self._refresh_view()
        if self._leave_when_done:
            self._leave()

    def on_lock_changed(self, message: LockChanged) -> None:
        self.holder = message.holder
        if self.read_only:
            self._say(run_view.holder_prompt(message.holder), run_view.ATTENTION)

    # -- for the command palette -------------------------------------------------------------

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for every action that applies now."""
        out = []
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            if self.check_action(b.action, ()):
                out.append((b.description.rstrip("…"), f"key {b.key}", b.action))
        return out
