"""Post-incident exports. JSON carries every event with its hash chain, so it can be verified."""

from __future__ import annotations

import json
from typing import Any

from runbook.errors import UsageError
from runbook.journal.store import GENESIS, Journal, canonical, chain_hash


def export_json(journal: Journal, incident: str) -> str:
    events = [ev.to_dict() for ev in journal.iter_events(incident)]
    doc = {"format": "runbook-incident-export", "version": 1, "incident": incident, "events": events}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def verify_export(doc: dict[str, Any]) -> tuple[int, int | None]:
    """Recompute the chain of a JSON export: (events checked, first bad n or None)."""
    prev = GENESIS
    for i, ev in enumerate(doc.get("events", [])):
        body = canonical(ev["payload"])
        if ev["n"] != i or ev["prev"] != prev:
            return i, ev.get("n", i)
        if chain_hash(ev["incident"], ev["n"], ev["ts"], ev["actor"], ev["step"], ev["type"], body, ev["prev"]) != ev["hash"]:
            return i, ev["n"]
        prev = ev["hash"]
    return len(doc.get("events", [])), None


def export_incident(journal: Journal, incident: str, fmt: str) -> str:
    if fmt == "json":
        return export_json(journal, incident)
    try:
        from runbook.report import render_report  # type: ignore[import-not-found]
    except ImportError:
        raise UsageError(f"The {fmt} export is not available in this version; use --format json.") from None
    return render_report(journal, incident, fmt)
