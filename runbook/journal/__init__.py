"""The journal: durable, hash-chained events, step logs and incident locks."""

from runbook.core.events import Event
from runbook.journal.store import (
    Journal,
    JournalError,
    LockedError,
    LockInfo,
    LostLockError,
    open_journal,
)

__all__ = ["Event", "Journal", "JournalError", "LockedError", "LockInfo", "LostLockError", "open_journal"]
