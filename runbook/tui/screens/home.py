"""The home screen: playbooks by tier and level, open incidents to resume, environment status.

What it shows is read by :mod:`.home_data` and laid out in rows by :mod:`.home_rows`.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, OptionList, Static

from runbook.tui.screens.home_data import HomeData, load_home_status, read_lists
from runbook.tui.screens.home_rows import detail_markup, home_options

HOME_KEYS = (
    "[b]↑↓[/] choose · [b]enter[/] open · [b]esc[/] clear filter · [b]^r[/] refresh · [b]^p[/] commands · [b]^q[/] quit"
)


class HomeLoaded(Message):
    """The home data was read."""

    def __init__(self, data: HomeData) -> None:
        super().__init__()
        self.data = data


class HomeStatusLoaded(Message):
    """The environment details and the sandbox status were read."""

    def __init__(self, data: HomeData) -> None:
        super().__init__()
        self.data = data


class HomeScreen(Screen[None]):
    """Playbooks grouped by tier and level, open incidents, environment. Type to filter.

    Args:
        ctx: Config, journal and playbook directories.
    """

    AUTO_FOCUS = "#home-filter"

    BINDINGS = [
        Binding("enter", "open", "Open", id="home.open", priority=False),
        Binding("down", "move(1)", "Down", show=False, id="home.down"),
        Binding("up", "move(-1)", "Up", show=False, id="home.up"),
        Binding("escape", "clear", "Clear filter", id="home.clear"),
        Binding("ctrl+r", "reload", "Refresh", id="home.reload"),
    ]

    def __init__(self, ctx: Any) -> None:
        super().__init__()
        self.ctx = ctx
        self.data: HomeData | None = None
        self._filled_width: int | None = None  # the row width the list was laid out for

    def compose(self) -> ComposeResult:
        yield Static("env …  ·  sandbox …", id="home-status")
        yield Input(placeholder="Type to filter · ↑↓ choose · Enter opens", id="home-filter", compact=True)
        yield OptionList(id="home-list", compact=True)
        yield Static("", id="home-detail")
        # A fixed line rather than a Footer: these keys never change here, and a Footer (a
        # widget per key, recomposed on every binding update) is a tenth of the start-up time.
        yield Static(HOME_KEYS, id="home-keys")

    def on_mount(self) -> None:
        box = self.query_one("#home-filter", Input)
        box.cursor_blink = getattr(self.app, "cursor_blink", True)
        box.focus()
        # The first frame shows the lists: reading them is local (SQLite journal, playbook files,
        # summaries cached) and costs less than painting an empty screen first.
        data = read_lists(self.ctx)
        self.on_home_loaded(HomeLoaded(data))

    def reload(self) -> None:
        """Read the playbooks and incidents again (in a worker)."""
        self._load()

    @work(thread=True, exclusive=True, group="home", exit_on_error=False)
    def _load(self) -> None:
        # The lists first (what the operator came for); the slower status line once they show.
        data = read_lists(self.ctx)
        self.post_message(HomeLoaded(data))

    @work(thread=True, exclusive=True, group="home-status", exit_on_error=False)
    def _load_status(self, env: str, description: str, production: bool) -> None:
        try:
            status = load_home_status(self.ctx, HomeData(env=env, env_description=description, production=production))
        except Exception as exc:  # noqa: BLE001
            status = HomeData(env=env, env_description=description, production=production, sandbox=f"unknown ({exc})")
        self.post_message(HomeStatusLoaded(status))

    def on_home_loaded(self, message: HomeLoaded) -> None:
        d = message.data
        if self.data is not None and d.sandbox == "unknown":
            # A reload: keep the status line's details until the new ones arrive.
            d.env_description, d.sandbox = d.env_description or self.data.env_description, self.data.sandbox
        self.data = d
        self._status_line()
        if d.error:
            self.notify(d.error, severity="error")
        self._fill()
        # Not before the list has painted: the status reads the sandbox (imports, process checks).
        self.call_after_refresh(self._load_status, d.env, d.env_description, d.production)

    def on_home_status_loaded(self, message: HomeStatusLoaded) -> None:
        if self.data is None:
            return
        s = message.data
        self.data.env, self.data.env_description, self.data.production, self.data.sandbox = (
            s.env,
            s.env_description,
            s.production,
            s.sandbox,
        )
        self._status_line()

    def _status_line(self) -> None:
        d = self.data
        if d is None:
            return
        env = f"[b]env {escape(d.env)}[/]" + (" [b reverse] PRODUCTION [/]" if d.production else "")
        if d.env_description:
            env += f" [dim]({escape(d.env_description)})[/]"
        sandbox = "…" if d.sandbox == "unknown" else d.sandbox
        self.query_one("#home-status", Static).update(f"{env}  ·  sandbox: {escape(sandbox)}")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def _row_width(self) -> int:
        """The list's inner width (the terminal's before the first layout)."""
        ol = self.query_one("#home-list", OptionList)
        width = ol.scrollable_content_region.width or self.app.size.width
        return max(40, width - 1)

    def _fill(self) -> None:
        if self.data is None:
            return
        text = self.query_one("#home-filter", Input).value.strip().lower()
        ol = self.query_one("#home-list", OptionList)
        ol.clear_options()
        width = self._row_width()
        self._filled_width = width
        options = home_options(self.data, text, width)
        ol.add_options(options)
        for idx, opt in enumerate(options):
            if not opt.disabled:
                ol.highlighted = idx
                break
        self._detail()

    def on_resize(self) -> None:
        if self.data is not None and self._row_width() != self._filled_width:
            highlighted = self.query_one("#home-list", OptionList).highlighted_option
            self._fill()
            if highlighted is not None and highlighted.id:
                ol = self.query_one("#home-list", OptionList)
                try:
                    ol.highlighted = ol.get_option_index(highlighted.id)
                except Exception:  # noqa: BLE001 - the option is gone (filter): keep the first
                    pass

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        opt = self.query_one("#home-list", OptionList).highlighted_option
        detail = detail_markup(self.data, opt.id) if opt is not None and opt.id and self.data is not None else ""
        self.query_one("#home-detail", Static).update(detail)

    def action_move(self, delta: int) -> None:
        """Move the highlight (the filter keeps the focus)."""
        ol = self.query_one("#home-list", OptionList)
        if delta > 0:
            ol.action_cursor_down()
        else:
            ol.action_cursor_up()

    def action_clear(self) -> None:
        """Clear the filter."""
        self.query_one("#home-filter", Input).value = ""

    def action_reload(self) -> None:
        """Read everything again."""
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the highlighted playbook (start form) or incident (resume / read-only)."""
        opt = self.query_one("#home-list", OptionList).highlighted_option
        if opt is None or not opt.id or self.data is None:
            return
        kind, key = opt.id.split(":", 1)
        try:
            if kind == "pb":
                self._open_playbook(key)
            else:
                self._open_incident(key)
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            self.notify(str(exc), severity="error", timeout=8)

    def _open_playbook(self, pid: str) -> None:
        from runbook.playbook.validate import load
        from runbook.tui.screens.start import StartScreen

        s = next(p for p in self.data.playbooks if p.id == pid)  # type: ignore[union-attr]
        loaded = load(s.path)
        if loaded.errors:
            self.notify(f"The playbook is not valid: {loaded.errors[0]}", severity="error", timeout=8)
            return
        self.app.push_screen(StartScreen(self.ctx, loaded))

    def _open_incident(self, inc: str) -> None:
        from runbook.tui.screens.opening import run_screen_for_incident

        i = next(x for x in self.data.incidents if x["id"] == inc)  # type: ignore[union-attr]
        env = self.ctx.config.environment(i["env"] or None)
        self.app.push_screen(run_screen_for_incident(self.ctx, inc, env))

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for the command palette."""
        return [
            ("Open the highlighted item", "key enter", "open"),
            ("Refresh", "key ctrl+r", "reload"),
            ("Clear the filter", "key escape", "clear"),
        ]
