"""The home screen's rows: open incidents, then playbooks grouped by tier and level, in columns.

Every row is cut or padded to fixed cell widths so the columns line up in any terminal width,
with a heading per group; the detail line describes the highlighted row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.widgets.option_list import Option

from runbook.tui.screens.home_data import HomeData

TIER_ORDER = {"component": 0, "regional": 1, "full-loss": 2, "data-loss": 3, "security": 4, "maintenance": 5}
STATUS_WIDTH = 11  # "interrupted"
WHERE_MAX = 18  # "LIVE · production"
LAST_DRILL_WIDTH = 13  # "not drillable"


def cell(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        return set_cell_size(text, max(0, width - 1)) + "…" if width > 0 else ""
    return set_cell_size(text, width)


def short_path(path: Any) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def matches(text: str, incident: dict[str, Any]) -> bool:
    """Whether the filter ``text`` (lower case) occurs in any of the incident's fields."""
    return not text or text in " ".join(str(v) for v in incident.values()).lower()


def incident_options(incidents: list[dict[str, Any]], width: int) -> list[Option]:
    """A heading and one row per open incident: id, status, mode · env, playbook and who holds it."""
    if not incidents:
        return []
    # Imported here: with no incident open, the home screen paints without it.
    from runbook.core.incident import StepStatus

    options = [Option(Text("Open incidents — Enter to resume", style="bold underline"), disabled=True)]
    id_w = max(len(i["id"]) for i in incidents)
    where_w = min(WHERE_MAX, max(len(f"{i['mode'].upper()} · {i['env']}") for i in incidents))
    flex = width - (2 + id_w + 2 + STATUS_WIDTH + 2 + where_w + 2)
    for i in incidents:
        held = f" · held by {i['held_by']} (read-only)" if i["held_by"] else " · free to resume"
        if i.get("detached"):
            held = f" · detached, {i['detached']}"
        line = Text.assemble(
            "  ",
            (cell(i["id"], id_w), "bold"),
            "  ",
            (cell(i["status"], STATUS_WIDTH), "bold magenta" if i["status"] == StepStatus.INTERRUPTED else "yellow"),
            "  ",
            cell(f"{i['mode'].upper()} · {i['env']}", where_w),
            "  ",
        )
        rest = Text.assemble(i["playbook"], (held, "dim"))
        rest.truncate(max(flex, 0), overflow="ellipsis")
        line.append_text(rest)
        options.append(Option(line, id=f"inc:{i['id']}"))
    return options


def _groups(playbooks: list[Any], text: str) -> dict[tuple[int, str, int], list[Any]]:
    """The playbooks matching ``text``, by (tier order, tier, level)."""
    groups: dict[tuple[int, str, int], list[Any]] = {}
    for s in playbooks:
        hay = f"{s.id} {s.title} {s.tier} level {s.level or ''}".lower()
        if text and text not in hay:
            continue
        groups.setdefault((TIER_ORDER.get(s.tier, 9), s.tier or "invalid", s.level or 0), []).append(s)
    return groups


def _playbook_row(data: HomeData, s: Any, id_w: int, title_w: int) -> Option:
    drilled = data.drills.get(s.id)
    when = drilled[:10] if drilled else ("never" if s.drillable else "not drillable")
    due = s.id in data.overdue
    if due:
        when += " ⚠"  # overdue: not drilled within its interval, or the last drill failed
    line = Text.assemble("  ", (cell(s.id, id_w), "bold"), "  ")
    if title_w:
        line.append(cell(s.error or s.title, title_w), "red" if s.error else "")
        line.append("  ")
    line.append(f"{cell(s.rto or '—', 5)} {cell(s.rpo or '—', 5)}  ")
    line.append(cell(when, LAST_DRILL_WIDTH), "yellow" if due else ("dim" if not drilled else "green"))
    return Option(line, id=f"pb:{s.id}")


def playbook_options(data: HomeData, text: str, width: int) -> list[Option]:
    """Per tier and level, a heading and one row per playbook: id, title, RTO, RPO, last drill.

    The columns have the same widths in every group (from every playbook, not only those shown).
    """
    id_w = min(28, max([len(s.id) for s in data.playbooks] or [8]))
    fixed = 2 + id_w + 2 + 2 + 5 + 1 + 5 + 2 + LAST_DRILL_WIDTH
    title_w = min(width - fixed, max([len(s.error or s.title) for s in data.playbooks] or [0]))
    if title_w < 8:
        title_w = 0
    options: list[Option] = []
    for (_, tier, level), items in sorted(_groups(data.playbooks, text).items()):
        head = tier + (f" · level {level}" if level else "")
        heading = Text.assemble(
            (cell(head, 2 + id_w + 2 + title_w), "bold underline"),
            ("  " if title_w else ""),
            (f"{'RTO':<5} {'RPO':<5}  {'last drill':<13}", "dim"),
        )
        options.append(Option(heading, disabled=True))
        options += [_playbook_row(data, s, id_w, title_w) for s in sorted(items, key=lambda x: x.id)]
    return options


def home_options(data: HomeData, text: str, width: int) -> list[Option]:
    """Every row of the list for the filter ``text`` (lower case) at ``width`` cells."""
    options = incident_options([i for i in data.incidents if matches(text, i)], width)
    options += playbook_options(data, text, width)
    if not options:
        options.append(Option(Text("Nothing matches the filter.", style="dim"), disabled=True))
    return options


def detail_markup(data: HomeData, option_id: str) -> str:
    """Two lines about the highlighted row (``pb:ID`` or ``inc:ID``): what it is, what Enter does."""
    kind, key = option_id.split(":", 1)
    if kind == "pb":
        s = next((p for p in data.playbooks if p.id == key), None)
        if s is None:
            return ""
        drilled = data.drills.get(s.id)
        drill = f"last drilled {drilled[:10]}" if drilled else ("never drilled" if s.drillable else "no drill scenario")
        return (
            f"[b]{escape(s.title or s.id)}[/] — {s.tier}{f' level {s.level}' if s.level else ''}, "
            f"{s.steps} steps, {drill}"
            f"\n[dim]{escape(short_path(s.path))} · Enter: start form[/]"
        )
    i = next((x for x in data.incidents if x["id"] == key), None)
    if i is None:
        return ""
    held = f"held by {escape(i['held_by'])}: Enter follows it read-only" if i["held_by"] else "Enter resumes it"
    if i.get("detached"):
        enter = "Enter follows it read-only" if i["held_by"] else "Enter attaches to it"
        held = f"running detached, {escape(i['detached'])}: {enter}"
    return (
        f"[b]{escape(i['title'] or i['playbook'])}[/] — {escape(i['mode'].upper())} on {escape(i['env'])}, "
        f"opened {i['opened'][:19].replace('T', ' ')}Z by {escape(i['operator'])}\n[dim]{held}[/]"
    )
