"""The self-contained HTML report: inline CSS, an inline SVG chart of step durations against the
RTO target, no network. Every value goes through :func:`html.escape`."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from runbook.reports import report as rep
from runbook.reports.report import Report

_CSS = (
    "\n"
    "body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;"
    "color:#1d232a;padding:0 1rem}\n"
    "h1{font-size:1.6rem;margin-bottom:.2rem}"
    "h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d6dbe0;padding-bottom:.2rem}\n"
    ".meta{color:#5b6670}"
    ".drill{background:#fff4d6;border:1px solid #e8c15a;padding:.3rem .6rem;border-radius:4px;display:inline-block}\n"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0}"
    "th,td{border:1px solid #d6dbe0;padding:.25rem .45rem;text-align:left;vertical-align:top}\n"
    "th{background:#f2f4f6}tr:nth-child(even) td{background:#fafbfc}td.k{width:12rem;font-weight:600}\n"
    ".done{color:#17723a}.failed,.MISSED{color:#b42318;font-weight:600}.skipped{color:#8a6100}code{font-size:.92em}\n"
    "svg text{font:11px sans-serif}.chart{overflow-x:auto}\n"
)


def _e(s: Any) -> str:
    """``html.escape`` (quotes too); most cells hold nothing to escape, so look before replacing."""
    text = s if type(s) is str else str(s)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return html.escape(text, quote=True)
    return text


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Rows must be escaped already."""
    parts = ["<table><thead><tr>", "".join(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    parts += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    parts.append("</tbody></table>")
    return "".join(parts)


def _chart(r: Report) -> str:
    """Gantt-like SVG: each step's attempts from incident start, with the RTO target as a line."""
    if not r.opened_ts:
        return ""
    steps = [s for s in r.steps.values() if s.spans][: rep.CHART_MAX_STEPS]
    if not steps:
        return "<p>No step ran, so there is no duration chart.</p>"
    rto = r.opened.get("rto")
    end = max(rep.seconds_between(r.opened_ts, b) for s in steps for _, b in s.spans)
    scale_max = max(end, float(rto) if rto else 0.0, 1e-3) * 1.05
    label_w, width, row_h = 220, 900, 18
    plot_w = width - label_w - 80
    height = row_h * len(steps) + 50
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="step durations against the RTO target">'
    ]
    for i, s in enumerate(steps):
        y = 20 + i * row_h
        name = (s.title or s.id)[:32]
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{_e(name)}</text>')
        colour = (
            "#17723a" if s.status in ("done", "marked done") else ("#b42318" if s.status == "failed" else "#8a6100")
        )
        for a, b in s.spans:
            x0 = label_w + plot_w * rep.seconds_between(r.opened_ts, a) / scale_max
            w = max(1.5, plot_w * rep.seconds_between(a, b) / scale_max)
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}">'
                f"<title>{_e(s.id)}: {_e(rep.dur(rep.seconds_between(a, b)))}</title></rect>"
            )
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + 12}">{_e(rep.dur(s.duration))}</text>')
    axis_y = 20 + len(steps) * row_h + 4
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#5b6670"/>')
    out.append(
        f'<text x="{label_w}" y="{axis_y + 16}">0</text>'
        f'<text x="{label_w + plot_w}" y="{axis_y + 16}" text-anchor="end">{_e(rep.dur(scale_max))}</text>'
    )
    if rto:
        x = label_w + plot_w * float(rto) / scale_max
        out.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{axis_y}" '
            'stroke="#b42318" stroke-dasharray="5,4" stroke-width="2"/>'
        )
        out.append(f'<text x="{x:.1f}" y="10" text-anchor="middle" fill="#b42318">RTO {_e(rep.dur(rto))}</text>')
    out.append("</svg>")
    more = len([s for s in r.steps.values() if s.spans]) - len(steps)
    note = f"<p class=meta>{more} more steps are in the table below.</p>" if more > 0 else ""
    return '<div class="chart">' + "".join(out) + "</div>" + note


def _section(title: str, head: list[str], rows: list[list[str]], empty: str = "<p>None.</p>") -> str:
    """``<h2>title</h2>`` and a table of already-escaped rows, or ``empty``."""
    return f"<h2>{_e(title)}</h2>" + (_table(head, rows) if rows else empty)


def _summary(r: Report) -> str:
    rows = []
    for k, v in rep.summary_rows(r):
        cls = " class=MISSED" if "MISSED" in v else ""
        rows.append(f"<tr><td class=k>{_e(k)}</td><td{cls}>{_e(v)}</td></tr>")
    return "<h2>Summary</h2><table>" + "".join(rows) + "</table>"


def _steps(r: Report) -> list[list[str]]:
    rows = []
    for i, s in enumerate(r.steps.values(), 1):
        cls = s.status.split()[0]
        rows.append(
            [
                str(i),
                f"{_e(rep.clean(s.title or s.id))}<br><code>{_e(s.id)}</code>",
                f"<span class={_e(cls)}>{_e(rep.clean(rep.step_status_text(s)))}</span>",
                str(s.attempts),
                _e(rep.dur(s.duration)) if s.timed else "—",
                _e(rep.utc(s.started)) if s.started else "—",
                _e(rep.utc(s.finished)) if s.finished else "—",
            ]
        )
    return rows


def _confirmations(r: Report) -> list[list[str]]:
    rows = []
    for c in r.confirmations:
        cells = [_e(cell) for cell in rep.confirmation_cells(c)]
        cells[6] = f"<code>{cells[6]}</code>"  # what ran
        rows.append(cells)
    return rows


def _items(rows: list[tuple[str, str, str]]) -> str:
    return (
        "<ul>"
        + "".join(
            f"<li>{_e(rep.utc(ts))} UTC ({_e(rep.local_time(ts))} local), {_e(who)}: {_e(text)}</li>"
            for ts, who, text in rows
        )
        + "</ul>"
    )


def _drill(r: Report) -> str:
    if not (r.is_drill or r.drill):
        return ""
    if not r.drill:
        return (
            "<h2>Drill result</h2><p>No drill result was journaled "
            "(<code>runbook drill</code> records one after its verification).</p>"
        )
    return _section("Drill result", ["", ""], [[_e(k), _e(rep.clean(rep.fmt_value(k, v)))] for k, v in r.drill.items()])


def _notifications(r: Report) -> str:
    out = f"<h2>Notifications (outbox delivery)</h2><p>{_e(rep.outbox_summary(r))}</p>"
    if not r.notifications:
        return out
    rows = [[_e(cell) for cell in rep.notification_cells(n)] for n in r.notifications.values()]
    return out + _table(rep.NOTIFICATION_COLUMNS, rows)


def _timeline(r: Report) -> list[str]:
    esc = html.escape  # the long part: kept lean
    return [
        "<h2>Timeline</h2><table><thead><tr><th>UTC</th><th>local</th><th>actor</th><th>step</th><th>event</th></tr></thead><tbody>",
        *(
            f"<tr><td>{u}</td><td>{lo}</td><td>{esc(a)}</td><td>{esc(s)}</td><td>{esc(w)}</td></tr>"
            for u, lo, a, s, w in r.timeline
        ),
        "</tbody></table></body></html>\n",
    ]


def render_html(r: Report) -> str:
    o = r.opened
    kind = "Drill report" if r.is_drill else "Incident review draft"
    title = rep.clean(o.get("title") or o.get("playbook") or r.incident)
    out: list[str] = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(kind)}: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(kind)}: {_e(title)}</h1>",
    ]
    if r.is_drill:
        out.append('<p class="drill">DRILL — not a real incident</p>')
    out.append(
        f"<p class=meta>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"from the journal of <code>{_e(r.incident)}</code> ({r.events} events). "
        f"Check its integrity with <code>runbook verify {_e(r.incident)}</code>.</p>"
    )
    out += [_summary(r), "<h2>Step durations against the RTO target</h2>", _chart(r)]
    out.append(
        _section("Parameters", ["name", "value"], [[_e(n), _e(rep.param_value(v, sec))] for n, v, sec in r.params])
    )
    out.append(
        "<h2>Steps</h2>"
        + _table(["#", "step", "status", "attempts", "duration", "started (UTC)", "finished (UTC)"], _steps(r))
    )
    out.append(
        _section(
            "Confirmations",
            rep.CONFIRMATION_COLUMNS,
            _confirmations(r),
            "<p>None were needed.</p>",
        )
    )
    out.append(
        _section(
            "Skipped steps",
            ["UTC", "step", "by", "reason"],
            [[_e(rep.utc(ts)), _e(sid), _e(by), _e(reason)] for ts, sid, reason, by in r.skips],
        )
    )
    out.append(
        _section(
            "Failures",
            ["UTC", "step", "attempt", "error", "retried"],
            [
                [_e(rep.utc(ts)), _e(sid), _e(a or ""), _e(err), "yes" if retry else "no"]
                for ts, sid, err, a, retry in r.failures
            ],
        )
    )
    out.append("<h2>Notes</h2>" + (_items(r.notes) if r.notes else "<p>None.</p>"))
    if r.handovers:
        out.append("<h2>Pauses, resumes and take-overs</h2>" + _items(r.handovers))
    out += [_drill(r), _notifications(r), *_timeline(r)]
    return "".join(out)
