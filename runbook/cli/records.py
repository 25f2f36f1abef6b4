"""``incidents``, ``timeline``, ``verify`` and ``export``: what the journal holds."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import click

from runbook.cli.context import CliContext, console, fail, pass_ctx, table
from runbook.cli.root import cli
from runbook.core.errors import UsageError


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def incidents(obj: CliContext, as_json: bool) -> None:
    """Incidents with status, playbook, env, mode, operator, elapsed vs RTO."""
    from runbook.core import incident as S
    from runbook.core.durations import format_duration

    journal = obj.journal
    rows = []
    for inc in journal.incidents():
        st = S.fold(inc, journal.events(inc))
        lock = journal.lock_info(inc)
        status = st.status.value
        if status == "open" and (lock is None or not lock.alive()):
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

    out = table("Incidents", ("id", "status", "playbook", "env", "mode", "operator", "elapsed / RTO"))
    for r in rows:
        rto = f" / {format_duration(r['rto'])}" if r["rto"] else ""
        out.add_row(
            r["id"], r["status"], r["playbook"], r["env"], r["mode"], r["operator"], format_duration(r["elapsed"]) + rto
        )
    console().print(out)


@cli.command()
@click.argument("incident")
@pass_ctx
def timeline(obj: CliContext, incident: str) -> None:
    """The incident's timeline in the terminal (UTC and local time)."""
    from rich.markup import escape

    from runbook.reports.timeline import describe_event, local_time

    incident = obj.journal.find_incident(incident)
    out = table(f"Timeline of {incident}", ("UTC", "local", "actor", "step", "event"))
    for ev in obj.journal.iter_events(incident):
        out.add_row(ev.ts[11:19], local_time(ev.ts), ev.actor, ev.step or "", escape(describe_event(ev)))
    console().print(out)


@cli.command()
@click.argument("incident")
@pass_ctx
def verify(obj: CliContext, incident: str) -> None:
    """Check the incident's hash chain; exit 1 naming the first bad event."""
    incident = obj.journal.find_incident(incident)
    count, bad, reason = obj.journal.verify(incident)
    if bad is not None:
        fail(f"Journal of {incident} is NOT intact: event {bad.n} ({bad.type}, {bad.ts}) is bad: {reason}.", 1)
    click.echo(f"Journal of {incident} is intact: {count} events, hash chain verified.")


@cli.command()
@click.argument("incident")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html"]), default="json", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@pass_ctx
def export(obj: CliContext, incident: str, fmt: str, output: str | None) -> None:
    """Post-incident timeline export."""
    from runbook.reports.exports import export_incident

    incident = obj.journal.find_incident(incident)
    text = export_incident(obj.journal, incident, fmt)
    if output:
        path = Path(output)
        try:  # never through a symbolic link: someone else's link could point the export anywhere
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(f"{path} is a symbolic link; the export is not written through one.") from None
            raise UsageError(f"Cannot write {path}: {exc.strerror}.") from None
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"Wrote {fmt} export of {incident} to {path}.", err=True)
    else:
        sys.stdout.write(text)
