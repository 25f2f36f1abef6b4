"""What the run screen says: the current step, the prompt for each question, the end of the incident.

Plain functions from what is known to Rich markup (every value escaped), so the words can be read
(and tested) apart from the widgets that show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape

from runbook.core.effect import Effect
from runbook.core.incident import IncidentStatus
from runbook.engine.frontend import Ask, Request
from runbook.tui.screens.run_engine import ERROR, PAUSED

# Prompt levels (see Prompt.say): how much the line stands out.
CALM, ATTENTION, DANGER = "", "attention", "danger"

READ_ONLY_PROMPT = "Read-only: another operator drives this incident. o take over · l timeline · q leave."
RUNNING_PROMPT = "Running… [b]x[/] stops the step · [b]n[/] adds a note"


@dataclass
class StepView:
    """The current step as the right-hand pane shows it."""

    title: str  # markup: phase › title (id)
    description: str  # Markdown
    action: str  # markup: two lines, the action and its effect (and target)
    destructive: bool
    output_title: str  # markup


def _effect_markup(effect: str) -> str:
    colour = "bold red" if effect == Effect.DESTRUCTIVE else "bold yellow" if effect == Effect.MUTATING else "green"
    return f"[{colour}]{escape(str(effect))}[/]"


def step_view(step_id: str, meta: Any, info: dict[str, Any], request: Request | None = None) -> StepView:
    """The step ``step_id``: the playbook's ``meta``, what the journal said (``info``), the question."""
    manual = meta is not None and meta.kind == "manual"
    title = (request.title if request is not None else None) or (meta.label if meta is not None else step_id)
    phase = f"[dim]{escape(meta.phase)} ›[/] " if meta is not None and meta.phase else ""
    desc = (
        (request.description if request is not None else None) or (meta.description if meta is not None else "") or ""
    )
    action = info.get("action") or ("manual task" if manual else "")
    effect = "manual" if manual else info.get("effect", "")
    target = info.get("target") or ""
    blast = f"[b]Effect:[/] {_effect_markup(effect)}"
    if target:
        blast += f"  [b]Target:[/] {escape(str(target))}"
    return StepView(
        title=f"{phase}[b]{escape(title)}[/] [dim]({escape(step_id)})[/]",
        description=desc,
        action=f"[b]Action:[/] {escape(str(action))}\n{blast}",
        destructive=effect == Effect.DESTRUCTIVE,
        output_title=f"Output — {escape(step_id)} [dim](last lines; all in the step log)[/]",
    )


def request_info(request: Request) -> dict[str, Any]:
    """What a question says of its step's call (only what it knows)."""
    fresh = {"action": request.action, "effect": request.effect, "target": request.target, "confirm": request.confirm}
    return {k: v for k, v in fresh.items() if v}


def question_prompt(request: Request, mode: str) -> tuple[str, str] | None:
    """The prompt line for the engine's question, and its level; None for a question the TUI cannot ask."""
    title = escape(request.title)
    destructive = DANGER if request.effect == Effect.DESTRUCTIVE and mode != "dry-run" else ATTENTION
    prompts = {
        Ask.BEFORE_STEP: (
            f"Next: [b]{title}[/] — [b]r[/] run it · [b]s[/] skip (reason) · [b]q[/] pause and quit",
            destructive,
        ),
        Ask.CONFIRM: (f"[b]{title}[/] needs confirmation — [b]y[/] to confirm it", destructive),
        Ask.MANUAL: (f"Manual task: do [b]{title}[/] by hand, then [b]d[/] mark done · [b]s[/] skip", ATTENTION),
        Ask.FAILURE: (
            f"[b]✗ {title} failed:[/] {escape(request.error or '')} — "
            "[b]t[/] retry · [b]s[/] skip · [b]k[/] end as failed · [b]q[/] pause",
            DANGER,
        ),
        Ask.INTERRUPTED: (
            f"[b]{title}[/] was interrupted — [b]t[/] retry · [b]d[/] mark done · [b]s[/] skip · [b]i[/] details",
            DANGER,
        ),
        Ask.SECRET: ("A secret parameter is needed to go on.", ATTENTION),
    }
    return prompts.get(request.ask)


@dataclass
class Ending:
    """How the screen says the incident ended (or could not start)."""

    message: str  # printed when the app exits
    prompt: str
    level: str
    notify: bool = False  # also as an error notification


def ending(status: str, message: str, incident: str) -> Ending:
    """The words for the engine's end ``status`` (completed, failed, paused, needs-human, error)."""
    if status == IncidentStatus.COMPLETED:
        return Ending(f"Incident {incident} completed.", "[b]✓ Incident completed.[/] l timeline · q leave", CALM)
    if status == PAUSED:
        said = message or f"Incident {incident} paused; resume it with `runbook resume {incident}`."
        return Ending(said, f"[b]Paused.[/] {escape(said)} q leave", ATTENTION)
    if status == ERROR and not incident:
        return Ending(message, f"[b]Not started:[/] {escape(message)} q back", DANGER, notify=True)
    said = message or f"Incident {incident} {status}."
    return Ending(said, f"[b]{escape(status)}:[/] {escape(said)} l timeline · q leave", DANGER)


def holder_prompt(holder: str | None) -> str:
    """The read-only prompt once it is known who drives the incident (None: nobody alive)."""
    if holder:
        return f"Read-only: [b]{escape(holder)}[/] drives this incident. o take over · l timeline · q leave"
    return "Read-only: nobody drives this incident now. o take it over (resume) · q leave"
