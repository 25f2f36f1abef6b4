"""The Markdown review draft: summary, parameters, steps, confirmations, skips, failures, notes,
hand-overs, the drill result, notification delivery and the timeline, as tables a review doc can
paste. Every cell is scrubbed and escaped so a pipe or a newline never breaks a row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runbook.reports import report as rep
from runbook.reports.report import Report


def _special(text: str) -> bool:
    return "|" in text or "\n" in text or "\r" in text or "<" in text or ">" in text or "&" in text


def _md(s: Any) -> str:
    """A cell or line: no pipe or newline breaks the row, and no raw HTML (a ``<script>`` from a
    parameter, an ``<img onerror>`` from a step's output, Slack's ``<!here>``) reaches a renderer:
    ``<``, ``>`` and ``&`` become entities, which every Markdown renderer shows as the characters."""
    text = s if type(s) is str else str(s)
    if _special(text):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")
    return text


def _table(title: str | None, head: list[str], rows: list[list[Any]], empty: str | None = "None.") -> list[str]:
    """A ``## title`` section: a table of ``rows`` (cells escaped here), or ``empty`` (None: the
    table's header even without rows)."""
    out = ["", f"## {title}", ""] if title is not None else [""]
    if not rows and empty is not None:
        return [*out, empty]
    out += ["|" + "|".join(f" {h} " if h else " " for h in head) + "|", "|" + "---|" * len(head)]
    return out + [_row(row) for row in rows]


def _row(cells: list[Any]) -> str:
    """``| a | b |``; the cells are escaped only when one of them needs it (most never do)."""
    texts = [c if type(c) is str else str(c) for c in cells]
    if _special("".join(texts)):
        texts = [_md(t) for t in texts]
    return "| " + " | ".join(texts) + " |"


def _steps(r: Report) -> list[list[Any]]:
    rows = []
    for i, s in enumerate(r.steps.values(), 1):
        label = f"{s.title} (`{s.id}`)" if s.title and s.title != s.id else f"`{s.id}`"
        rows.append(
            [
                i,
                rep.clean(label),
                rep.clean(rep.step_status_text(s)),
                s.attempts,
                rep.dur(s.duration) if s.timed else "—",
                rep.utc(s.started) if s.started else "—",
                rep.utc(s.finished) if s.finished else "—",
            ]
        )
    return rows


def _confirmations(r: Report) -> list[list[Any]]:
    return [rep.confirmation_cells(c) for c in r.confirmations]


def _notifications(r: Report) -> list[list[Any]]:
    return [rep.notification_cells(n) for n in r.notifications.values()]


def _lines(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    return [
        "",
        f"## {title}",
        "",
        *[f"- {rep.utc(ts)} UTC ({rep.local_time(ts)} local), {_md(who)}: {_md(text)}" for ts, who, text in rows],
    ]


def _drill(r: Report) -> list[str]:
    if not (r.is_drill or r.drill):
        return []
    if not r.drill:
        return [
            "",
            "## Drill result",
            "",
            "No drill result was journaled (`runbook drill` records one after its verification).",
        ]
    return _table("Drill result", ["", ""], [[k, rep.clean(rep.fmt_value(k, v))] for k, v in r.drill.items()])


def render_markdown(r: Report) -> str:
    o = r.opened
    kind = "Drill report" if r.is_drill else "Incident review draft"
    out: list[str] = [f"# {kind}: {_md(rep.clean(o.get('title') or o.get('playbook') or r.incident))}", ""]
    out.append(
        f"_Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by runbook "
        f"from the journal of `{r.incident}` ({r.events} events). "
        f"Check its integrity with `runbook verify {r.incident}`._"
    )
    out += _table("Summary", ["", ""], [list(row) for row in rep.summary_rows(r)])
    out += _table("Parameters", ["name", "value"], [[n, rep.param_value(v, sec)] for n, v, sec in r.params])
    out += _table(
        "Steps", ["#", "step", "status", "attempts", "duration", "started (UTC)", "finished (UTC)"], _steps(r), None
    )
    out += _table(
        "Confirmations",
        rep.CONFIRMATION_COLUMNS,
        _confirmations(r),
        "None were needed.",
    )
    out += _table(
        "Skipped steps",
        ["UTC", "step", "by", "reason"],
        [[rep.utc(ts), sid, by, reason] for ts, sid, reason, by in r.skips],
    )
    out += _table(
        "Failures",
        ["UTC", "step", "attempt", "error", "retried"],
        [[rep.utc(ts), sid, a or "", err, "yes" if retry else "no"] for ts, sid, err, a, retry in r.failures],
    )
    out += _lines("Notes", r.notes) if r.notes else ["", "## Notes", "", "None."]
    if r.handovers:
        out += _lines("Pauses, resumes and take-overs", r.handovers)
    out += _drill(r)
    out += ["", "## Notifications (outbox delivery)", "", rep.outbox_summary(r)]
    if r.notifications:
        out += _table(
            None,
            rep.NOTIFICATION_COLUMNS,
            _notifications(r),
        )
    out += ["", "## Timeline", "", "| UTC | local | actor | step | event |", "|---|---|---|---|---|"]
    out += [
        f"| {u} | {lo} | {_md(a)} | {_md(s)} | {_md(w)} |" for u, lo, a, s, w in r.timeline
    ]  # the long part: kept lean
    out.append("")
    return "\n".join(out)
