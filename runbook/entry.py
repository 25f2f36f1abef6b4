"""The ``runbook`` entry point.

Bare ``runbook`` opens the TUI straight away, without building the whole command line first
(click and every command cost tens of milliseconds on the way to the first paint); anything
else goes to :mod:`runbook.cli`.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) == 1:
        from runbook.core.errors import RunbookError

        try:
            from runbook.journal.store import open_journal
            from runbook.sandbox.environment import with_sandbox
            from runbook.stores.config import load_config
            from runbook.tui.app import TuiContext, run_app

            run_app(TuiContext(config=load_config(local=with_sandbox()), journal=open_journal()))
            return
        except RunbookError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            sys.stderr.write(
                f"error: Unexpected error ({type(exc).__name__}: {exc}); run `runbook list` to check the install.\n"
            )
            sys.exit(1)
    from runbook.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
