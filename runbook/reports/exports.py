"""Post-incident exports. JSON carries every event with its hash chain, so it can be verified."""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from typing import Any

from runbook.core.errors import UsageError
from runbook.journal.store import GENESIS, Journal, canonical, chain_hash
from runbook.reports.report import collect


def export_json(journal: Journal, incident: str) -> str:
    """Every event with its hash chain, one event per line.

    Stored payloads are already canonical JSON, so they are copied verbatim (no decode and
    re-encode): this keeps a 100,000-event export well under 2 s and byte-faithful to the chain.
    """
    dumps = json.dumps
    parts = []
    for seq, inc, n, ts, actor, step, type_, payload, prev, digest in journal.iter_events_raw(incident):
        parts.append(
            f'{{"seq": {seq}, "incident": {dumps(inc)}, "n": {n}, "ts": {dumps(ts)}, '
            f'"actor": {dumps(actor, ensure_ascii=False)}, "step": {dumps(step, ensure_ascii=False)}, '
            f'"type": {dumps(type_)}, "payload": {payload}, "prev": "{prev}", "hash": "{digest}"}}'
        )
    head = dumps({"format": "runbook-incident-export", "version": 1, "incident": incident})[:-1]
    return head + ', "events": [\n' + ",\n".join(parts) + "\n]}\n"


def verify_export(doc: dict[str, Any]) -> tuple[int, int | None]:
    """Recompute the chain of a JSON export: (events checked, first bad n or None)."""
    prev = GENESIS
    for i, ev in enumerate(doc.get("events", [])):
        body = canonical(ev["payload"])
        if ev["n"] != i or ev["prev"] != prev:
            return i, ev.get("n", i)
        if (
            chain_hash(ev["incident"], ev["n"], ev["ts"], ev["actor"], ev["step"], ev["type"], body, ev["prev"])
            != ev["hash"]
        ):
            return i, ev["n"]
        prev = ev["hash"]
    return len(doc.get("events", [])), None


def export_incident(journal: Journal, incident: str, fmt: str) -> str:
    """The incident as ``json`` (every event), ``md`` (review draft) or ``html`` (self-contained)."""
    if fmt == "json":
        return export_json(journal, incident)
    return render_report(journal, incident, fmt)


def render_report(journal: Journal, incident: str, fmt: str) -> str:
    """Render an incident (or drill) report.

    Args:
        journal: The journal to read.
        incident: The incident id.
        fmt: ``md`` or ``html``.

    Returns:
        The document.

    Raises:
        UsageError: Unknown format or incident.
    """
    if fmt not in ("md", "markdown", "html"):
        raise UsageError(f"Unknown report format {fmt!r}: use md, html or json.")
    with _no_cycle_collection():
        report = collect(journal, incident)
        if fmt == "html":
            from runbook.reports.html import render_html

            return render_html(report)
        from runbook.reports.markdown import render_markdown

        return render_markdown(report)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a report is built.

    A big incident allocates hundreds of thousands of small objects (events, rows) and no cycles;
    the collector would walk them again and again (a third of an HTML export of 100,000 events).
    Whatever cycles exist are collected as usual once the report is done.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
