"""Regenerate the shipped JSON Schema: ``python -m runbook.playbook.schema``."""

from __future__ import annotations

import json
from pathlib import Path

from runbook.playbook.model import json_schema

SCHEMA_PATH = Path(__file__).with_name("playbook.schema.json")

if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {SCHEMA_PATH}")
