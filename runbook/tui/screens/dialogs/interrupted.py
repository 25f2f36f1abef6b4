"""A step started before a crash and never finished: retry, mark done or skip (never automatic).

If a command it started is still alive, the only choices are to stop it (typed) or to wait.
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from runbook.core.procs import describe_running
from runbook.engine.frontend import Choice, Decision, Request
from runbook.tui.screens.dialogs.reason import ReasonScreen
from runbook.tui.screens.dialogs.wording import when


class InterruptedScreen(ModalScreen[Decision | None]):
    """A step was started before a crash and never finished: retry, mark done or skip.

    It is never re-run automatically. Escape closes the dialog (the run screen's keys still
    answer it).

    Args:
        request: The engine's INTERRUPTED request (extra: started_at, last_output).
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("k", "terminate", "Stop it…", id="interrupted.terminate"),
        Binding("t", "retry", "Retry", id="interrupted.retry"),
        Binding("d", "done", "Mark done…", id="interrupted.done"),
        Binding("s", "skip", "Skip…", id="interrupted.skip"),
        Binding("escape", "close", "Later", id="interrupted.close"),
    ]

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        started = when(r.extra.get("started_at"))
        last = r.extra.get("last_output") or []
        with Vertical(id="dialog", classes="dialog -interrupted"):
            yield Static(" Interrupted step ", id="dialog-title")
            yield Static(
                f"[b]{escape(r.title)}[/] ({escape(r.effect)}) was started at {escape(str(started))} "
                "and never finished."
            )
            if self.running:
                yield Static(
                    f"[b]It is still running[/]: {escape(describe_running(self.running))}. It is never run twice: "
                    "wait for it to end and come back, or stop it.",
                    id="interrupted-running",
                )
            else:
                yield Static("It is not re-run automatically. Did it complete? Check before you choose.")
            yield Static("[b]Last output:[/]")
            yield Static(escape("\n".join(str(x) for x in last[-8:]) or "(no output)"), id="interrupted-output")
            if self.running:
                yield Static("[b]k[/] stop it (type the step's id) · Escape: later")
            else:
                yield Static("[b]t[/] retry · [b]d[/] mark done (reason) · [b]s[/] skip (reason) · Escape: later")
        yield Footer()

    @property
    def running(self) -> list[dict[str, object]]:
        """What the step left running (its commands still alive), if anything."""
        return list(self.request.extra.get("running") or [])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "terminate":
            return bool(self.running)
        if action in ("retry", "done", "skip"):
            return not self.running
        return True

    def action_terminate(self) -> None:
        """Stop what the step left running: the step's id, typed exactly."""
        step = self.request.step or ""

        def typed(text: str | None) -> None:
            if text is None:
                return
            if text != step:
                self.notify(f"Not stopped: type {step} exactly.", severity="warning")
                return
            self.dismiss(Decision(Choice.TERMINATE, typed=text))

        self.app.push_screen(ReasonScreen(f"Stop {self.request.title}", f"Type {step} to stop what it left running"),
                             typed)

    def action_retry(self) -> None:
        """Run the step again."""
        self.dismiss(Decision(Choice.RETRY, reason="operator chose retry after interruption"))

    def _with_reason(self, choice: Choice, title: str) -> None:
        def done(reason: str | None) -> None:
            if reason:
                self.dismiss(Decision(choice, reason=reason))

        self.app.push_screen(ReasonScreen(title, "Why? (journaled)"), done)

    def action_done(self) -> None:
        """Mark the step done (asks a reason)."""
        self._with_reason(Choice.DONE, f"Mark {self.request.title} done")

    def action_skip(self) -> None:
        """Skip the step (asks a reason)."""
        self._with_reason(Choice.SKIP, f"Skip {self.request.title}")

    def action_close(self) -> None:
        """Close; decide later from the run screen."""
        self.dismiss(None)
