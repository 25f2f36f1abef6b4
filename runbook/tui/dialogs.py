"""Modal dialogs: confirmation (yes / typed), reason, interrupted step, secret, leaving."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from runbook.engine.frontend import Choice, Decision, Request
from runbook.tui.widgets import MODE_LABEL, apply_cursor_blink


def _no_focus(button: Button) -> Button:
    """Buttons in dialogs are for the mouse only: Enter on a focused button must never confirm."""
    button.can_focus = False
    return button


def _when(ts: object) -> str:
    """An ISO timestamp as ``2025-11-23 03:00:07 UTC (local 04:00:07)``."""
    if not ts:
        return "earlier"
    try:
        from runbook.reports.timeline import local_time

        text = str(ts)
        return f"{text[:10]} {text[11:19]} UTC (local {local_time(text)})"
    except ValueError:
        return str(ts)


def _where(mode: str, env: str) -> str:
    return f"{MODE_LABEL.get(mode, mode.upper())} · {env}"


class ConfirmScreen(ModalScreen[Decision | None]):
    """States what will happen and to what; answers CONFIRM, REFUSE or SKIP.

    ``yes`` confirmations need the ``y`` key (never a default, never Enter). ``typed`` ones need
    the expected value typed exactly: the Confirm button stays disabled until it matches, and
    Enter submits only a non-empty value (a wrong one is journaled as refused by the engine).
    Escape refuses. ``s`` (``ctrl+s`` while typing) skips the step, with a reason.

    Args:
        request: The engine's CONFIRM request.
        mode: Incident mode (shown again in the dialog).
        env: Environment name.
        attempt_note: Shown under the input (e.g. the previous value did not match).
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("escape", "refuse", "Refuse", id="confirm.refuse"),
        Binding("y", "confirm", "Confirm (y)", id="confirm.yes"),
        Binding("n", "refuse_n", "Refuse", show=False, id="confirm.no"),
        Binding("s", "skip", "Skip…", id="confirm.skip"),
        Binding("ctrl+s", "skip_typed", "Skip…", id="confirm.skip_typed"),
    ]

    class Answered(Message):
        """The operator answered the confirmation."""

        def __init__(self, decision: Decision) -> None:
            super().__init__()
            self.decision = decision

    def __init__(self, request: Request, *, mode: str, env: str, attempt_note: str = "") -> None:
        super().__init__(classes=f"-{mode}")
        self.request = request
        self.mode = mode
        self.env = env
        self.attempt_note = attempt_note
        self.typed = request.confirm == "typed"

    def compose(self) -> ComposeResult:
        r = self.request
        with Vertical(id="dialog", classes=f"dialog -{r.effect}"):
            yield Static(f" {_where(self.mode, self.env)} — confirm a {r.effect.upper()} step ", id="dialog-title")
            yield Static(f"[b]{escape(r.title)}[/]", id="confirm-step")
            yield Static(f"[b]It will run:[/] {escape(r.action)}", id="confirm-action")
            yield Static(f"[b]On:[/] {escape(r.target or '(no target)')}   [b]Effect:[/] {escape(r.effect)}", id="confirm-target")
            if self.typed:
                yield Static(f"Type [b reverse] {escape(r.expected or '')} [/] exactly to confirm (Escape refuses):", id="confirm-help")
                yield Input(id="confirm-input")
                yield Label(self.attempt_note, id="confirm-note")
            else:
                yield Static("Press [b]y[/] to confirm, [b]n[/] or Escape to refuse, [b]s[/] to skip.", id="confirm-help")
            with Horizontal(classes="buttons"):
                yield _no_focus(Button("Confirm", id="confirm-ok", variant="error", disabled=self.typed))
                yield _no_focus(Button("Refuse (esc)", id="confirm-no"))
        yield Footer()

    def on_mount(self) -> None:
        apply_cursor_blink(self)
        if self.typed:
            self.query_one("#confirm-input", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.typed and action in ("confirm", "skip", "refuse_n"):
            return False  # letters go to the input; the button or Enter confirms
        if not self.typed and action == "skip_typed":
            return False
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        ok = event.value == (self.request.expected or "")
        self.query_one("#confirm-ok", Button).disabled = not ok
        self.query_one("#confirm-note", Label).update("matches — press Enter to confirm" if ok else self.attempt_note)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value
        if not value:
            self.notify(f"Type {self.request.expected!r} to confirm, or press Escape to refuse.", severity="warning")
            return
        # The engine compares and journals a mismatch as a refused confirmation.
        self.dismiss(Decision(Choice.CONFIRM, typed=value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm-ok":
            if self.typed:
                self.dismiss(Decision(Choice.CONFIRM, typed=self.query_one("#confirm-input", Input).value))
            else:
                self.dismiss(Decision(Choice.CONFIRM))
        else:
            self.action_refuse()

    def action_confirm(self) -> None:
        """Confirm a ``yes`` step."""
        if not self.typed:
            self.dismiss(Decision(Choice.CONFIRM))

    def action_refuse(self) -> None:
        """Refuse: the step is not run; the engine asks again what to do."""
        self.dismiss(Decision(Choice.REFUSE))

    def action_refuse_n(self) -> None:
        """``n`` refuses (``yes`` confirmations only; while typing it is a letter)."""
        self.action_refuse()

    def action_skip_typed(self) -> None:
        """``ctrl+s`` skips while the input has focus."""
        self.action_skip()

    def action_skip(self) -> None:
        """Skip the step (asks a reason)."""

        def done(reason: str | None) -> None:
            if reason:
                self.dismiss(Decision(Choice.SKIP, reason=reason))

        self.app.push_screen(ReasonScreen(f"Skip {self.request.title}", "Why skip this step? (journaled)"), done)


class ReasonScreen(ModalScreen[str | None]):
    """Asks one line of text (a reason, a note). Escape cancels.

    Args:
        title: The dialog title.
        prompt: The question.
        optional: Whether an empty answer is accepted.
        password: Mask the input (secrets).
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reason.cancel")]

    def __init__(self, title: str, prompt: str, *, optional: bool = False, password: bool = False, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.optional = optional
        self.password = password
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f" {escape(self.title_text)} ", id="dialog-title")
            yield Static(escape(self.prompt))
            yield Input(placeholder=self.placeholder, password=self.password, id="reason-input")
            yield Static("Enter to submit · Escape to cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        apply_cursor_blink(self)
        self.query_one("#reason-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if not value and not self.optional:
            self.notify("A reason is needed (it is journaled).", severity="warning")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        """Close without an answer."""
        self.dismiss(None)


class InterruptedScreen(ModalScreen[Decision | None]):
    """A step was started before a crash and never finished: retry, mark done or skip.

    It is never re-run automatically. Escape closes the dialog (the run screen's keys still
    answer it).

    Args:
        request: The engine's INTERRUPTED request (extra: started_at, last_output).
    """

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
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
        started = _when(r.extra.get("started_at"))
        last = r.extra.get("last_output") or []
        with Vertical(id="dialog", classes="dialog -interrupted"):
            yield Static(" Interrupted step ", id="dialog-title")
            yield Static(f"[b]{escape(r.title)}[/] ({escape(r.effect)}) was started at {escape(str(started))} and never finished.")
            yield Static("It is not re-run automatically. Did it complete? Check before you choose.")
            yield Static("[b]Last output:[/]")
            yield Static(escape("\n".join(str(x) for x in last[-8:]) or "(no output)"), id="interrupted-output")
            yield Static("[b]t[/] retry · [b]d[/] mark done (reason) · [b]s[/] skip (reason) · Escape: later")
        yield Footer()

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


class LeaveScreen(ModalScreen[str | None]):
    """Leaving while a step runs: wait for it, stop it, or stay."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("w", "choose('wait')", "Pause after it", id="leave.wait"),
        Binding("x", "choose('stop')", "Stop it now", id="leave.stop"),
        Binding("escape", "choose('stay')", "Stay", id="leave.stay"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(" A step is running ", id="dialog-title")
            yield Static(
                "[b]w[/] pause the incident when the step finishes · [b]x[/] stop the step now "
                "(journaled as failed; you decide on resume) and pause · Escape: stay"
            )
        yield Footer()

    def action_choose(self, what: str) -> None:
        """Answer."""
        self.dismiss(None if what == "stay" else what)


class ExportScreen(ModalScreen[str | None]):
    """Pick an export format: j JSON, m Markdown, h HTML."""

    CSS_PATH = "dialogs.tcss"

    BINDINGS = [
        Binding("j", "pick('json')", "JSON", id="export.json"),
        Binding("m", "pick('md')", "Markdown", id="export.md"),
        Binding("h", "pick('html')", "HTML", id="export.html"),
        Binding("escape", "pick('')", "Cancel", id="export.cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(" Export the timeline ", id="dialog-title")
            yield Static("[b]j[/] JSON (every event, verifiable) · [b]m[/] Markdown (review draft) · [b]h[/] HTML · Escape: cancel")
        yield Footer()

    def action_pick(self, fmt: str) -> None:
        """Answer."""
        self.dismiss(fmt or None)
