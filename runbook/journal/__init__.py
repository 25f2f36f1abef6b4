"""The journal: durable, hash-chained events, step logs and incident locks."""

from runbook.journal.store import (
    Event,
    Journal,
    JournalError,
    LockedError,
    LockInfo,
    LostLockError,
    open_journal,
)

__all__ = ["Event", "Journal", "JournalError", "LockedError", "LockInfo", "LostLockError", "open_journal"]
