"""``run`` and ``resume``: drive an incident in the TUI or headless."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from runbook.cli.context import CliContext, fail, load_playbook, params_from_env, parse_kv, pass_ctx
from runbook.cli.root import cli
from runbook.core.errors import UsageError


def _environment_for(obj: CliContext, env_name: str | None, playbook: Any) -> Any:
    """The incident's environment; for the sandbox, the stores the playbook needs are started first."""
    env = obj.config.environment(env_name)
    local = obj.config.local.get(env.name)
    if local is not None:
        local.ensure(playbook)
        env = obj.config.environment(env_name)  # ports are known once the stores run
    return env


def _attach_notifications(obj: CliContext, env: Any, engine: Any) -> None:
    from runbook.notify import cli_hook

    cli_hook(obj, env, engine)


def _answers(
    yes: bool,
    confirms: tuple[str, ...],
    auto: bool = False,
    interrupted: str | None = None,
    reason: str | None = None,
    failed: str | None = None,
) -> Any:
    from runbook.headless import HeadlessAnswers

    return HeadlessAnswers(
        yes=yes,
        confirms=parse_kv(confirms, "--confirm"),
        auto=auto,
        interrupted=interrupted,
        reason=reason,
        failed=failed,
    )


def _run_headless(obj: CliContext, engine: Any) -> None:
    from runbook.engine.outcome import RunStatus

    outcome = engine.run()
    if outcome.status in (RunStatus.PAUSED, RunStatus.INTERRUPTED):
        click.echo(outcome.message, err=True)
    elif outcome.status == RunStatus.NEEDS_HUMAN:
        fail(outcome.message, 3)
    elif outcome.status in (RunStatus.FAILED, RunStatus.TAKEN_OVER):
        fail(outcome.message or f"Incident {outcome.incident} failed.", 1)
    sys.exit(outcome.exit_code)


@cli.command()
@click.argument("playbook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter value.")
@click.option("--env", "env_name", metavar="ENV", help="Environment.")
@click.option("--mode", type=click.Choice(["live", "dry-run", "drill"]), default="live", show_default=True)
@click.option("--headless", is_flag=True, help="No TUI: print the run and answer from flags.")
@click.option("--yes", is_flag=True, help="Answer yes to `yes` confirmations.")
@click.option(
    "--confirm",
    "confirms",
    multiple=True,
    metavar="STEP=VALUE",
    help="Typed confirmation (or STEP=done for a manual step).",
)
@pass_ctx
def run(
    obj: CliContext,
    playbook: str,
    params: tuple[str, ...],
    env_name: str | None,
    mode: str,
    headless: bool,
    yes: bool,
    confirms: tuple[str, ...],
) -> None:
    """Start an incident (TUI unless --headless)."""
    from runbook.core.paths import home
    from runbook.engine.runner import Engine
    from runbook.headless import HeadlessFrontend

    loaded = load_playbook(obj, playbook)
    given = params_from_env(loaded, parse_kv(params, "Parameter"))
    env = _environment_for(obj, env_name, loaded.playbook)
    if not headless and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import run_incident_app
        except ImportError:
            pass
        else:
            run_incident_app(obj, loaded, given, env, mode)
            return
    answers = _answers(yes, confirms)
    frontend = HeadlessFrontend(answers)
    engine = Engine(obj.journal, frontend, home=home(), environment=env)
    _attach_notifications(obj, env, engine)
    st = engine.open(loaded, given, mode=mode)
    click.echo(f"incident: {st.id}")
    sys.stdout.flush()
    _run_headless(obj, engine)


@cli.command()
@click.argument("incident")
@click.option("--take-over", is_flag=True, help="Take the incident over from another live operator (journaled).")
@click.option("--headless", is_flag=True, help="No TUI.")
@click.option("--yes", is_flag=True)
@click.option("--confirm", "confirms", multiple=True, metavar="STEP=VALUE")
@click.option("--retry-interrupted", "choice", flag_value="retry", help="Re-run the interrupted step.")
@click.option("--mark-done", "choice", flag_value="done", help="Mark the interrupted step done (needs --reason).")
@click.option("--skip", "choice", flag_value="skip", help="Skip the interrupted step (needs --reason).")
@click.option("--stop-interrupted", is_flag=True,
              help="Stop what the interrupted step left running (it is never run twice beside it).")
@click.option("--retry-failed", is_flag=True, help="Retry the step that failed and stopped the incident.")
@click.option("--reason", metavar="TEXT", help="Why (journaled).")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Secret parameter values.")
@pass_ctx
def resume(
    obj: CliContext,
    incident: str,
    take_over: bool,
    headless: bool,
    yes: bool,
    confirms: tuple[str, ...],
    choice: str | None,
    stop_interrupted: bool,
    retry_failed: bool,
    reason: str | None,
    params: tuple[str, ...],
) -> None:
    """Continue an incident after a crash, disconnect or quit."""
    from runbook.core import incident as S
    from runbook.core.paths import home
    from runbook.engine.runner import Engine
    from runbook.headless import HeadlessFrontend

    if choice in ("done", "skip") and not (reason or "").strip():
        raise UsageError(f"--{'mark-done' if choice == 'done' else 'skip'} needs --reason TEXT.")
    journal = obj.journal
    incident = journal.find_incident(incident)
    st = S.fold(incident, journal.events(incident))
    if st.env == "sandbox" and st.env_location and not os.environ.get("RUNBOOK_SANDBOX_DIR"):
        # A drill ran in a throwaway sandbox of its own: resume against that one.
        os.environ["RUNBOOK_SANDBOX_DIR"] = st.env_location
    env = _environment_for(obj, st.env or None, _journaled_playbook(st))
    if not headless and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import resume_incident_app
        except ImportError:
            pass
        else:
            resume_incident_app(obj, incident, env, take_over)
            return
    answers = _answers(yes, confirms, interrupted=choice, reason=reason, failed="retry" if retry_failed else None)
    failed_now = [sid for sid, ss in st.steps.items() if ss.status == S.StepStatus.FAILED and not ss.continued]
    answers.failed_step = failed_now[0] if failed_now else None
    answers.stop_interrupted = stop_interrupted
    engine = Engine(journal, HeadlessFrontend(answers), home=home(), environment=env)
    _attach_notifications(obj, env, engine)
    secrets = parse_kv(params, "Parameter")
    for name in st.secret_params:
        value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
        if name not in secrets and value:
            secrets[name] = value
    engine.resume(incident, take_over=take_over, secrets=secrets)
    click.echo(f"incident: {incident}")
    sys.stdout.flush()
    _run_headless(obj, engine)


def _journaled_playbook(st: Any) -> Any:
    from runbook.playbook import yamlload
    from runbook.playbook.validate import validate_raw

    try:
        loaded = validate_raw(yamlload.loads(st.playbook_text), Path(st.playbook_path or f"{st.playbook_id}.yaml"))
    except yamlload.YamlError:
        return None
    return loaded.playbook
