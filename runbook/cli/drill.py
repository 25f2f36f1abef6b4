"""``drill``: rehearse a playbook on a throwaway sandbox and measure it."""

from __future__ import annotations

import click

from runbook.cli.context import CliContext, console, fail, load_playbook, pass_ctx, table
from runbook.cli.root import cli


@cli.command()
@click.argument("playbook")
@click.option("--keep", is_flag=True, help="Leave the drill's sandbox running afterwards (to inspect it).")
@click.option("--show-output", is_flag=True, help="Print the steps' output.")
@pass_ctx
def drill(obj: CliContext, playbook: str, keep: bool, show_output: bool) -> None:
    """Recovery drill on a throwaway sandbox: break it as the scenario says, recover, verify, measure."""

    from runbook.core.durations import format_duration
    from runbook.core.paths import home
    from runbook.drills.drill import run_drill

    loaded = load_playbook(obj, playbook)
    report = run_drill(
        obj.journal, loaded, home=home(), keep=keep, quiet=not show_output, echo=lambda m: click.echo(m, err=True),
        config=obj.config_path,
    )
    click.echo(f"incident: {report.incident}")
    out = table(f"Drill of {report.playbook}", ("step", "result", "time"), no_wrap=True)
    for sid, status, dur in report.steps:
        out.add_row(sid, status, format_duration(dur) if dur is not None else "")
    con = console()
    con.print(out)
    rto = format_duration(report.rto_achieved)
    if report.rto_allowed is not None:
        rto += (
            f" vs RTO {format_duration(report.rto_target or 0)}"
            f" (sandbox allowance {format_duration(report.rto_allowed)})"
        )
    con.print(f"RTO achieved: {rto}")
    if report.rpo_achieved is not None:
        target = f" vs RPO {format_duration(report.rpo_target)}" if report.rpo_target else ""
        con.print(f"RPO achieved: {format_duration(report.rpo_achieved)}{target}")
    if keep:
        con.print(
            f"sandbox kept at {report.sandbox_dir} "
            f"(stop it with RUNBOOK_SANDBOX_DIR={report.sandbox_dir} runbook sandbox down)"
        )
    if not report.passed:
        fail("Drill FAILED: " + "; ".join(report.problems) + ".", 1)
    con.print("[green bold]Drill passed[/]: the data came back.")
