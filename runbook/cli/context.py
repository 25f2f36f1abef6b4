"""What every command shares: the lazily loaded config and journal, one-sentence failures, and
``KEY=VALUE`` parsing."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from runbook.core.errors import RunbookError, UsageError


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


def fail(message: str, code: int) -> None:
    err = console(stderr=True)
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(message)}")
    sys.exit(code)


def parse_kv(items: tuple[str, ...], what: str) -> dict[str, str]:
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


class CliContext:
    """The ``obj`` of every command: config and journal, loaded on first use."""

    outbox: Any = None  # the Slack outbox, once notifications are attached

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


pass_ctx = click.make_pass_decorator(CliContext)



def load_playbook(obj: CliContext, ref: str) -> Any:
    from runbook.playbook.catalog import resolve
    from runbook.playbook.validate import load

    path = resolve(ref, obj.playbook_dirs())
    loaded = load(path)
    if loaded.errors:
        raise RunbookError(f"The playbook is not valid: {loaded.errors[0]}", exit_code=1)
    return loaded


def params_from_env(loaded: Any, given: dict[str, str]) -> dict[str, str]:
    # Secret params may come from RUNBOOK_PARAM_<NAME> so they are not visible in `ps`.
    for name, spec in loaded.playbook.params.items():
        if name not in given:
            value = os.environ.get(f"RUNBOOK_PARAM_{name.upper()}")
            if value is not None and spec.secret:
                given[name] = value
    return given


def table(title: str, columns: tuple[str, ...], **column: Any) -> Any:
    """A Rich table titled on the left with these columns (folding long cells unless told otherwise)."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for col in columns:
        out.add_column(col, **(column or {"overflow": "fold"}))
    return out
