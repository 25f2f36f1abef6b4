"""The start form: the playbook's parameters (typed, validated inline), environment and mode."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet, Static

from runbook.tui.screens.cursor import apply_cursor_blink
from runbook.tui.widgets.mode_bar import ModeBar
from runbook.tui.widgets.radio_choice import RadioChoice

MODES = ("live", "dry-run", "drill")


class StartScreen(Screen[None]):
    """Fill in the parameters, pick environment and mode, start the incident.

    Args:
        ctx: Config, journal and playbook directories.
        loaded: The validated playbook.
        given: Values given on the command line (prefilled).
        env_name: Preselected environment (default: the config's).
        mode: Preselected mode.
    """

    CSS_PATH = "start.tcss"

    BINDINGS = [
        Binding("ctrl+s", "start", "Start incident", id="start.start"),
        Binding("escape", "back", "Back", id="start.back"),
    ]

    def __init__(
        self,
        ctx: Any,
        loaded: Any,
        *,
        given: dict[str, Any] | None = None,
        env_name: str | None = None,
        mode: str = "live",
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.loaded = loaded
        self.pb = loaded.playbook
        self.given = {k: v for k, v in (given or {}).items() if v is not None}
        self.env_names = sorted({"sandbox", *getattr(ctx.config, "environments", {})})
        default = str(env_name or getattr(ctx.config, "default_env", None) or "sandbox")
        self.env_name: str = default if default in self.env_names else "sandbox"
        self.mode = mode if mode in MODES else "live"
        self.edited: set[str] = set(self.given)

    def compose(self) -> ComposeResult:
        pb = self.pb
        yield ModeBar(
            mode=self.mode,
            env=self.env_name,
            production=self._production(self.env_name),
            subtitle=f"start {pb.id}",
            id="modebar",
        )
        with VerticalScroll(id="start-form"):
            rto = f" · RTO {pb.rto}" if pb.rto else ""
            rpo = f" · RPO {pb.rpo}" if pb.rpo else ""
            yield Static(
                f"[b]{escape(pb.title)}[/] — {pb.tier.value}{f' level {pb.level}' if pb.level else ''}"
                f"{rto}{rpo} · {len(pb.steps)} steps"
            )
            if pb.description:
                yield Static(escape(pb.description.strip()), classes="field-help")
            # Where and how first (one line each), with the LIVE warning: visible at 80×24.
            with Horizontal(classes="choice-row"):
                yield Label("Environment", classes="choice-label")
                with RadioSet(id="start-env", compact=True):
                    for n in self.env_names:
                        yield RadioChoice(
                            n + (" (production)" if self._production(n) else ""), value=n == self.env_name, name=n
                        )
            with Horizontal(classes="choice-row"):
                yield Label("Mode", classes="choice-label")
                with RadioSet(id="start-mode", compact=True):
                    for m in MODES:
                        yield RadioChoice(m, value=m == self.mode, name=m)
            yield Static("", id="start-live-warning")
            for name, spec in pb.params.items():
                kind = spec.type.value + (f" ({', '.join(spec.choices or [])})" if spec.choices else "")
                req = " [red]required[/]" if spec.required and spec.default is None else ""
                help_ = f" — {escape(spec.help)}" if spec.help else ""
                yield Label(
                    f"{escape(name)} [dim]{escape(kind)}{' · secret' if spec.secret else ''}[/]{req}[dim]{help_}[/]",
                    classes="field-label",
                )
                yield Input(
                    value=self._initial(name, spec),
                    password=spec.secret,
                    id=f"param-{name}",
                    placeholder=name,
                    compact=True,
                )
                yield Static("", id=f"error-{name}", classes="field-error")
            with Horizontal(id="start-choices"):
                yield Button("Start incident (ctrl+s)", id="start-go", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        apply_cursor_blink(self)
        self._sync_mode()
        for name in self.pb.params:
            self._check(name)
        first = next(iter(self.query(Input)), None)
        if first is not None:
            first.focus()

    # -- values ------------------------------------------------------------------------------

    def _production(self, name: str) -> bool:
        if name in ("prod", "production"):
            return True
        data = getattr(self.ctx.config, "environments", {}).get(name, {})
        return bool(data.get("production", False)) if isinstance(data, dict) else False

    def _env(self, name: str | None = None) -> Any:
        return self.ctx.config.environment(name or self.env_name)

    def _initial(self, name: str, spec: Any) -> str:
        if name in self.given:
            return str(self.given[name])
        return self._default(name, spec)

    def _default(self, name: str, spec: Any) -> str:
        if spec.default is None:
            return ""
        from runbook.playbook import params as P

        try:
            value = P.bind({name: spec}, {}, self._env().lookup)[name]
        except Exception:  # noqa: BLE001 - the environment lacks the setting: leave it empty
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def _check(self, name: str) -> str | None:
        """Validate one field inline; returns the error or None."""
        from runbook.playbook import params as P

        spec = self.pb.params[name]
        value = self.query_one(f"#param-{name}", Input).value
        error: str | None = None
        if value == "":
            if spec.required:
                error = f"{name} is required" + (f": {spec.help}" if spec.help else "")
        else:
            try:
                P.coerce(name, spec, value)
            except P.ParamError as exc:
                error = str(exc)
        label = self.query_one(f"#error-{name}", Static)
        label.update(escape(error[0].upper() + error[1:]) if error else "")
        label.display = bool(error)
        return error

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("param-"):
            name = event.input.id.removeprefix("param-")
            self.edited.add(name)
            self._check(name)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        name = event.pressed.name or ""
        if event.radio_set.id == "start-env":
            self.env_name = name
            for pname, spec in self.pb.params.items():
                if pname not in self.edited and isinstance(spec.default, str) and "{{" in spec.default:
                    widget = self.query_one(f"#param-{pname}", Input)
                    widget.value = self._default(pname, spec)
                    self.edited.discard(pname)
        else:
            self.mode = name
            if name == "drill" and self._production(self.env_name):
                self.notify("A drill runs against a drill environment: switched to sandbox.", severity="warning")
                self._select_env("sandbox")
        self._sync_mode()

    def _select_env(self, name: str) -> None:
        for rb in self.query_one("#start-env", RadioSet).query(RadioButton):
            if rb.name == name:
                rb.value = True
        self.env_name = name

    def _sync_mode(self) -> None:
        bar = self.query_one("#modebar", ModeBar)
        bar.mode = self.mode
        bar.env = self.env_name
        bar.production = self._production(self.env_name)
        bar.refresh()
        warn = self.query_one("#start-live-warning", Static)
        if self.mode == "live":
            prod = " (PRODUCTION)" if self._production(self.env_name) else ""
            warn.update(f"LIVE on {escape(self.env_name)}{prod}: every confirmed step acts for real.")
        elif self.mode == "drill":
            warn.update(f"DRILL on {escape(self.env_name)}: a rehearsal; notifications are prefixed [DRILL].")
        else:
            warn.update("DRY-RUN: read-only steps run; mutating steps are only shown.")
        warn.set_class(self.mode != "live", "-quiet")
        self.query_one("#start-go", Button).label = f"Start {self.mode.upper()} incident on {self.env_name} (ctrl+s)"

    # -- actions -------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start-go":
            self.action_start()

    def action_start(self) -> None:
        """Validate everything and open the incident."""
        from runbook.playbook import params as P
        from runbook.tui.screens.run import RunScreen

        bad = [n for n in self.pb.params if self._check(n)]
        if bad:
            self.query_one(f"#param-{bad[0]}", Input).focus()
            self.notify(f"Fix {', '.join(bad)} first.", severity="error")
            return
        given = {n: self.query_one(f"#param-{n}", Input).value for n in self.pb.params}
        given = {n: v for n, v in given.items() if v != ""}
        try:
            env = self._env()
            P.bind(self.pb.params, given, env.lookup)
        except Exception as exc:  # noqa: BLE001 - ParamError, UsageError: one sentence
            self.notify(str(exc), severity="error", timeout=8)
            return
        app = self.app
        app.pop_screen()
        app.push_screen(RunScreen(self.ctx, env, loaded=self.loaded, given=given, mode=self.mode))

    def action_back(self) -> None:
        """Back to the home screen (or quit when started from the command line)."""
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for the command palette."""
        return [("Start the incident", "key ctrl+s", "start"), ("Back", "key escape", "back")]
