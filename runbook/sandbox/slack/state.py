"""The Slack stand-in's messages: kept in memory and, with a state directory, in a JSON-lines file.

Every accepted message is appended to ``slack-messages.jsonl`` (one ``post`` or ``update`` event
per line) so another process can see what was delivered (:func:`read_messages`), and a restarted
server loads them, so it can still update them and keeps ``ts`` increasing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from runbook.sandbox.slack.limits import ApiError

MESSAGES_FILE = "slack-messages.jsonl"

Record = dict[str, Any]


def read_messages(state: str | Path) -> list[Record]:
    """Fold a server's ``slack-messages.jsonl`` into the current messages, in posting order.

    Meant for a process other than the server's; a half-written last line is ignored.

    Args:
        state: The server's state directory, or the JSON-lines file itself.

    Returns:
        One record per message (its latest version), oldest first.
    """
    path = Path(state)
    if path.is_dir():
        path = path / MESSAGES_FILE
    if not path.exists():
        return []
    messages: dict[tuple[str, str], Record] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # torn write from a concurrent append
        record = {k: v for k, v in event.items() if k != "event"}
        messages[(record["channel"], record["ts"])] = record
    return list(messages.values())


class MessageStore:
    """Accepted messages by ``(channel id, ts)``, behind one lock.

    Args:
        state_dir: Where ``slack-messages.jsonl`` lives (loaded now); in memory only when None.
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self.lock = threading.Lock()
        self._messages: dict[tuple[str, str], Record] = {}
        self._last_ts_us = 0
        if state_dir is not None:
            for record in read_messages(state_dir):
                self._messages[(record["channel"], record["ts"])] = record
                sec, _, frac = record["ts"].partition(".")
                self._last_ts_us = max(self._last_ts_us, int(sec) * 1_000_000 + int(frac or 0))

    def messages(self, channel_id: str | None = None) -> list[Record]:
        """Copies of the messages (in ``channel_id`` only, when given), oldest first."""
        with self.lock:
            return [
                json.loads(json.dumps(m))  # deep copy, and proof that it is JSON-clean
                for m in self._messages.values()
                if channel_id is None or m["channel"] == channel_id
            ]

    def thread_root(self, channel_id: str, thread_ts: Any) -> str | None:
        """The root ts of the thread ``thread_ts`` names; ``thread_not_found`` if none does."""
        if thread_ts in (None, ""):
            return None
        with self.lock:
            parent = self._messages.get((channel_id, str(thread_ts)))
        if parent is None:
            raise ApiError("thread_not_found")
        # A reply to a reply lands in the root's thread, as in Slack.
        return parent["thread_ts"] or parent["ts"]

    def _next_ts_locked(self) -> str:
        # Microseconds since the epoch, forced strictly increasing: unique and ordered like Slack's.
        us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        self._last_ts_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def post(self, channel_id: str, channel_name: str, fields: Record) -> Record:
        """Store a new message; returns a copy of its record, with its new ``ts``."""
        with self.lock:
            record = {
                "channel": channel_id,
                "channel_name": channel_name,
                "ts": self._next_ts_locked(),
                **fields,
            }
            self._messages[(channel_id, record["ts"])] = record
            self._append_locked("post", record)
            return dict(record)

    def update(self, channel_id: str, ts: str, changes: dict[str, Any]) -> Record:
        """Apply ``chat.update``: fields given as None keep their value; returns a copy."""
        with self.lock:
            record = self._messages.get((channel_id, ts))
            if record is None:
                raise ApiError("message_not_found")
            # Fields left out keep their previous value, as chat.update documents for blocks.
            record.update({k: v for k, v in changes.items() if v is not None})
            record["edited"] += 1
            record["edited_ts"] = self._next_ts_locked()
            self._append_locked("update", record)
            return json.loads(json.dumps(record))

    def _append_locked(self, event: str, record: Record) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / MESSAGES_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, **record}) + "\n")
