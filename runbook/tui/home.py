"""The home screen: playbooks by tier and level, open incidents to resume, environment status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

TIER_ORDER = {"component": 0, "regional": 1, "full-loss": 2, "data-loss": 3, "security": 4, "maintenance": 5}


@dataclass
class HomeData:
    """What the home screen shows (read in a worker thread)."""

    playbooks: list[Any] = field(default_factory=list)  # catalog.Summary
    drills: dict[str, str] = field(default_factory=dict)  # playbook id -> ts of the last drill
    incidents: list[dict[str, Any]] = field(default_factory=list)
    env: str = ""
    env_description: str = ""
    production: bool = False
    sandbox: str = "unknown"
    error: str = ""


def sandbox_status() -> str:
    """The sandbox's one-line status, or ``unknown`` when that module is not available."""
    try:
        from runbook.sandbox.manager import status_summary  # type: ignore[import-not-found]
    except ImportError:
        return "unknown"
    try:
        summary = status_summary()
    except Exception as exc:  # noqa: BLE001 - a status line must not break the home screen
        return f"unknown ({exc})"
    if isinstance(summary, dict):
        return ", ".join(f"{k} {v}" for k, v in summary.items()) or "unknown"
    return str(summary)


def load_home_data(ctx: Any, *, with_sandbox: bool = True) -> HomeData:
    """Read playbooks, drills, incidents and locks (blocking: call from a worker)."""
    from runbook.engine import state as S
    from runbook.playbook.catalog import playbook_files, summarize

    data = HomeData()
    try:
        data.playbooks = [summarize(p) for p in playbook_files(ctx.playbook_dirs())]
    except Exception as exc:  # noqa: BLE001
        data.error = f"Playbooks could not be read: {exc}"
    journal = ctx.journal
    for ev in journal.events_of_type("drill_result"):
        data.drills[str(ev.payload.get("playbook", ""))] = ev.ts
    for inc in journal.incidents():
        events = journal.events(inc)
        st = S.fold(inc, events)
        if st.status in ("completed", "failed", "aborted") or st.mode == "" or st.drill:
            continue
        lock = journal.lock_info(inc)
        alive = lock is not None and lock.alive() and not journal.holds(inc)
        status = st.status
        if not alive and st.interrupted():
            status = "interrupted"
        data.incidents.append(
            {
                "id": inc,
                "playbook": st.playbook_id,
                "title": st.title,
                "status": status,
                "env": st.env,
                "mode": st.mode,
                "operator": st.operator,
                "opened": st.opened,
                "held_by": f"{lock.holder} (pid {lock.pid})" if alive and lock is not None else None,
            }
        )
    try:
        env = ctx.config.environment(None)
        data.env, data.env_description, data.production = env.name, env.description, env.production
    except Exception as exc:  # noqa: BLE001
        data.env = getattr(ctx.config, "default_env", "?")
        data.env_description = str(exc)
    if with_sandbox:
        data.sandbox = sandbox_status()
    return data


def _short_path(path: Any) -> str:
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


class HomeLoaded(Message):
    """The home data was read."""

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

    def compose(self) -> ComposeResult:
        yield Static("env …  ·  sandbox …", id="home-status")
        yield Input(placeholder="Type to filter · ↑↓ choose · Enter opens", id="home-filter", compact=True)
        yield OptionList(id="home-list")
        yield Static("", id="home-detail")
        yield Footer()

    def on_mount(self) -> None:
        from runbook.tui.widgets import apply_cursor_blink

        apply_cursor_blink(self)
        self.query_one("#home-filter", Input).focus()
        self.reload()

    def reload(self) -> None:
        """Read the playbooks and incidents again (in a worker)."""
        self._load()

    @work(thread=True, exclusive=True, group="home", exit_on_error=False)
    def _load(self) -> None:
        try:
            data = load_home_data(self.ctx)
        except Exception as exc:  # noqa: BLE001
            data = HomeData(error=f"The journal could not be read: {exc}")
        self.post_message(HomeLoaded(data))

    def on_home_loaded(self, message: HomeLoaded) -> None:
        self.data = message.data
        d = message.data
        env = f"[b]env {escape(d.env)}[/]" + (" [b reverse] PRODUCTION [/]" if d.production else "")
        if d.env_description:
            env += f" [dim]({escape(d.env_description)})[/]"
        self.query_one("#home-status", Static).update(f"{env}  ·  sandbox: {escape(d.sandbox)}")
        if d.error:
            self.notify(d.error, severity="error")
        self._fill()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def _fill(self) -> None:
        if self.data is None:
            return
        text = self.query_one("#home-filter", Input).value.strip().lower()
        ol = self.query_one("#home-list", OptionList)
        ol.clear_options()
        options: list[Option] = []
        incidents = [i for i in self.data.incidents if not text or text in " ".join(str(v) for v in i.values()).lower()]
        if incidents:
            options.append(Option(Text("Open incidents — Enter to resume", style="bold underline"), disabled=True))
            for i in incidents:
                held = f"held by {i['held_by']} (read-only)" if i["held_by"] else "free to resume"
                mode = i["mode"].upper()
                line = Text.assemble(
                    ("  " + i["id"], "bold"),
                    f"  {i['playbook']}  ",
                    (f"{i['status']}", "bold magenta" if i["status"] == "interrupted" else "yellow"),
                    f"  {mode}·{i['env']}  ",
                    (held, "dim"),
                )
                options.append(Option(line, id=f"inc:{i['id']}"))
        groups: dict[tuple[int, str, int], list[Any]] = {}
        for s in self.data.playbooks:
            hay = f"{s.id} {s.title} {s.tier} level {s.level or ''}".lower()
            if text and text not in hay:
                continue
            groups.setdefault((TIER_ORDER.get(s.tier, 9), s.tier or "invalid", s.level or 0), []).append(s)
        for (_, tier, level), items in sorted(groups.items()):
            head = tier + (f" · level {level}" if level else "")
            options.append(Option(Text(head, style="bold underline"), disabled=True))
            for s in sorted(items, key=lambda x: x.id):
                drilled = self.data.drills.get(s.id)
                when = f"drilled {drilled[:10]}" if drilled else ("never drilled" if s.drillable else "not drillable")
                targets = f"RTO {s.rto or '—'} RPO {s.rpo or '—'}"
                line = Text.assemble(("  " + s.id, "bold"), f"  {targets}  ", (when, "dim"), "  ", (s.error or s.title, "red" if s.error else ""))
                options.append(Option(line, id=f"pb:{s.id}"))
        if not options:
            options.append(Option(Text("Nothing matches the filter.", style="dim"), disabled=True))
        ol.add_options(options)
        for idx, opt in enumerate(options):
            if not opt.disabled:
                ol.highlighted = idx
                break
        self._detail()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        ol = self.query_one("#home-list", OptionList)
        opt = ol.highlighted_option
        detail = ""
        if opt is not None and opt.id and self.data is not None:
            kind, key = opt.id.split(":", 1)
            if kind == "pb":
                s = next((p for p in self.data.playbooks if p.id == key), None)
                if s is not None:
                    detail = f"[b]{escape(s.title or s.id)}[/] — {s.tier}{f' level {s.level}' if s.level else ''}, {s.steps} steps · {escape(_short_path(s.path))}"
            else:
                i = next((x for x in self.data.incidents if x["id"] == key), None)
                if i is not None:
                    detail = f"[b]{escape(i['title'] or i['playbook'])}[/] — opened {i['opened'][:19]}Z by {escape(i['operator'])}"
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
        from runbook.tui.start import StartScreen

        s = next(p for p in self.data.playbooks if p.id == pid)  # type: ignore[union-attr]
        loaded = load(s.path)
        if loaded.errors:
            self.notify(f"The playbook is not valid: {loaded.errors[0]}", severity="error", timeout=8)
            return
        self.app.push_screen(StartScreen(self.ctx, loaded))

    def _open_incident(self, inc: str) -> None:
        from runbook.tui.app import run_screen_for_incident

        i = next(x for x in self.data.incidents if x["id"] == inc)  # type: ignore[union-attr]
        env = self.ctx.config.environment(i["env"] or None)
        self.app.push_screen(run_screen_for_incident(self.ctx, inc, env))

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(label, help, action) for the command palette."""
        return [("Open the highlighted item", "key enter", "open"), ("Refresh", "key ctrl+r", "reload"), ("Clear the filter", "key escape", "clear")]
