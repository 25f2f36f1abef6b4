"""The ``runbook`` command line. Headless commands print with Rich; ``runbook`` alone opens the TUI.

Every error a user can cause is one sentence on stderr with the exit code from PRODUCT.md
(1 failure, 2 usage, 3 needs a human); ``--debug`` shows the traceback of unexpected errors.
Imports inside commands are lazy so ``runbook list`` starts fast.
"""

from __future__ import annotations

import sys

import click

from runbook.cli import drill, incidents, playbooks, records, supervise  # noqa: F401 - each registers its commands
from runbook.cli.context import fail
from runbook.cli.pipes import ReaderMayLeave
from runbook.cli.root import cli
from runbook.core.errors import RunbookError
from runbook.sandbox import cli as sandbox_cli

sandbox_cli.register(cli)

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point: run the CLI, turning user errors into one sentence and an exit code."""
    debug = "--debug" in sys.argv[1:]
    if not isinstance(sys.stdout, ReaderMayLeave):
        sys.stdout = ReaderMayLeave(sys.stdout)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("Aborted.", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One sentence, like every other error (click's usage banner is noise at 3 a.m.).
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        fail(message, 2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except RunbookError as exc:
        if debug:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("Interrupted; the incident stays resumable (runbook incidents).", 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user unless --debug
        if debug:
            raise
        fail(f"Unexpected error ({type(exc).__name__}: {exc}); rerun with --debug for details.", 1)
