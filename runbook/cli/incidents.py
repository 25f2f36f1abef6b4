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


def run_attached(obj: CliContext, incident: str, answers: Any, *, role: str = "drive", take_over: bool = False,
                 send_answers: bool = False, since_n: int | None = None) -> None:
    """Attach a headless client to the incident's supervisor and print until the run ends.

    Exit code = outcome (0/1/2/3). Ctrl-C detaches this client only: the incident goes on.
    """
    from dataclasses import asdict

    from runbook.core.paths import home
    from runbook.engine.outcome import RunStatus
    from runbook.headless import HeadlessFrontend
    from runbook.supervisor.client import SupervisedEngine

    engine = SupervisedEngine(HeadlessFrontend(answers), obj.journal, home())
    try:
        engine.attach(incident, role=role, take_over=take_over, answers=asdict(answers) if send_answers else None,
                      since_n=since_n)
        outcome = engine.run()
    except KeyboardInterrupt:
        engine.detach()
        fail(f"Detached from incident {incident}; it goes on without this terminal: attach again with "
             f"`runbook attach {incident}`.", 130)
        return
    for notice in engine.notices:
        click.echo(notice, err=True)
    if outcome.status in (RunStatus.PAUSED, RunStatus.INTERRUPTED):
        click.echo(outcome.message, err=True)
    elif outcome.status == RunStatus.NEEDS_HUMAN:
        fail(outcome.message, 3)
    elif outcome.status in (RunStatus.FAILED, RunStatus.TAKEN_OVER):
        fail(outcome.message or f"Incident {outcome.incident} failed.", 1)
    sys.exit(outcome.exit_code)


def start_headless(obj: CliContext, spec: dict[str, Any]) -> str:
    """Start the incident's supervisor for ``spec`` and print ``incident: ID`` (a script reads it)."""
    from runbook.core.paths import home
    from runbook.journal.store import default_actor
    from runbook.supervisor.client import start_supervisor

    spec.setdefault("driver", f"{default_actor()} (pid {os.getpid()})")
    reply = start_supervisor(spec, home(), obj.config_path)
    incident = str(reply["incident"])
    click.echo(f"incident: {incident}")
    sys.stdout.flush()
    return incident


@cli.command()
@click.argument("playbook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter value.")
@click.option("--env", "env_name", metavar="ENV", help="Environment.")
@click.option("--mode", type=click.Choice(["live", "dry-run", "drill"]), default="live", show_default=True)
@click.option("--headless", is_flag=True, help="No TUI: print the run and answer from flags.")
@click.option("--detach", is_flag=True, help="Start it detached: print its id and return at once.")
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
    detach: bool,
    yes: bool,
    confirms: tuple[str, ...],
) -> None:
    """Start an incident (TUI unless --headless or --detach)."""

    loaded = load_playbook(obj, playbook)
    given = params_from_env(loaded, parse_kv(params, "Parameter"))
    env = _environment_for(obj, env_name, loaded.playbook)
    if not headless and not detach and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import run_incident_app
        except ImportError:
            pass
        else:
            run_incident_app(obj, loaded, given, env, mode)
            return
    from dataclasses import asdict

    answers = _answers(yes, confirms)
    spec = {"action": "open", "playbook": str(loaded.path.resolve()), "params": given, "env": env.name,
            "mode": mode, "answers": asdict(answers), "detached": detach}
    incident = start_headless(obj, spec)
    if detach:
        click.echo(f"It runs detached: follow it with `runbook attach {incident}`.", err=True)
        return
    run_attached(obj, incident, answers, since_n=-1)  # all of it, even if it started before the attach


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
    """Continue an incident after a crash, disconnect or quit (attaches when its supervisor is alive)."""
    from dataclasses import asdict

    from runbook.core import incident as S
    from runbook.core.paths import home
    from runbook.supervisor.client import supervisor_alive

    if choice in ("done", "skip") and not (reason or "").strip():
        raise UsageError(f"--{'mark-done' if choice == 'done' else 'skip'} needs --reason TEXT.")
    journal = obj.journal
    incident = journal.find_incident(incident)
    st = S.fold(incident, journal.events(incident))
    if st.env == "sandbox" and st.env_location and not os.environ.get("RUNBOOK_SANDBOX_DIR"):
        # A drill ran in a throwaway sandbox of its own: resume against that one.
        os.environ["RUNBOOK_SANDBOX_DIR"] = st.env_location
    if not headless and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import resume_incident_app
        except ImportError:
            pass
        else:
            env = _environment_for(obj, st.env or None, _journaled_playbook(st))
            resume_incident_app(obj, incident, env, take_over)
            return
    answers = _answers(yes, confirms, interrupted=choice, reason=reason, failed="retry" if retry_failed else None)
    failed_now = [sid for sid, ss in st.steps.items() if ss.status == S.StepStatus.FAILED and not ss.continued]
    answers.failed_step = failed_now[0] if failed_now else None
    answers.stop_interrupted = stop_interrupted
    if supervisor_alive(home(), incident):
        click.echo(f"incident: {incident}")
        run_attached(obj, incident, answers, take_over=take_over, send_answers=True)
        return
    secrets = parse_kv(params, "Parameter")
    for name in st.secret_params:
        value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
        if name not in secrets and value:
            secrets[name] = value
    last_n = st.last_event.n if st.last_event is not None else -1
    spec = {"action": "resume", "incident": incident, "takeover": take_over, "secrets": secrets,
            "answers": asdict(answers)}
    start_headless(obj, spec)
    run_attached(obj, incident, answers, since_n=last_n)


@cli.command()
@click.argument("incident")
@click.option("--watch", is_flag=True, help="Watch only: never decide anything.")
@click.option("--take-over", is_flag=True, help="Drive it, taking over from whoever drives it now (journaled).")
@click.option("--headless", is_flag=True, help="No TUI: print what happened and stream to the end.")
@click.option("--cancel", "cancel", metavar="STEP", help="Stop the running step STEP (type its id to confirm).")
@pass_ctx
def attach(obj: CliContext, incident: str, watch: bool, take_over: bool, headless: bool, cancel: str | None) -> None:
    """Attach to a running incident: its history, its live output, then its end (exit code = outcome)."""
    from runbook.core.paths import home
    from runbook.headless import HeadlessAnswers
    from runbook.supervisor.client import supervisor_alive

    incident = obj.journal.find_incident(incident)
    if not supervisor_alive(home(), incident):
        _ended(obj, incident, cancel)
        return
    if cancel is not None:
        _cancel(obj, incident, cancel, take_over)
        return
    if not headless and not watch and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import resume_incident_app
        except ImportError:
            pass
        else:
            from runbook.core import incident as S

            st = S.fold(incident, obj.journal.events(incident))
            resume_incident_app(obj, incident, obj.config.environment(st.env or None), take_over)
            return
    run_attached(obj, incident, HeadlessAnswers(), role="watch" if watch else "drive", take_over=take_over,
                 since_n=-1)


def _ended(obj: CliContext, incident: str, cancel: str | None) -> None:
    """Attach to an incident nobody runs: what happened, then how it stands (exit code = outcome)."""
    from runbook.core import incident as S
    from runbook.engine.frontend import Journaled
    from runbook.headless import HeadlessAnswers, HeadlessFrontend

    if cancel is not None:
        raise UsageError(f"Nothing was stopped: incident {incident} is not running.")
    printer = HeadlessFrontend(HeadlessAnswers())
    events = obj.journal.events(incident)
    for ev in events:
        printer.emit(Journaled(incident, ev))
    st = S.fold(incident, events)
    if st.status == S.IncidentStatus.COMPLETED:
        return
    if st.status == S.IncidentStatus.FAILED:
        fail(f"Incident {incident} failed; see `runbook timeline {incident}`.", 1)
    fail(f"Incident {incident} is not running ({st.status.value}): resume it with `runbook resume {incident}`.", 3)


def _cancel(obj: CliContext, incident: str, step: str, take_over: bool) -> None:
    """Stop the running step: only when STEP names the step running now, and only as its driver."""
    from runbook.core.paths import home
    from runbook.headless import HeadlessFrontend
    from runbook.supervisor.client import SupervisedEngine

    engine = SupervisedEngine(HeadlessFrontend(_answers(False, ())), obj.journal, home())
    engine.attach(incident, role="drive", take_over=take_over)
    try:
        if engine.running != step:
            now = f"step {engine.running!r} is running" if engine.running else "no step is running"
            raise UsageError(f"Nothing was stopped: {now}, and --cancel must name it exactly.")
        engine.cancel_current(step)
        click.echo(f"Asked incident {incident} to stop step {step!r}; it is journaled as failed by the operator.")
    finally:
        engine.detach()


def _journaled_playbook(st: Any) -> Any:
    from runbook.playbook import yamlload
    from runbook.playbook.validate import validate_raw

    try:
        loaded = validate_raw(yamlload.loads(st.playbook_text), Path(st.playbook_path or f"{st.playbook_id}.yaml"))
    except yamlload.YamlError:
        return None
    return loaded.playbook
