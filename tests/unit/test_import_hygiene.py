"""The engine must be usable without the TUI and without loading heavy store clients."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("textual", "google.cloud", "psycopg", "slack_sdk", "grpc", "duckdb")


def imported_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def heavy(mods: list[str]) -> list[str]:
    return [m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_engine_imports_no_tui_and_no_store_clients() -> None:
    mods = imported_after("import runbook.engine.runner, runbook.headless, runbook.journal.store")
    assert heavy(mods) == []


def test_loading_every_playbook_and_the_registry_imports_no_store_client() -> None:
    code = (
        "from runbook.actions.registry import registry; registry()\n"
        "from runbook.playbook.catalog import playbook_files\n"
        "from runbook.playbook.validate import load\n"
        "[load(p) for p in playbook_files()]\n"
    )
    mods = imported_after(code)
    assert heavy(mods) == []


def test_list_command_imports_no_pydantic_or_store_client() -> None:
    code = (
        "import sys; sys.argv=['runbook','list']\nfrom runbook.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    mods = imported_after(code)
    assert heavy(mods) == []
    assert "pydantic" not in mods
