"""``list``, ``validate`` and ``plan``: what the playbooks are and exactly what they would do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runbook.cli.context import CliContext, console, load_playbook, params_from_env, parse_kv, pass_ctx
from runbook.cli.root import cli
from runbook.core.errors import RunbookError, UsageError


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(obj: CliContext, as_json: bool) -> None:
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
    con = console()
    wide = con.width >= 110  # at 80 columns the title would squeeze everything else
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
    con.print(table)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@pass_ctx
def validate(obj: CliContext, paths: tuple[str, ...]) -> None:
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


@cli.command()
@click.argument("playbook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter value.")
@click.option("--env", "env_name", metavar="ENV", help="Environment (default: sandbox or config's default_env).")
@pass_ctx
def plan(obj: CliContext, playbook: str, params: tuple[str, ...], env_name: str | None) -> None:
    """Print the resolved steps: what each would run, its effect, the confirmation needed."""
    from rich.markup import escape
    from rich.table import Table

    from runbook.core.redact import Redactor
    from runbook.engine.calls import resolve_call
    from runbook.playbook import params as P
    from runbook.playbook.refs import RefError, make_lookup

    loaded = load_playbook(obj, playbook)
    pb = loaded.playbook
    given = params_from_env(loaded, parse_kv(params, "Parameter"))
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
                table.add_row(
                    str(i), f"{phase}{escape(step.id)}", "—", "—", escape(f"skipped: condition is false ({step.when})")
                )
                continue
        try:
            call = resolve_call(step, lookup, red)
            runs = call.describe
            if step.when:
                runs = f"[when {step.when}] {runs}"
            confirm = call.confirm + (f" ({red.text(call.expected)})" if call.expected else "")
            effect = call.effect if step.kind != "manual" else "manual"
        except (RefError, RunbookError) as exc:
            runs, confirm, effect = f"cannot resolve: {exc}", "?", "?"
        phase = f"[dim]{escape(step.phase)}[/]\n" if step.phase else ""
        table.add_row(str(i), f"{phase}{escape(step.id)}", effect, confirm, escape(red.text(str(runs))))
    console().print(table)
