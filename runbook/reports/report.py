"""Post-incident reports: a Markdown review draft and a self-contained HTML page.

Both are built in one streaming pass over the journal (:meth:`Journal.iter_events`) and joined
from lists of strings, so a 100,000-event incident renders in well under two seconds. Payloads
were redacted when journaled; every piece of text is scrubbed once more for anything that looks
like a credential, and secret parameters are shown as such, never with a value. The HTML page
needs no network: inline CSS and an inline SVG chart of step durations against the RTO target;
every value goes through :func:`html.escape`.

Drills (mode ``drill``) get the same formats titled "Drill report", with the drill result.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runbook.core.durations import format_duration
from runbook.core.errors import UsageError
from runbook.core.redact import MASK
from runbook.journal.store import Journal
from runbook.notify.slack import scrub
from runbook.reports.timeline import describe_event

CHART_MAX_STEPS = 200  # the chart stays readable; the steps table lists them all

def _clean(text: Any) -> str:
    return scrub(text if isinstance(text, str) else str(text))


@dataclass
class _Step:
    id: str
    title: str = ""
    status: str = "pending"
    attempts: int = 0
    started: str | None = None  # first start
    finished: str | None = None
    duration: float = 0.0  # sum of attempts' durations
    timed: bool = False
    error: str | None = None
    reason: str | None = None
    spans: list[tuple[str, str]] = field(default_factory=list)  # (start ts, end ts) per attempt
    _open: str | None = None


@dataclass
class _Notification:
    id: str
    kind: str = ""
    channel: str = ""
    queued: str = ""
    text: str = ""
    sent: str | None = None
    ts: str | None = None
    attempts: int = 0
    error: str | None = None
    outcome: str = "waiting"


@dataclass
class _Report:
    incident: str
    opened: dict[str, Any] = field(default_factory=dict)
    opened_ts: str = ""
    operator: str = ""
    operators: list[str] = field(default_factory=list)
    params: list[tuple[str, Any, bool]] = field(default_factory=list)
    steps: dict[str, _Step] = field(default_factory=dict)
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    skips: list[tuple[str, str, str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str, Any, bool]] = field(default_factory=list)
    handovers: list[tuple[str, str, str]] = field(default_factory=list)  # take-overs, pauses, resumes
    notifications: dict[str, _Notification] = field(default_factory=dict)
    closed: dict[str, Any] | None = None
    closed_ts: str | None = None
    drill: dict[str, Any] | None = None
    last_ts: str = ""
    events: int = 0
    timeline: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # utc, local, actor, step, what

    @property
    def is_drill(self) -> bool:
        return self.opened.get("mode") == "drill"


def _local(ts: str) -> str:
    return datetime.fromisoformat(ts).astimezone().strftime("%H:%M:%S")


def _utc(ts: str) -> str:
    return ts[:19].replace("T", " ")


def _seconds(a: str, b: str) -> float:
    return max(0.0, (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds())


def _dur(v: Any) -> str:
    if v is None:
        return "—"
    try:
        return format_duration(float(v))
    except (TypeError, ValueError):
        return str(v)


def _playbook_titles(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - titles are a nicety
        return {}
    out: dict[str, str] = {}
    for s in (data or {}).get("steps") or []:
        if isinstance(s, dict) and isinstance(s.get("id"), str):
            out[s["id"]] = str(s.get("title") or "")
    return out


def collect(journal: Journal, incident: str) -> _Report:
    """Fold the incident's events into what the report shows (one streaming pass)."""
    r = _Report(incident)
    local_cache: dict[str, str] = {}
    for ev in journal.iter_events(incident):
        r.events += 1
        r.last_ts = ev.ts
        t, p, sid = ev.type, ev.payload, ev.step
        if t.startswith("notification_"):
            nid = str(p.get("id", ""))
            n = r.notifications.get(nid)
            if t == "notification_queued":
                r.notifications[nid] = _Notification(nid, str(p.get("kind", "")), str(p.get("channel", "")), ev.ts, str(p.get("text", ""))[:200])
            elif n is not None and t == "notification_sent":
                n.sent, n.ts, n.attempts = ev.ts, p.get("ts"), int(p.get("attempts") or n.attempts)
                n.outcome = "superseded" if p.get("superseded_by") else ("skipped" if p.get("skipped") else "sent")
                if p.get("degraded"):
                    n.outcome = "sent (plain text)"
            elif n is not None and t == "notification_failed":
                n.attempts = max(n.attempts, int(p.get("attempt") or 0))
                n.error = str(p.get("error", ""))
                if p.get("final"):
                    n.outcome = "refused by Slack"
            continue
        # Local time changes only with the second: cache it per second for big timelines.
        sec = ev.ts[:19]
        loc = local_cache.get(sec)
        if loc is None:
            loc = local_cache[sec] = _local(ev.ts)
        r.timeline.append((_utc(ev.ts), loc, ev.actor, sid or "", _clean(describe_event(ev))))
        if t == "incident_opened":
            r.opened, r.opened_ts, r.operator = p, ev.ts, ev.actor
            r.operators.append(ev.actor)
            for step_id, title in _playbook_titles(str(p.get("playbook_text") or "")).items():
                r.steps[step_id] = _Step(step_id, title)
        elif t == "param_bound":
            r.params.append((str(p.get("name")), p.get("value"), bool(p.get("secret"))))
        elif sid is not None and t.startswith("step_"):
            s = r.steps.get(sid)
            if s is None:
                s = r.steps[sid] = _Step(sid)
            if t == "step_started":
                s.status, s.attempts = "running", int(p.get("attempt") or s.attempts + 1)
                s.started = s.started or ev.ts
                s._open = ev.ts
            elif t in ("step_finished", "step_failed"):
                if p.get("duration") is not None:
                    s.duration += float(p["duration"])
                    s.timed = True
                elif s._open:
                    s.duration += _seconds(s._open, ev.ts)
                    s.timed = True
                if s._open:
                    s.spans.append((s._open, ev.ts))
                s._open = None
                s.finished = ev.ts
                if t == "step_finished":
                    s.status, s.error = "done", None
                else:
                    s.error = str(p.get("error") or "")
                    s.status = "failed" if not p.get("will_retry") else "retrying"
                    r.failures.append((ev.ts, sid, _clean(s.error), p.get("attempt"), bool(p.get("will_retry"))))
            elif t == "step_skipped":
                s.status, s.reason, s.finished = "skipped", str(p.get("reason") or ""), ev.ts
                r.skips.append((ev.ts, sid, _clean(s.reason), "engine" if p.get("by") == "engine" else ev.actor))
            elif t == "step_marked_done":
                s.status, s.reason, s.finished = "marked done", str(p.get("reason") or ""), ev.ts
            elif t == "step_planned":
                s.status = "planned (dry-run)"
            elif t == "step_retry_requested":
                s.status = "retry requested"
        elif t in ("confirmation_given", "confirmation_refused"):
            r.confirmations.append({"ts": ev.ts, "step": sid or "", "who": ev.actor, "given": t == "confirmation_given", **p})
        elif t == "note":
            r.notes.append((ev.ts, ev.actor, _clean(p.get("text", ""))))
        elif t in ("take_over", "paused", "resumed", "reopened", "interrupted_resolved"):
            r.handovers.append((ev.ts, ev.actor, _clean(describe_event(ev))))
            if t in ("take_over", "resumed") and ev.actor not in r.operators:
                r.operators.append(ev.actor)
        elif t == "incident_closed":
            r.closed, r.closed_ts = p, ev.ts
        elif t == "drill_result":
            r.drill = p
    if not r.events:
        raise UsageError(f"No incident {incident!r}.")
    return r


def _summary_rows(r: _Report) -> list[tuple[str, str]]:
    o = r.opened
    status = (r.closed or {}).get("status") or "open (not closed)"
    elapsed = (r.closed or {}).get("elapsed")
    if elapsed is None and r.opened_ts:
        elapsed = _seconds(r.opened_ts, r.last_ts)
    rto = o.get("rto")
    if rto:
        met = elapsed is not None and float(elapsed) <= float(rto)
        rto_line = f"target {_dur(rto)}, achieved {_dur(elapsed)} — {'met' if met else 'MISSED'}" + ("" if r.closed else " (still open)")
    else:
        rto_line = f"no target; elapsed {_dur(elapsed)}"
    counts: dict[str, int] = {}
    for s in r.steps.values():
        counts[s.status] = counts.get(s.status, 0) + 1
    rows = [
        ("Incident", r.incident),
        ("Playbook", f"{o.get('playbook', '')} — {o.get('title', '')}"),
        ("Tier / level", f"{o.get('tier', '')}" + (f" / level {o['level']}" if o.get("level") else "")),
        ("Environment", str(o.get("env", ""))),
        ("Mode", str(o.get("mode", ""))),
        ("Operator", ", ".join(r.operators) or r.operator),
        ("Opened", f"{_utc(r.opened_ts)} UTC ({_local(r.opened_ts)} local)" if r.opened_ts else "—"),
        ("Closed", f"{_utc(r.closed_ts)} UTC ({_local(r.closed_ts)} local)" if r.closed_ts else "not closed"),
        ("Status", str(status) + (f": {r.closed['message']}" if r.closed and r.closed.get("message") else "")),
        ("RTO", rto_line),
        ("RPO", _rpo_line(r)),
        ("Steps", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"),
        ("Events", str(r.events)),
    ]
    return [(k, _clean(v)) for k, v in rows]


def _rpo_line(r: _Report) -> str:
    target = r.opened.get("rpo")
    achieved = None
    for key in ("rpo_achieved", "rpo", "data_loss_seconds", "data_loss"):
        if r.drill and isinstance(r.drill.get(key), int | float):
            achieved = float(r.drill[key])
            break
    if target is None and achieved is None:
        return "no target"
    if achieved is None:
        return f"target {_dur(target)}; achieved: not measured (assess data loss in the review)"
    met = target is None or achieved <= float(target)
    return f"target {_dur(target)}, achieved {_dur(achieved)} — {'met' if met else 'MISSED'}"


def _param_value(value: Any, secret: bool) -> str:
    if secret:
        return f"{MASK} (secret, never recorded)"
    return _clean(repr(value) if not isinstance(value, str) else value)


def _outbox_summary(r: _Report) -> str:
    ns = r.notifications.values()
    if not r.notifications:
        return "No notifications were queued (Slack not configured for this incident)."
    by: dict[str, int] = {}
    for n in ns:
        by[n.outcome] = by.get(n.outcome, 0) + 1
    return f"{len(r.notifications)} queued: " + ", ".join(f"{v} {k}" for k, v in sorted(by.items()))


def _confirm_what(c: dict[str, Any]) -> tuple[str, str]:
    what = str(c.get("action") or c.get("target") or "")
    typed = repr(c["typed"]) if "typed" in c else "—"
    return _clean(what), _clean(typed)


# -- Markdown ---------------------------------------------------------------------------------------


def _md(s: Any) -> str:
    """A table cell: no pipes or newlines breaking the row."""
    text = s if isinstance(s, str) else str(s)
    if "|" in text or "\n" in text or "\r" in text:
        text = text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")
    return text


def render_markdown(r: _Report) -> str:
    o = r.opened
    kind = "Drill report" if r.is_drill else "Incident review draft"
    out: list[str] = [f"# {kind}: {_md(_clean(o.get('title') or o.get('playbook') or r.incident))}", ""]
    out.append(f"_Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by runbook from the journal of `{r.incident}` ({r.events} events). "
               f"Check its integrity with `runbook verify {r.incident}`._")
    out += ["", "## Summary", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_md(v)} |" for k, v in _summary_rows(r)]
    out += ["", "## Parameters", ""]
    if r.params:
        out += ["| name | value |", "|---|---|"]
        out += [f"| {_md(n)} | {_md(_param_value(v, s))} |" for n, v, s in r.params]
    else:
        out.append("None.")
    out += ["", "## Steps", "", "| # | step | status | attempts | duration | started (UTC) | finished (UTC) |", "|---|---|---|---|---|---|---|"]
    for i, s in enumerate(r.steps.values(), 1):
        label = f"{s.title} (`{s.id}`)" if s.title and s.title != s.id else f"`{s.id}`"
        extra = f": {s.error}" if s.status == "failed" and s.error else (f": {s.reason}" if s.reason else "")
        out.append(
            f"| {i} | {_md(_clean(label))} | {_md(_clean(s.status + extra))} | {s.attempts} | {_dur(s.duration) if s.timed else '—'} | "
            f"{_utc(s.started) if s.started else '—'} | {_utc(s.finished) if s.finished else '—'} |"
        )
    out += ["", "## Confirmations", ""]
    if r.confirmations:
        out += ["| UTC | local | step | who | level | given | what | typed |", "|---|---|---|---|---|---|---|---|"]
        for c in r.confirmations:
            what, typed = _confirm_what(c)
            given = "yes" + (f" ({c['how']})" if c.get("how") and c.get("how") != "operator" else "") if c["given"] else f"refused: {c.get('reason', 'operator said no')}"
            out.append(f"| {_utc(c['ts'])} | {_local(c['ts'])} | {_md(c['step'])} | {_md(c['who'])} | {_md(c.get('level', ''))} | {_md(_clean(given))} | {_md(what)} | {_md(typed)} |")
    else:
        out.append("None were needed.")
    out += ["", "## Skipped steps", ""]
    if r.skips:
        out += ["| UTC | step | by | reason |", "|---|---|---|---|"]
        out += [f"| {_utc(ts)} | {_md(sid)} | {_md(by)} | {_md(reason)} |" for ts, sid, reason, by in r.skips]
    else:
        out.append("None.")
    out += ["", "## Failures", ""]
    if r.failures:
        out += ["| UTC | step | attempt | error | retried |", "|---|---|---|---|---|"]
        out += [f"| {_utc(ts)} | {_md(sid)} | {a or ''} | {_md(err)} | {'yes' if retry else 'no'} |" for ts, sid, err, a, retry in r.failures]
    else:
        out.append("None.")
    out += ["", "## Notes", ""]
    if r.notes:
        out += [f"- {_utc(ts)} UTC ({_local(ts)} local), {_md(who)}: {_md(text)}" for ts, who, text in r.notes]
    else:
        out.append("None.")
    if r.handovers:
        out += ["", "## Pauses, resumes and take-overs", ""]
        out += [f"- {_utc(ts)} UTC ({_local(ts)} local), {_md(who)}: {_md(what)}" for ts, who, what in r.handovers]
    if r.is_drill or r.drill:
        out += ["", "## Drill result", ""]
        if r.drill:
            out += ["| | |", "|---|---|"]
            out += [f"| {_md(k)} | {_md(_clean(_fmt_value(k, v)))} |" for k, v in r.drill.items()]
        else:
            out.append("No drill result was journaled (`runbook drill` records one after its verification).")
    out += ["", "## Notifications (outbox delivery)", "", _outbox_summary(r)]
    if r.notifications:
        out += ["", "| id | kind | channel | queued (UTC) | outcome | delivered (UTC) | attempts | last error |", "|---|---|---|---|---|---|---|---|"]
        for n in r.notifications.values():
            out.append(
                f"| {_md(n.id.rsplit('#', 1)[-1])} | {n.kind} | {_md(n.channel)} | {_utc(n.queued)} | {n.outcome} | "
                f"{_utc(n.sent) if n.sent else '—'} | {n.attempts} | {_md(_clean(n.error or ''))} |"
            )
    out += ["", "## Timeline", "", "| UTC | local | actor | step | event |", "|---|---|---|---|---|"]
    out += [f"| {u} | {lo} | {_md(a)} | {_md(s)} | {_md(w)} |" for u, lo, a, s, w in r.timeline]
    out.append("")
    return "\n".join(out)


def _fmt_value(key: str, value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and any(x in key for x in ("rto", "rpo", "elapsed", "seconds", "duration")):
        return f"{_dur(value)} ({value})"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)[:2000]
    return str(value)


# -- HTML -------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#1d232a;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d6dbe0;padding-bottom:.2rem}
.meta{color:#5b6670}.drill{background:#fff4d6;border:1px solid #e8c15a;padding:.3rem .6rem;border-radius:4px;display:inline-block}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #d6dbe0;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f2f4f6}tr:nth-child(even) td{background:#fafbfc}td.k{width:12rem;font-weight:600}
.done{color:#17723a}.failed,.MISSED{color:#b42318;font-weight:600}.skipped{color:#8a6100}code{font-size:.92em}
svg text{font:11px sans-serif}.chart{overflow-x:auto}
"""


def _e(s: Any) -> str:
    return html.escape(s if isinstance(s, str) else str(s), quote=True)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Rows must be escaped already."""
    parts = ["<table><thead><tr>", "".join(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    parts += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    parts.append("</tbody></table>")
    return "".join(parts)


def _chart(r: _Report) -> str:
    """Gantt-like SVG: each step's attempts from incident start, with the RTO target as a line."""
    if not r.opened_ts:
        return ""
    steps = [s for s in r.steps.values() if s.spans][:CHART_MAX_STEPS]
    if not steps:
        return "<p>No step ran, so there is no duration chart.</p>"
    rto = r.opened.get("rto")
    end = max(_seconds(r.opened_ts, b) for s in steps for _, b in s.spans)
    scale_max = max(end, float(rto) if rto else 0.0, 1e-3) * 1.05
    label_w, width, row_h = 220, 900, 18
    plot_w = width - label_w - 80
    height = row_h * len(steps) + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="step durations against the RTO target">']
    for i, s in enumerate(steps):
        y = 20 + i * row_h
        name = (s.title or s.id)[:32]
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{_e(name)}</text>')
        colour = "#17723a" if s.status in ("done", "marked done") else ("#b42318" if s.status == "failed" else "#8a6100")
        for a, b in s.spans:
            x0 = label_w + plot_w * _seconds(r.opened_ts, a) / scale_max
            w = max(1.5, plot_w * _seconds(a, b) / scale_max)
            out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" fill="{colour}"><title>{_e(s.id)}: {_e(_dur(_seconds(a, b)))}</title></rect>')
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + 12}">{_e(_dur(s.duration))}</text>')
    axis_y = 20 + len(steps) * row_h + 4
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#5b6670"/>')
    out.append(f'<text x="{label_w}" y="{axis_y + 16}">0</text><text x="{label_w + plot_w}" y="{axis_y + 16}" text-anchor="end">{_e(_dur(scale_max))}</text>')
    if rto:
        x = label_w + plot_w * float(rto) / scale_max
        out.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{axis_y}" stroke="#b42318" stroke-dasharray="5,4" stroke-width="2"/>')
        out.append(f'<text x="{x:.1f}" y="10" text-anchor="middle" fill="#b42318">RTO {_e(_dur(rto))}</text>')
    out.append("</svg>")
    more = len([s for s in r.steps.values() if s.spans]) - len(steps)
    note = f"<p class=meta>{more} more steps are in the table below.</p>" if more > 0 else ""
    return '<div class="chart">' + "".join(out) + "</div>" + note


def render_html(r: _Report) -> str:
    o = r.opened
    kind = "Drill report" if r.is_drill else "Incident review draft"
    title = _clean(o.get("title") or o.get("playbook") or r.incident)
    out: list[str] = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(kind)}: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(kind)}: {_e(title)}</h1>",
    ]
    if r.is_drill:
        out.append('<p class="drill">DRILL — not a real incident</p>')
    out.append(f"<p class=meta>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the journal of <code>{_e(r.incident)}</code> ({r.events} events). "
               f"Check its integrity with <code>runbook verify {_e(r.incident)}</code>.</p>")
    out.append("<h2>Summary</h2><table>")
    for k, v in _summary_rows(r):
        cls = " class=MISSED" if "MISSED" in v else ""
        out.append(f"<tr><td class=k>{_e(k)}</td><td{cls}>{_e(v)}</td></tr>")
    out.append("</table>")
    out.append("<h2>Step durations against the RTO target</h2>")
    out.append(_chart(r))
    out.append("<h2>Parameters</h2>")
    out.append(_table(["name", "value"], [[_e(n), _e(_param_value(v, s))] for n, v, s in r.params]) if r.params else "<p>None.</p>")
    out.append("<h2>Steps</h2>")
    rows = []
    for i, s in enumerate(r.steps.values(), 1):
        extra = f": {s.error}" if s.status == "failed" and s.error else (f": {s.reason}" if s.reason else "")
        cls = s.status.split()[0]
        rows.append([str(i), f"{_e(_clean(s.title or s.id))}<br><code>{_e(s.id)}</code>", f"<span class={_e(cls)}>{_e(_clean(s.status + extra))}</span>",
                     str(s.attempts), _e(_dur(s.duration)) if s.timed else "—", _e(_utc(s.started)) if s.started else "—", _e(_utc(s.finished)) if s.finished else "—"])
    out.append(_table(["#", "step", "status", "attempts", "duration", "started (UTC)", "finished (UTC)"], rows))
    out.append("<h2>Confirmations</h2>")
    if r.confirmations:
        crow = []
        for c in r.confirmations:
            what, typed = _confirm_what(c)
            given = "yes" + (f" ({c['how']})" if c.get("how") and c.get("how") != "operator" else "") if c["given"] else f"refused: {c.get('reason', 'operator said no')}"
            crow.append([_e(_utc(c["ts"])), _e(_local(c["ts"])), _e(c["step"]), _e(c["who"]), _e(c.get("level", "")), _e(_clean(given)), f"<code>{_e(what)}</code>", _e(typed)])
        out.append(_table(["UTC", "local", "step", "who", "level", "given", "what", "typed"], crow))
    else:
        out.append("<p>None were needed.</p>")
    out.append("<h2>Skipped steps</h2>")
    out.append(_table(["UTC", "step", "by", "reason"], [[_e(_utc(ts)), _e(sid), _e(by), _e(reason)] for ts, sid, reason, by in r.skips]) if r.skips else "<p>None.</p>")
    out.append("<h2>Failures</h2>")
    out.append(_table(["UTC", "step", "attempt", "error", "retried"], [[_e(_utc(ts)), _e(sid), _e(a or ""), _e(err), "yes" if retry else "no"] for ts, sid, err, a, retry in r.failures]) if r.failures else "<p>None.</p>")
    out.append("<h2>Notes</h2>")
    out.append("<ul>" + "".join(f"<li>{_e(_utc(ts))} UTC ({_e(_local(ts))} local), {_e(who)}: {_e(text)}</li>" for ts, who, text in r.notes) + "</ul>" if r.notes else "<p>None.</p>")
    if r.handovers:
        out.append("<h2>Pauses, resumes and take-overs</h2><ul>")
        out += [f"<li>{_e(_utc(ts))} UTC ({_e(_local(ts))} local), {_e(who)}: {_e(what)}</li>" for ts, who, what in r.handovers]
        out.append("</ul>")
    if r.is_drill or r.drill:
        out.append("<h2>Drill result</h2>")
        if r.drill:
            out.append(_table(["", ""], [[_e(k), _e(_clean(_fmt_value(k, v)))] for k, v in r.drill.items()]))
        else:
            out.append("<p>No drill result was journaled (<code>runbook drill</code> records one after its verification).</p>")
    out.append(f"<h2>Notifications (outbox delivery)</h2><p>{_e(_outbox_summary(r))}</p>")
    if r.notifications:
        out.append(_table(
            ["id", "kind", "channel", "queued (UTC)", "outcome", "delivered (UTC)", "attempts", "last error"],
            [[_e(n.id.rsplit("#", 1)[-1]), _e(n.kind), _e(n.channel), _e(_utc(n.queued)), _e(n.outcome), _e(_utc(n.sent)) if n.sent else "—", str(n.attempts), _e(_clean(n.error or ""))]
             for n in r.notifications.values()],
        ))
    out.append("<h2>Timeline</h2><table><thead><tr><th>UTC</th><th>local</th><th>actor</th><th>step</th><th>event</th></tr></thead><tbody>")
    esc = html.escape
    out += [f"<tr><td>{u}</td><td>{lo}</td><td>{esc(a)}</td><td>{esc(s)}</td><td>{esc(w)}</td></tr>" for u, lo, a, s, w in r.timeline]
    out.append("</tbody></table></body></html>\n")
    return "".join(out)


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
    report = collect(journal, incident)
    return render_html(report) if fmt == "html" else render_markdown(report)
