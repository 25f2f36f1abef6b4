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

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.core import incident as S
from runbook.core.durations import describe_seconds
from runbook.core.errors import UsageError
from runbook.core.events import NOTIFICATION_EVENTS, EventType
from runbook.core.redact import MASK, scrub
from runbook.journal.store import Journal
from runbook.playbook.catalog import step_headings
from runbook.reports.timeline import describe_event, local_time

CHART_MAX_STEPS = 200  # the chart stays readable; the steps table lists them all


def clean(text: Any) -> str:
    return scrub(text if isinstance(text, str) else str(text))


@dataclass
class Report:
    """An incident folded by :func:`runbook.core.incident.apply`, plus the timeline rows."""

    incident: str
    state: S.IncidentState
    titles: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # utc, local, actor, step, what

    @property
    def is_drill(self) -> bool:
        return self.state.mode == "drill"

    @property
    def events(self) -> int:
        return self.state.events

    # What the renderers read, derived from the one fold.

    @property
    def opened(self) -> dict[str, Any]:
        st = self.state
        return {
            "playbook": st.playbook_id,
            "title": st.title,
            "tier": st.tier,
            "level": st.level,
            "env": st.env,
            "mode": st.mode,
            "rto": st.rto,
            "rpo": st.rpo,
        }

    @property
    def opened_ts(self) -> str:
        return self.state.opened

    @property
    def last_ts(self) -> str:
        return self.state.last_event.ts if self.state.last_event is not None else ""

    @property
    def operator(self) -> str:
        return self.state.operator

    @property
    def operators(self) -> list[str]:
        return self.state.operators

    @property
    def closed(self) -> dict[str, Any] | None:
        return self.state.closing

    @property
    def closed_ts(self) -> str | None:
        return self.state.closed

    @property
    def drill(self) -> dict[str, Any] | None:
        return self.state.drill or None

    @property
    def params(self) -> list[tuple[str, Any, bool]]:
        return self.state.bound

    @functools.cached_property  # read after the fold is complete, several times
    def steps(self) -> dict[str, _StepView]:
        """Every step of the playbook in its order, then any the journal names beyond it."""
        st = self.state
        ids = [*self.titles, *(sid for sid in st.steps if sid not in self.titles)]
        return {sid: _StepView.of(st.steps.get(sid) or S.StepState(sid), self.titles.get(sid, "")) for sid in ids}

    @functools.cached_property  # read after the fold is complete, several times
    def confirmations(self) -> list[dict[str, Any]]:
        return [
            {
                "ts": ev.ts,
                "step": ev.step or "",
                "who": ev.actor,
                "given": ev.kind == EventType.CONFIRMATION_GIVEN,
                **ev.payload,
            }
            for ev in self.state.confirmations
        ]

    @functools.cached_property  # read after the fold is complete, several times
    def notes(self) -> list[tuple[str, str, str]]:
        return [(ev.ts, ev.actor, clean(ev.payload.get("text", ""))) for ev in self.state.notes]

    @functools.cached_property  # read after the fold is complete, several times
    def skips(self) -> list[tuple[str, str, str, str]]:
        return [
            (
                ev.ts,
                ev.step or "",
                clean(str(ev.payload.get("reason") or "")),
                "engine" if ev.payload.get("by") == "engine" else ev.actor,
            )
            for ev in self.state.skips
        ]

    @functools.cached_property  # read after the fold is complete, several times
    def failures(self) -> list[tuple[str, str, str, Any, bool]]:
        return [
            (
                ev.ts,
                ev.step or "",
                clean(str(ev.payload.get("error") or "")),
                ev.payload.get("attempt"),
                bool(ev.payload.get("will_retry")),
            )
            for ev in self.state.failures
        ]

    @functools.cached_property  # read after the fold is complete, several times
    def handovers(self) -> list[tuple[str, str, str]]:
        return [(ev.ts, ev.actor, clean(describe_event(ev))) for ev in self.state.handovers]

    @property
    def notifications(self) -> dict[str, S.NotificationState]:
        return self.state.notifications


@dataclass(frozen=True)
class _StepView:
    """A step as the report shows it (status words from :attr:`StepState.label`)."""

    id: str
    title: str
    status: str
    attempts: int
    started: str | None  # the first attempt's start
    finished: str | None
    duration: float  # every attempt's
    timed: bool
    error: str | None
    reason: str | None
    spans: list[tuple[str, str]]

    @classmethod
    def of(cls, s: S.StepState, title: str) -> _StepView:
        return cls(
            s.id,
            title,
            s.label,
            s.attempts,
            s.first_started,
            s.finished,
            s.total_duration,
            s.timed,
            s.error,
            s.reason,
            s.spans,
        )


def utc(ts: str) -> str:
    return ts[:19].replace("T", " ")


def seconds_between(a: str, b: str) -> float:
    return max(0.0, (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds())


def dur(v: Any) -> str:
    return describe_seconds(v)


def collect(journal: Journal, incident: str) -> Report:
    """Fold the incident's events into what the report shows (one streaming pass)."""
    r = Report(incident, S.IncidentState(incident))
    for ev in journal.iter_events(incident):
        S.apply(r.state, ev)
        kind = ev.kind
        if kind in NOTIFICATION_EVENTS:
            continue
        if kind == EventType.INCIDENT_OPENED:
            r.titles = {sid: title for sid, (title, _notify) in step_headings(r.state.playbook_text).items()}
        r.timeline.append((utc(ev.ts), local_time(ev.ts), ev.actor, ev.step or "", clean(describe_event(ev))))
    if not r.state.events:
        raise UsageError(f"No incident {incident!r}.")
    return r


def summary_rows(r: Report) -> list[tuple[str, str]]:
    o = r.opened
    status = (r.closed or {}).get("status") or "open (not closed)"
    elapsed = (r.closed or {}).get("elapsed")
    if elapsed is None and r.opened_ts:
        elapsed = seconds_between(r.opened_ts, r.last_ts)
    rto = o.get("rto")
    if rto:
        met = elapsed is not None and float(elapsed) <= float(rto)
        rto_line = f"target {dur(rto)}, achieved {dur(elapsed)} — {'met' if met else 'MISSED'}" + (
            "" if r.closed else " (still open)"
        )
    else:
        rto_line = f"no target; elapsed {dur(elapsed)}"
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
        ("Opened", f"{utc(r.opened_ts)} UTC ({local_time(r.opened_ts)} local)" if r.opened_ts else "—"),
        ("Closed", f"{utc(r.closed_ts)} UTC ({local_time(r.closed_ts)} local)" if r.closed_ts else "not closed"),
        ("Status", str(status) + (f": {r.closed['message']}" if r.closed and r.closed.get("message") else "")),
        ("RTO", rto_line),
        ("RPO", rpo_line(r)),
        ("Steps", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"),
        ("Events", str(r.events)),
    ]
    return [(k, clean(v)) for k, v in rows]


def rpo_line(r: Report) -> str:
    target = r.opened.get("rpo")
    achieved = None
    for key in ("rpo_achieved", "rpo", "data_loss_seconds", "data_loss"):
        if r.drill and isinstance(r.drill.get(key), int | float):
            achieved = float(r.drill[key])
            break
    if target is None and achieved is None:
        return "no target"
    if achieved is None:
        return f"target {dur(target)}; achieved: not measured (assess data loss in the review)"
    met = target is None or achieved <= float(target)
    return f"target {dur(target)}, achieved {dur(achieved)} — {'met' if met else 'MISSED'}"


def param_value(value: Any, secret: bool) -> str:
    if secret:
        return f"{MASK} (secret, never recorded)"
    return clean(repr(value) if not isinstance(value, str) else value)


def outbox_summary(r: Report) -> str:
    ns = r.notifications.values()
    if not r.notifications:
        return "No notifications were queued (Slack not configured for this incident)."
    by: dict[str, int] = {}
    for n in ns:
        by[n.outcome] = by.get(n.outcome, 0) + 1
    return f"{len(r.notifications)} queued: " + ", ".join(f"{v} {k}" for k, v in sorted(by.items()))


def step_status_text(s: _StepView) -> str:
    """``failed: why`` / ``skipped: reason`` / ``done``."""
    extra = f": {s.error}" if s.status == "failed" and s.error else (f": {s.reason}" if s.reason else "")
    return s.status + extra


def confirmation_text(c: dict[str, Any]) -> str:
    if not c["given"]:
        return f"refused: {c.get('reason', 'operator said no')}"
    return "yes" + (f" ({c['how']})" if c.get("how") and c.get("how") != "operator" else "")


def confirm_what(c: dict[str, Any]) -> tuple[str, str]:
    what = str(c.get("action") or c.get("target") or "")
    typed = repr(c["typed"]) if "typed" in c else "—"
    return clean(what), clean(typed)


NOTIFICATION_COLUMNS = ["id", "kind", "channel", "queued (UTC)", "outcome", "delivered (UTC)", "attempts", "last error"]


def notification_cells(n: S.NotificationState) -> list[str]:
    """One notification's cells, in :data:`NOTIFICATION_COLUMNS` order (plain text, scrubbed)."""
    q = n.queued
    sent = utc(n.sent) if n.sent else "—"
    kind, channel = str(q.get("kind", "")), str(q.get("channel", ""))
    error = clean(n.error or "")
    return [n.id.rsplit("#", 1)[-1], kind, channel, utc(n.queued_at), n.outcome, sent, str(n.attempts), error]


CONFIRMATION_COLUMNS = ["UTC", "local", "step", "who", "level", "given", "what", "typed"]


def confirmation_cells(c: dict[str, Any]) -> list[str]:
    """One confirmation's cells, in :data:`CONFIRMATION_COLUMNS` order (plain text, scrubbed)."""
    what, typed = confirm_what(c)
    return [utc(c["ts"]), local_time(c["ts"]), c["step"], c["who"], c.get("level", ""),
            clean(confirmation_text(c)), what, typed]


def fmt_value(key: str, value: Any) -> str:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and any(x in key for x in ("rto", "rpo", "elapsed", "seconds", "duration"))
    ):
        return f"{dur(value)} ({value})"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)[:2000]
    return str(value)
