"""Slack messages: Block Kit builders, Slack's size limits, and the incident's parent message.

Everything here is pure and cheap, so composing a message on the operator's path costs
microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Slack's limits (https://api.slack.com/methods/chat.postMessage, Block Kit reference).
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION = 3_000
MAX_HEADER = 150
MAX_FIELD = 2_000
# Headroom under MAX_TEXT for the "[DRILL]" prefix and the "(part i/n)" note.
TEXT_CHUNK = 39_000
MAX_PARTS = 5  # beyond this a long message is truncated: the full text stays in the journal


def mrkdwn_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves (also defuses ``<!channel>`` pings)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    from runbook.core.durations import format_duration

    return format_duration(seconds)


def _clip(text: str, limit: int, note: str = "… (truncated)") -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(note))] + note


def header_block(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER, "…"), "emoji": True}}


def section_block(mrkdwn: str) -> dict[str, Any]:
    """A section; text over Slack's 3,000 characters is split later by :func:`fit_message`."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def fields_block(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    # Slack allows 10 fields of up to 2,000 characters each.
    fields = [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", MAX_FIELD)} for k, v in pairs[:10]]
    return {"type": "section", "fields": fields}


def context_block(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(mrkdwn, MAX_SECTION)}]}


@dataclass
class IncidentInfo:
    """What the parent message shows; kept current by the outbox from journal events."""

    incident: str
    title: str = ""
    playbook: str = ""
    tier: str = ""
    level: int | None = None
    env: str = ""
    mode: str = ""
    operator: str = ""
    rto: float | None = None
    rpo: float | None = None
    opened: str = ""
    status: str = "running"
    done: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    elapsed: float | None = None
    rto_met: bool | None = None

    @property
    def drill(self) -> bool:
        return self.mode == "drill"

    def prefix(self) -> str:
        return "[DRILL] " if self.drill else ""


def parent_message(info: IncidentInfo, *, via: str = "api") -> tuple[str, list[dict[str, Any]]]:
    """The incident's parent message: title, tier/level, environment, mode, operator, RTO, id, status."""
    e = mrkdwn_escape
    tier = info.tier + (f" · level {info.level}" if info.level else "")
    progress = f"{info.done}/{info.total} steps done" if info.total else f"{info.done} steps done"
    if info.failed:
        progress += f", {info.failed} failed"
    if info.skipped:
        progress += f", {info.skipped} skipped"
    status = info.status
    if info.elapsed is not None:
        status += f" after {_fmt_duration(info.elapsed)}"
        if info.rto is not None:
            status += f" (RTO {_fmt_duration(info.rto)} {'met' if info.rto_met else 'missed'})"
    blocks = [
        header_block(f"{info.prefix()}{'Drill' if info.drill else 'Incident'}: {info.title or info.playbook}"),
        fields_block(
            [
                ("Tier", e(tier or "—")),
                ("Environment", e(info.env or "—")),
                ("Mode", e(info.mode or "—")),
                ("Operator", e(info.operator or "—")),
                ("RTO target", _fmt_duration(info.rto)),
                ("RPO target", _fmt_duration(info.rpo)),
                ("Incident", f"`{e(info.incident)}`"),
                ("Playbook", f"`{e(info.playbook)}`"),
            ]
        ),
        section_block(f"*Status:* {e(status)} — {e(progress)}"),
    ]
    note = "Follow-ups are in this message's thread."
    if via == "webhook":
        note = (
            "Posted through an incoming webhook: no thread and no status updates are possible, so "
            f"follow-ups are separate messages tagged `{e(info.incident)}`."
        )
    blocks.append(context_block(f"runbook · {note}"))
    # The fallback text is mrkdwn too (notifications, clients without blocks): escaped like the blocks.
    text = e(f"{info.prefix()}{info.title or info.playbook} — {info.env}, {info.mode} — {status} ({info.incident})")
    return text, blocks


def reply_message(
    info: IncidentInfo, emoji: str, headline: str, detail: str = "", *, via: str = "api"
) -> tuple[str, list[dict[str, Any]]]:
    """A thread reply (or, in webhook mode, a separate message tagged with the incident id)."""
    tag = "" if via == "api" else f"[{info.incident}] "
    head = f"{info.prefix()}{tag}{headline}"
    blocks = [section_block(f"{emoji} {mrkdwn_escape(head)}")]
    if detail:
        blocks.append(section_block(mrkdwn_escape(detail)))
    # The fallback text is mrkdwn too: `<!channel>` from step output must not ping anybody.
    text = mrkdwn_escape(head + (f"\n{detail}" if detail else ""))
    return text, blocks


def fit_message(text: str, blocks: list[dict[str, Any]] | None) -> list[tuple[str, list[dict[str, Any]] | None]]:
    """Split or truncate a message so each part is within Slack's limits.

    ``text`` is mrkdwn, already escaped (every message's fallback text is).

    Sections over 3,000 characters are split into several sections; more than 50 blocks are
    cut to 49 plus a note; text over 40,000 characters is split into up to five messages, the
    rest truncated with a note (the full text is in the journal's ``notification_queued``).

    Returns:
        One ``(text, blocks)`` per message to post, in order.
    """
    out_blocks: list[dict[str, Any]] | None = None
    if blocks is not None:
        out_blocks = []
        for b in blocks:
            t = b.get("text") if b.get("type") == "section" else None
            if isinstance(t, dict) and len(t.get("text", "")) > MAX_SECTION:
                body = t["text"]
                for i in range(0, len(body), MAX_SECTION):
                    out_blocks.append(
                        {
                            "type": "section",
                            "text": {"type": t.get("type", "mrkdwn"), "text": body[i : i + MAX_SECTION]},
                        }
                    )
            else:
                out_blocks.append(b)
        if len(out_blocks) > MAX_BLOCKS:
            dropped = len(out_blocks) - (MAX_BLOCKS - 1)
            out_blocks = out_blocks[: MAX_BLOCKS - 1] + [
                context_block(
                    f"… {dropped} more blocks not shown (Slack allows {MAX_BLOCKS}); "
                    "the full message is in the incident journal."
                )
            ]
    if len(text) <= MAX_TEXT:
        return [(text, out_blocks)]
    chunks = [text[i : i + TEXT_CHUNK] for i in range(0, len(text), TEXT_CHUNK)]
    truncated = 0
    if len(chunks) > MAX_PARTS:
        truncated = sum(len(c) for c in chunks[MAX_PARTS:])
        chunks = chunks[:MAX_PARTS]
    n = len(chunks)
    parts: list[tuple[str, list[dict[str, Any]] | None]] = []
    for i, chunk in enumerate(chunks, 1):
        note = f"\n(part {i}/{n})"
        if i == n and truncated:
            note += (
                f" … {truncated} more characters not sent (Slack's limit); the full text is in the incident journal."
            )
        # Blocks (if any) carry a summary on the first part only; later parts are plain text.
        parts.append((chunk + note, (out_blocks if i == 1 else None)))
    if out_blocks is not None:
        # Blocks repeat the text: keep them within limits by showing an excerpt on part 1.
        excerpt = [section_block(_clip(text, MAX_SECTION, f"… (continued in {n} parts)"))]  # text is escaped
        parts[0] = (parts[0][0], excerpt)
    return parts


# -- transport -------------------------------------------------------------------------------------
