"""``runbook sandbox up|down|status``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def register(cli: click.Group) -> None:
    cli.add_command(sandbox)


@click.group()
def sandbox() -> None:
    """The local sandbox stores, for drills and hands-on practice."""


@sandbox.command()
@click.option(
    "--only",
    metavar="COMPONENTS",
    help="Comma-separated: postgres,storage,bigquery,bigtable,pubsub,dataflow,slack,git.",
)
def up(only: str | None) -> None:
    """Start (and seed on first start) the sandbox stores. Idempotent."""
    import time

    from runbook.core.errors import UsageError
    from runbook.sandbox.manager import ALL, Sandbox

    comps = [c.strip() for c in only.split(",")] if only else list(ALL)
    unknown = [c for c in comps if c not in ALL]
    if unknown:
        raise UsageError(f"Unknown sandbox component {unknown[0]!r}: choose from {', '.join(ALL)}.")
    t0 = time.monotonic()
    box = Sandbox()
    box.ensure(comps)
    click.echo(f"sandbox up in {time.monotonic() - t0:.1f} s ({', '.join(comps)}) under {box.base}")


@sandbox.command()
def down() -> None:
    """Stop every sandbox store (leaves the data)."""
    from runbook.sandbox.manager import Sandbox

    stopped = Sandbox().down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@sandbox.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """What runs, on which port, and data sizes."""
    from runbook.actions.support.fs import human_bytes
    from runbook.sandbox.manager import Sandbox

    rows = Sandbox().status()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Sandbox", title_justify="left")
    for col in ("store", "state", "port", "pid", "data"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        state: Any = "[green]running[/]" if r.running else "[dim]stopped[/]"
        if r.port is None and r.name in ("storage", "backups"):
            state = "[green]present[/]" if r.running else "[dim]absent[/]"
        table.add_row(r.name, state, str(r.port or ""), str(r.pid or ""), human_bytes(r.size))
    Console().print(table)
    sys.stdout.flush()
