"""The confirmation dialog: ``yes`` (the y key) or ``typed`` (the expected value, exactly)."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from runbook.engine.frontend import Choice, Decision, Request
from runbook.tui.screens.cursor import apply_cursor_blink
from runbook.tui.screens.dialogs.reason import ReasonScreen
from runbook.tui.screens.dialogs.wording import no_focus, where


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
            yield Static(f" {where(self.mode, self.env)} — confirm a {r.effect.upper()} step ", id="dialog-title")
            yield Static(f"[b]{escape(r.title)}[/]", id="confirm-step")
            yield Static(f"[b]It will run:[/] {escape(r.action)}", id="confirm-action")
            yield Static(
                f"[b]On:[/] {escape(r.target or '(no target)')}   [b]Effect:[/] {escape(r.effect)}", id="confirm-target"
            )
            if self.typed:
                yield Static(
                    f"Type [b reverse] {escape(r.expected_text())} [/] exactly to confirm (Escape refuses):",
                    id="confirm-help",
                )
                yield Input(id="confirm-input")
                yield Label(self.attempt_note, id="confirm-note")
            else:
                yield Static(
                    "Press [b]y[/] to confirm, [b]n[/] or Escape to refuse, [b]s[/] to skip.", id="confirm-help"
                )
            with Horizontal(classes="buttons"):
                yield no_focus(Button("Confirm", id="confirm-ok", variant="error", disabled=self.typed))
                yield no_focus(Button("Refuse (esc)", id="confirm-no"))
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
        ok = self.request.matches(event.value)
        self.query_one("#confirm-ok", Button).disabled = not ok
        self.query_one("#confirm-note", Label).update("matches — press Enter to confirm" if ok else self.attempt_note)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value
        if not value:
            want = self.request.expected_text()
            self.notify(f"Type {want!r} to confirm, or press Escape to refuse.", severity="warning")
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
