"""The ``runbook`` command group; its commands live beside it, one module per area."""

from __future__ import annotations

import click

from runbook.cli.context import CliContext


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", help="runbook.toml to use.")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.version_option(package_name="runbook")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """Incident-response runbooks, run for real, with a durable timeline."""
    ctx.obj = CliContext(config)
    if ctx.invoked_subcommand is None:
        try:
            from runbook.tui.app import run_app
        except ImportError:
            listing = cli.get_command(ctx, "list")
            assert listing is not None
            ctx.invoke(listing)
            return
        run_app(ctx.obj)


