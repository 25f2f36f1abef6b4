"""The ``runbook`` command line. Headless commands print with Rich; ``runbook`` alone opens the TUI.

Every error a user can cause is one sentence on stderr with the exit code from PRODUCT.md
(1 failure, 2 usage, 3 needs a human); ``--debug`` shows the traceback of unexpected errors.
Imports are lazy so ``runbook list`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from runbook.core.errors import RunbookError, UsageError

_DEBUG = False


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


def _fail(message: str, code: int) -> None:
    err = _console(stderr=True)
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(message)}")
    sys.exit(code)


def _parse_kv(items: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {item!r} must be written KEY=VALUE.")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise UsageError(f"{what} {item!r} has an empty name.")
        out[k] = v
    return out


class _Ctx:
    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._config: Any = None
        self._journal: Any = None

    @property
    def config(self) -> Any:
        if self._config is None:
            from runbook.sandbox.environment import with_sandbox
            from runbook.stores.config import load_config

            self._config = load_config(self.config_path, local=with_sandbox())
        return self._config

    @property
    def journal(self) -> Any:
        if self._journal is None:
            from runbook.journal.store import open_journal

            self._journal = open_journal()
        return self._journal

    def playbook_dirs(self) -> list[Path]:
        from runbook.playbook.catalog import playbook_dirs

        return playbook_dirs(self.config.playbook_dirs)


pass_ctx = click.make_pass_decorator(_Ctx)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", help="runbook.toml to use.")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.version_option(package_name="runbook")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """Incident-response runbooks, run for real, with a durable timeline."""
    global _DEBUG
    _DEBUG = debug
    ctx.obj = _Ctx(config)
    if ctx.invoked_subcommand is None:
        try:
            from runbook.tui.app import run_app  # type: ignore[import-not-found]
        except ImportError:
            ctx.invoke(list_cmd)
            return
        run_app(ctx.obj)


# --- list / validate / plan ------------------------------------------------------------------


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(obj: _Ctx, as_json: bool) -> None:
    """Playbooks as a table: id, tier, level, RTO/RPO, steps, last drilled."""
    from runbook.drills.history import interval_days, last_drills, status
    from runbook.playbook.catalog import playbook_files, summarize

    summaries = [summarize(p) for p in playbook_files(obj.playbook_dirs())]
    drills = last_drills(obj.journal)
    due = {}
    for s in summaries:
        days = interval_days(s.level, s.drill_every, obj.config.drill_days)
        due[s.id] = (days, *status(s.drillable, drills.get(s.id), days))
    if as_json:
        rows = [
            {
                "id": s.id,
                "title": s.title,
                "tier": s.tier,
                "level": s.level,
                "rto": s.rto,
                "rpo": s.rpo,
                "steps": s.steps,
                "drillable": s.drillable,
                "last_drilled": drills.get(s.id, {}).get("ts"),
                "last_drill_passed": drills.get(s.id, {}).get("passed"),
                "drill_every_days": due[s.id][0],
                "drill_overdue": due[s.id][2],
                "path": str(s.path),
                "error": s.error,
            }
            for s in summaries
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    from rich import box
    from rich.table import Table

    order = {"component": 0, "regional": 1, "full-loss": 2, "data-loss": 3, "security": 4, "maintenance": 5}
    summaries.sort(key=lambda s: (order.get(s.tier, 9), s.level or 0, s.id))
    console = _console()
    wide = console.width >= 110  # at 80 columns the title would squeeze everything else
    table = Table(title="Playbooks", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("id", "tier", "lvl", "RTO", "RPO", "steps", "last drilled"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    if wide:
        table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=60)
    for s in summaries:
        _days, text, overdue = due[s.id]
        drilled = f"[yellow]{text} ⚠ due[/]" if overdue else text
        row = [s.id, s.tier, str(s.level or ""), s.rto or "", s.rpo or "", str(s.steps), drilled]
        if wide:
            row.append(s.error or s.title)
        elif s.error:
            row[-1] = f"[red]invalid[/] {drilled}"
        table.add_row(*row)
    console.print(table)



@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@pass_ctx
def validate(obj: _Ctx, paths: tuple[str, ...]) -> None:
    """Check playbooks; print file:line: message per error and exit 1 if any."""
    from runbook.playbook.catalog import playbook_files
    from runbook.playbook.validate import load

    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(x for x in path.iterdir() if x.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    if not paths:
        files = playbook_files(obj.playbook_dirs())
    bad = 0
    for f in files:
        loaded = load(f)
        for d in loaded.diagnostics:
            click.echo(str(d))
        if loaded.diagnostics:
            bad += 1
    if bad:
        click.echo(f"{bad} of {len(files)} playbook(s) have errors.", err=True)
        sys.exit(1)
    click.echo(f"{len(files)} playbook(s) valid.")


def _load_playbook(obj: _Ctx, ref: str) -> Any:
    from runbook.playbook.catalog import resolve
    from runbook.playbook.validate import load

    path = resolve(ref, obj.playbook_dirs())
    loaded = load(path)
    if loaded.errors:
        raise RunbookError(f"The playbook is not valid: {loaded.errors[0]}", exit_code=1)
    return loaded


def _params_from_env(loaded: Any, given: dict[str, str]) -> dict[str, str]:
    # Secret params may come from RUNBOOK_PARAM_<NAME> so they are not visible in `ps`.
    for name, spec in loaded.playbook.params.items():
        if name not in given:
            value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
            if value is not None and spec.secret:
                given[name] = value
    return given


@cli.command()
@click.argument("playbook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter value.")
@click.option("--env", "env_name", metavar="ENV", help="Environment (default: sandbox or config's default_env).")
@pass_ctx
def plan(obj: _Ctx, playbook: str, params: tuple[str, ...], env_name: str | None) -> None:
    """Print the resolved steps: what each would run, its effect, the confirmation needed."""
    from rich.markup import escape
    from rich.table import Table

    from runbook.core.redact import Redactor
    from runbook.engine.calls import resolve_call
    from runbook.playbook import params as P
    from runbook.playbook.refs import RefError, make_lookup

    loaded = _load_playbook(obj, playbook)
    pb = loaded.playbook
    given = _params_from_env(loaded, _parse_kv(params, "Parameter"))
    env = obj.config.environment(env_name)
    try:
        bound = P.bind(pb.params, given, env.lookup)
    except P.ParamError as exc:
        raise UsageError(str(exc)[0].upper() + str(exc)[1:] + ".") from None
    red = Redactor([v for n, v in bound.items() if pb.params[n].secret and v])
    lookup = make_lookup(
        params=bound,
        outputs={},
        incident={"id": "<incident>", "started": "<started>", "workdir": "<workdir>", "operator": "<operator>"},
        env=env.lookup,
        mode="live",
        unknown_outputs=True,
    )
    table = Table(title=f"{pb.id}: {pb.title} — env {env.name}", title_justify="left")
    for col in ("#", "step", "effect", "confirm", "runs"):
        table.add_column(col, overflow="fold")
    from runbook.playbook.refs import Unknown, evaluate_condition, parse_condition

    for i, step in enumerate(pb.steps, 1):
        if step.when:
            try:
                verdict = evaluate_condition(parse_condition(step.when), lookup)
            except (RefError, RunbookError):
                verdict = None
            if verdict is not None and not isinstance(verdict, Unknown) and not verdict:
                phase = f"[dim]{escape(step.phase)}[/]\n" if step.phase else ""
                table.add_row(str(i), f"{phase}{escape(step.id)}", "—", "—", escape(f"skipped: condition is false ({step.when})"))
                continue
        try:
            call = resolve_call(step, lookup, red)
            runs = call.describe
            if step.when:
                runs = f"[when {step.when}] {runs}"
            confirm = call.confirm + (f" ({call.expected})" if call.expected else "")
            effect = call.effect if step.kind != "manual" else "manual"
        except (RefError, RunbookError) as exc:
            runs, confirm, effect = f"cannot resolve: {exc}", "?", "?"
        phase = f"[dim]{escape(step.phase)}[/]\n" if step.phase else ""
        table.add_row(str(i), f"{phase}{escape(step.id)}", effect, confirm, escape(red.text(str(runs))))
    _console().print(table)


# --- run / resume ------------------------------------------------------------------------------


def _environment_for(obj: _Ctx, env_name: str | None, playbook: Any) -> Any:
    """The incident's environment; for the sandbox, the stores the playbook needs are started first."""
    env = obj.config.environment(env_name)
    local = obj.config.local.get(env.name)
    if local is not None:
        local.ensure(playbook)
        env = obj.config.environment(env_name)  # ports are known once the stores run
    return env


def _attach_notifications(obj: _Ctx, env: Any, engine: Any) -> None:
    from runbook.notify import cli_hook

    cli_hook(obj, env, engine)


def _answers(yes: bool, confirms: tuple[str, ...], auto: bool = False, interrupted: str | None = None, reason: str | None = None, failed: str | None = None) -> Any:
    from runbook.headless import HeadlessAnswers

    return HeadlessAnswers(yes=yes, confirms=_parse_kv(confirms, "--confirm"), auto=auto, interrupted=interrupted, reason=reason, failed=failed)


def _run_headless(obj: _Ctx, engine: Any) -> None:
    from runbook.engine.runner import RunStatus

    outcome = engine.run()
    if outcome.status == RunStatus.PAUSED:
        click.echo(outcome.message, err=True)
    elif outcome.status == RunStatus.NEEDS_HUMAN:
        _fail(outcome.message, 3)
    elif outcome.status in (RunStatus.FAILED, RunStatus.TAKEN_OVER):
        _fail(outcome.message or f"Incident {outcome.incident} failed.", 1)
    sys.exit(outcome.exit_code)


@cli.command()
@click.argument("playbook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter value.")
@click.option("--env", "env_name", metavar="ENV", help="Environment.")
@click.option("--mode", type=click.Choice(["live", "dry-run", "drill"]), default="live", show_default=True)
@click.option("--headless", is_flag=True, help="No TUI: print the run and answer from flags.")
@click.option("--yes", is_flag=True, help="Answer yes to `yes` confirmations.")
@click.option("--confirm", "confirms", multiple=True, metavar="STEP=VALUE", help="Typed confirmation (or STEP=done for a manual step).")
@pass_ctx
def run(obj: _Ctx, playbook: str, params: tuple[str, ...], env_name: str | None, mode: str, headless: bool, yes: bool, confirms: tuple[str, ...]) -> None:
    """Start an incident (TUI unless --headless)."""
    from runbook.core.paths import home
    from runbook.engine.runner import Engine
    from runbook.headless import HeadlessFrontend

    loaded = _load_playbook(obj, playbook)
    given = _params_from_env(loaded, _parse_kv(params, "Parameter"))
    env = _environment_for(obj, env_name, loaded.playbook)
    if not headless and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            from runbook.tui.app import run_incident_app  # type: ignore[import-not-found]
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
@click.option("--retry-failed", is_flag=True, help="Retry the step that failed and stopped the incident.")
@click.option("--reason", metavar="TEXT", help="Why (journaled).")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Secret parameter values.")
@pass_ctx
def resume(obj: _Ctx, incident: str, take_over: bool, headless: bool, yes: bool, confirms: tuple[str, ...], choice: str | None, retry_failed: bool, reason: str | None, params: tuple[str, ...]) -> None:
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
            from runbook.tui.app import resume_incident_app  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            resume_incident_app(obj, incident, env, take_over)
            return
    answers = _answers(yes, confirms, interrupted=choice, reason=reason, failed="retry" if retry_failed else None)
    failed_now = [sid for sid, ss in st.steps.items() if ss.status == S.StepStatus.FAILED and not ss.continued]
    answers.failed_step = failed_now[0] if failed_now else None
    engine = Engine(journal, HeadlessFrontend(answers), home=home(), environment=env)
    _attach_notifications(obj, env, engine)
    secrets = _parse_kv(params, "Parameter")
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


# --- incidents / timeline / verify / export ---------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def incidents(obj: _Ctx, as_json: bool) -> None:
    """Incidents with status, playbook, env, mode, operator, elapsed vs RTO."""
    from runbook.core import incident as S
    from runbook.core.durations import format_duration

    journal = obj.journal
    rows = []
    for inc in journal.incidents():
        st = S.fold(inc, journal.events(inc))
        lock = journal.lock_info(inc)
        status = st.status
        if status in ("open",) and (lock is None or not lock.alive()):
            status = "interrupted" if st.interrupted() else "open"
        rows.append(
            {
                "id": inc,
                "status": status,
                "playbook": st.playbook_id,
                "env": st.env,
                "mode": st.mode,
                "operator": st.operator,
                "opened": st.opened,
                "elapsed": round(st.elapsed, 1),
                "rto": st.rto,
                "held_by": lock.holder if lock and lock.alive() else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="Incidents", title_justify="left")
    for col in ("id", "status", "playbook", "env", "mode", "operator", "elapsed / RTO"):
        table.add_column(col, overflow="fold")
    for r in rows:
        rto = f" / {format_duration(r['rto'])}" if r["rto"] else ""
        table.add_row(r["id"], r["status"], r["playbook"], r["env"], r["mode"], r["operator"], format_duration(r["elapsed"]) + rto)
    _console().print(table)


@cli.command()
@click.argument("incident")
@pass_ctx
def timeline(obj: _Ctx, incident: str) -> None:
    """The incident's timeline in the terminal (UTC and local time)."""
    from rich.markup import escape
    from rich.table import Table

    from runbook.reports.timeline import describe_event, local_time

    journal = obj.journal
    incident = journal.find_incident(incident)
    table = Table(title=f"Timeline of {incident}", title_justify="left")
    for col in ("UTC", "local", "actor", "step", "event"):
        table.add_column(col, overflow="fold")
    for ev in journal.iter_events(incident):
        table.add_row(ev.ts[11:19], local_time(ev.ts), ev.actor, ev.step or "", escape(describe_event(ev)))
    _console().print(table)


@cli.command()
@click.argument("incident")
@pass_ctx
def verify(obj: _Ctx, incident: str) -> None:
    """Check the incident's hash chain; exit 1 naming the first bad event."""
    journal = obj.journal
    incident = journal.find_incident(incident)
    count, bad, reason = journal.verify(incident)
    if bad is not None:
        _fail(f"Journal of {incident} is NOT intact: event {bad.n} ({bad.type}, {bad.ts}) is bad: {reason}.", 1)
    click.echo(f"Journal of {incident} is intact: {count} events, hash chain verified.")


@cli.command()
@click.argument("incident")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html"]), default="json", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@pass_ctx
def export(obj: _Ctx, incident: str, fmt: str, output: str | None) -> None:
    """Post-incident timeline export."""
    from runbook.reports.exports import export_incident

    journal = obj.journal
    incident = journal.find_incident(incident)
    text = export_incident(journal, incident, fmt)
    if output:
        path = Path(output)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"Wrote {fmt} export of {incident} to {path}.", err=True)
    else:
        sys.stdout.write(text)


@cli.command()
@click.argument("playbook")
@click.option("--keep", is_flag=True, help="Leave the drill's sandbox running afterwards (to inspect it).")
@click.option("--show-output", is_flag=True, help="Print the steps' output.")
@pass_ctx
def drill(obj: _Ctx, playbook: str, keep: bool, show_output: bool) -> None:
    """Recovery drill on a throwaway sandbox: break it as the scenario says, recover, verify, measure."""
    from rich.table import Table

    from runbook.core.durations import format_duration
    from runbook.core.paths import home
    from runbook.drills.drill import run_drill

    loaded = _load_playbook(obj, playbook)
    report = run_drill(obj.journal, loaded, home=home(), keep=keep, quiet=not show_output, echo=lambda m: click.echo(m, err=True))
    click.echo(f"incident: {report.incident}")
    table = Table(title=f"Drill of {report.playbook}", title_justify="left")
    for col in ("step", "result", "time"):
        table.add_column(col, no_wrap=True)
    for sid, status, dur in report.steps:
        table.add_row(sid, status, format_duration(dur) if dur is not None else "")
    con = _console()
    con.print(table)
    rto = format_duration(report.rto_achieved)
    if report.rto_allowed is not None:
        rto += f" vs RTO {format_duration(report.rto_target or 0)} (sandbox allowance {format_duration(report.rto_allowed)})"
    con.print(f"RTO achieved: {rto}")
    if report.rpo_achieved is not None:
        target = f" vs RPO {format_duration(report.rpo_target)}" if report.rpo_target else ""
        con.print(f"RPO achieved: {format_duration(report.rpo_achieved)}{target}")
    if keep:
        con.print(f"sandbox kept at {report.sandbox_dir} (stop it with RUNBOOK_SANDBOX_DIR={report.sandbox_dir} runbook sandbox down)")
    if not report.passed:
        _fail("Drill FAILED: " + "; ".join(report.problems) + ".", 1)
    con.print("[green bold]Drill passed[/]: the data came back.")


def _register_optional() -> None:
    # Commands from modules that bring their own (sandbox, drill) register themselves here.
    for mod in ("runbook.sandbox.cli",):
        try:
            module = __import__(mod, fromlist=["register"])
        except ImportError:
            continue
        module.register(cli)


_register_optional()


def main() -> None:
    """Entry point: run the CLI, turning user errors into one sentence and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("Aborted.", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One sentence, like every other error (click's usage banner is noise at 3 a.m.).
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        _fail(message, 2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except RunbookError as exc:
        if _DEBUG:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("Interrupted; the incident stays resumable (runbook incidents).", 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user unless --debug
        if _DEBUG:
            raise
        _fail(f"Unexpected error ({type(exc).__name__}: {exc}); rerun with --debug for details.", 1)
