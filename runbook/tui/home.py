"""The home screen: playbooks by tier and level, open incidents to resume, environment status."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

HOME_KEYS = "[b]↑↓[/] choose · [b]enter[/] open · [b]esc[/] clear filter · [b]^r[/] refresh · [b]^p[/] commands · [b]^q[/] quit"

TIER_ORDER = {"component": 0, "regional": 1, "full-loss": 2, "data-loss": 3, "security": 4, "maintenance": 5}


@dataclass
class HomeData:
    """What the home screen shows (read in a worker thread)."""

    playbooks: list[Any] = field(default_factory=list)  # catalog.Summary
    drills: dict[str, str] = field(default_factory=dict)  # playbook id -> ts of the last drill
    overdue: set[str] = field(default_factory=set)  # drillable playbooks not drilled recently (or failing)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    env: str = ""
    env_description: str = ""
    production: bool = False
    sandbox: str = "unknown"
    error: str = ""


def sandbox_status(ctx: Any) -> str:
    """The sandbox's one-line status, or ``unknown`` when the command line registered none."""
    local = getattr(getattr(ctx, "config", None), "local", {}).get("sandbox")
    if local is None:
        return "unknown"
    try:
        return str(local.status())
    except Exception as exc:  # noqa: BLE001 - a status line must not break the home screen
        return f"unknown ({exc})"


SUMMARY_CACHE_VERSION = 1


def _cache_file(ctx: Any) -> Path | None:
    try:
        from runbook.tui.app import state_home

        return state_home(ctx) / "cache" / "playbook-summaries.json"
    except Exception:  # noqa: BLE001 - no state directory: no cache
        return None


def cached_summaries(paths: list[Path], cache: Path | None) -> list[Any]:
    """The playbooks' summaries, re-read only for files whose size or mtime changed.

    ``runbook`` opens on the home screen at 3 a.m.: parsing every playbook's YAML each time (and
    importing the YAML parser) is most of the home screen's data cost, so the summaries are kept
    in the state directory, keyed by path, mtime and size.
    """
    import dataclasses
    import json

    from runbook.playbook.catalog import Summary

    # The cache is void when the Summary's fields change (another runbook version).
    version = f"{SUMMARY_CACHE_VERSION}:{','.join(f.name for f in dataclasses.fields(Summary))}"
    old: dict[str, Any] = {}
    if cache is not None:
        try:
            doc = json.loads(cache.read_text())
            if doc.get("version") == version:
                old = doc.get("files", {})
        except (OSError, ValueError, AttributeError):
            old = {}
    out: list[Any] = []
    new: dict[str, Any] = {}
    changed = False
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        key, stamp = str(path), [st.st_mtime_ns, st.st_size]
        hit = old.get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp:
            try:
                s = Summary(**{**hit["summary"], "path": path})
            except TypeError:
                s = None
            if s is not None:
                out.append(s)
                new[key] = hit
                continue
        from runbook.playbook.catalog import summarize

        s = summarize(path)
        out.append(s)
        fields = {k: v for k, v in vars(s).items() if k != "path"}
        new[key] = {"stamp": stamp, "summary": fields}
        changed = True
    if cache is not None and (changed or set(new) != set(old)):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = cache.with_suffix(".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": version, "files": new}, f)
            os.replace(tmp, cache)
        except OSError:
            pass
    return out


def load_home_data(ctx: Any, *, with_sandbox: bool = True) -> HomeData:
    """Read playbooks, drills, incidents and locks (blocking: call from a worker).

    The environment is named from the config without building it (building the sandbox
    environment imports the sandbox manager); :func:`load_home_status` fills in the rest.
    """
    from runbook.playbook.catalog import playbook_files

    data = HomeData()
    try:
        data.playbooks = cached_summaries(playbook_files(ctx.playbook_dirs()), _cache_file(ctx))
    except Exception as exc:  # noqa: BLE001
        data.error = f"Playbooks could not be read: {exc}"
    journal = ctx.journal
    from runbook.drills.history import interval_days, last_drills, status

    last = last_drills(journal)
    data.drills = {pid: d["ts"] for pid, d in last.items()}
    config_days = getattr(getattr(ctx, "config", None), "drill_days", None)
    for s in data.playbooks:
        days = interval_days(s.level, getattr(s, "drill_every", None), config_days)
        if status(s.drillable, last.get(s.id), days)[1]:
            data.overdue.add(s.id)
    for inc in journal.incidents():
        from runbook.core import incident as S

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
    config = ctx.config
    data.env = str(getattr(config, "default_env", "") or "sandbox")
    declared = getattr(config, "environments", {}).get(data.env)
    if isinstance(declared, dict):
        data.env_description = str(declared.get("description", ""))
        data.production = bool(declared.get("production", data.env in ("prod", "production")))
    else:
        data.production = data.env in ("prod", "production")
    if with_sandbox:
        load_home_status(ctx, data)
    return data


def load_home_status(ctx: Any, data: HomeData) -> HomeData:
    """The environment's description and the sandbox status (blocking; after the lists show)."""
    try:
        env = ctx.config.environment(data.env or None)
        data.env, data.env_description, data.production = env.name, env.description, env.production
    except Exception as exc:  # noqa: BLE001
        data.env_description = str(exc)
    data.sandbox = sandbox_status(ctx)
    return data


def _cell(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        return set_cell_size(text, max(0, width - 1)) + "…" if width > 0 else ""
    return set_cell_size(text, width)


def _short_path(path: Any) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


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
        try:
            data = load_home_data(self.ctx, with_sandbox=False)
        except Exception as exc:  # noqa: BLE001
            data = HomeData(error=f"The journal could not be read: {exc}")
        self.on_home_loaded(HomeLoaded(data))

    def reload(self) -> None:
        """Read the playbooks and incidents again (in a worker)."""
        self._load()

    @work(thread=True, exclusive=True, group="home", exit_on_error=False)
    def _load(self) -> None:
        # The lists first (what the operator came for); the slower status line once they show.
        try:
            data = load_home_data(self.ctx, with_sandbox=False)
        except Exception as exc:  # noqa: BLE001
            data = HomeData(error=f"The journal could not be read: {exc}")
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
        self.data.env, self.data.env_description, self.data.production, self.data.sandbox = s.env, s.env_description, s.production, s.sandbox
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
        options: list[Option] = []
        width = self._row_width()
        self._filled_width = width
        incidents = [i for i in self.data.incidents if not text or text in " ".join(str(v) for v in i.values()).lower()]
        if incidents:
            options.append(Option(Text("Open incidents — Enter to resume", style="bold underline"), disabled=True))
            id_w = max(len(i["id"]) for i in incidents)
            where_w = min(18, max(len(f"{i['mode'].upper()} · {i['env']}") for i in incidents))
            flex = width - (2 + id_w + 2 + 11 + 2 + where_w + 2)
            for i in incidents:
                held = f" · held by {i['held_by']} (read-only)" if i["held_by"] else " · free to resume"
                line = Text.assemble(
                    "  ",
                    (_cell(i["id"], id_w), "bold"),
                    "  ",
                    (_cell(i["status"], 11), "bold magenta" if i["status"] == "interrupted" else "yellow"),
                    "  ",
                    _cell(f"{i['mode'].upper()} · {i['env']}", where_w),
                    "  ",
                )
                rest = Text.assemble(i["playbook"], (held, "dim"))
                rest.truncate(max(flex, 0), overflow="ellipsis")
                line.append_text(rest)
                options.append(Option(line, id=f"inc:{i['id']}"))
        groups: dict[tuple[int, str, int], list[Any]] = {}
        for s in self.data.playbooks:
            hay = f"{s.id} {s.title} {s.tier} level {s.level or ''}".lower()
            if text and text not in hay:
                continue
            groups.setdefault((TIER_ORDER.get(s.tier, 9), s.tier or "invalid", s.level or 0), []).append(s)
        # Fixed columns (id, title, RTO, RPO, last drill), the same widths in every group.
        id_w = min(28, max([len(s.id) for s in self.data.playbooks] or [8]))
        fixed = 2 + id_w + 2 + 2 + 5 + 1 + 5 + 2 + 13
        title_w = min(width - fixed, max([len(s.error or s.title) for s in self.data.playbooks] or [0]))
        if title_w < 8:
            title_w = 0
        for (_, tier, level), items in sorted(groups.items()):
            head = tier + (f" · level {level}" if level else "")
            heading = Text.assemble(
                (_cell(head, 2 + id_w + 2 + title_w), "bold underline"),
                ("  " if title_w else ""),
                (f"{'RTO':<5} {'RPO':<5}  {'last drill':<13}", "dim"),
            )
            options.append(Option(heading, disabled=True))
            for s in sorted(items, key=lambda x: x.id):
                drilled = self.data.drills.get(s.id)
                when = drilled[:10] if drilled else ("never" if s.drillable else "not drillable")
                due = s.id in self.data.overdue
                if due:
                    when += " ⚠"  # overdue: not drilled within its interval, or the last drill failed
                line = Text.assemble("  ", (_cell(s.id, id_w), "bold"), "  ")
                if title_w:
                    line.append(_cell(s.error or s.title, title_w), "red" if s.error else "")
                    line.append("  ")
                line.append(f"{_cell(s.rto or '—', 5)} {_cell(s.rpo or '—', 5)}  ")
                line.append(_cell(when, 13), "yellow" if due else ("dim" if not drilled else "green"))
                options.append(Option(line, id=f"pb:{s.id}"))
        if not options:
            options.append(Option(Text("Nothing matches the filter.", style="dim"), disabled=True))
        ol.add_options(options)
        for idx, opt in enumerate(options):
            if not opt.disabled:
                ol.highlighted = idx
                break
        self._detail()

    def on_resize(self) -> None:
        if self.data is not None and self._row_width() != getattr(self, "_filled_width", None):
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
        ol = self.query_one("#home-list", OptionList)
        opt = ol.highlighted_option
        detail = ""
        if opt is not None and opt.id and self.data is not None:
            kind, key = opt.id.split(":", 1)
            if kind == "pb":
                s = next((p for p in self.data.playbooks if p.id == key), None)
                if s is not None:
                    drilled = self.data.drills.get(s.id)
                    drill = f"last drilled {drilled[:10]}" if drilled else ("never drilled" if s.drillable else "no drill scenario")
                    detail = (
                        f"[b]{escape(s.title or s.id)}[/] — {s.tier}{f' level {s.level}' if s.level else ''}, {s.steps} steps, {drill}"
                        f"\n[dim]{escape(_short_path(s.path))} · Enter: start form[/]"
                    )
            else:
                i = next((x for x in self.data.incidents if x["id"] == key), None)
                if i is not None:
                    held = f"held by {escape(i['held_by'])}: Enter follows it read-only" if i["held_by"] else "Enter resumes it"
                    detail = (
                        f"[b]{escape(i['title'] or i['playbook'])}[/] — {escape(i['mode'].upper())} on {escape(i['env'])}, "
                        f"opened {i['opened'][:19].replace('T', ' ')}Z by {escape(i['operator'])}\n[dim]{held}[/]"
                    )
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
