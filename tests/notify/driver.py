"""Test driver: the real ``runbook`` command line plus the notification wiring cli.py is to get.

``python tests/notify/driver.py [runbook args…]`` runs ``runbook.cli.main()`` with
:func:`runbook.notify.cli_hook` called just before ``Engine.open``/``Engine.resume`` — the same
place the lead's cli.py change puts it. ``python tests/notify/driver.py deliver CONFIG [ENV]``
is a fresh process that only delivers what the journal holds undelivered, then exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _hook() -> None:
    import click

    from runbook import notify
    from runbook.engine import runner

    def wrap(orig):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            obj = click.get_current_context().obj
            notify.cli_hook(obj, self.environment, self)
            return orig(self, *args, **kwargs)

        return call

    runner.Engine.open = wrap(runner.Engine.open)  # type: ignore[method-assign]
    runner.Engine.resume = wrap(runner.Engine.resume)  # type: ignore[method-assign]


def _deliver(config: str, env_name: str | None) -> int:
    from runbook import notify
    from runbook.journal.store import open_journal
    from runbook.sandbox.environment import with_sandbox
    from runbook.stores.config import load_config

    cfg = load_config(config, local=with_sandbox())
    journal = open_journal()
    outbox = notify.attach(journal, cfg, cfg.environment(env_name))
    if outbox is None:
        print("slack not configured")
        return 1
    print(f"queued {outbox.resume_pending()}", flush=True)
    print(outbox.flush(15), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["deliver"]:
        sys.exit(_deliver(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
    _hook()
    from runbook.cli import main

    sys.argv[0] = "runbook"
    main()
