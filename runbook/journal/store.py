"""The journal: a durable, append-only, hash-chained record of every incident's events.

SQLite in WAL mode with ``synchronous=FULL``: :meth:`Journal.append` returns only after the event
is committed to disk, so anything a front end shows as done survives a crash or a SIGKILL. Each
event carries the hash of the previous event of the same incident; :meth:`Journal.verify`
recomputes the chain and names the first event that does not match.

The files are created 0600 inside a 0700 directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.core.errors import RunbookError
from runbook.core.events import Event, EventType
from runbook.core.paths import private_dir, tighten
from runbook.core.procs import pid_alive

GENESIS = "0" * 64
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident TEXT NOT NULL,
    n INTEGER NOT NULL,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    step TEXT,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (incident, n)
);
CREATE INDEX IF NOT EXISTS events_type ON events (type, incident);
CREATE TABLE IF NOT EXISTS locks (
    incident TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since TEXT NOT NULL,
    token TEXT NOT NULL
);
"""


class JournalError(RunbookError):
    """The journal cannot be read or written (disk full, permissions, corruption)."""


class LockedError(RunbookError):
    """Another live process drives this incident."""

    exit_code = 1

    def __init__(self, incident: str, holder: str, pid: int, since: str) -> None:
        super().__init__(
            f"Incident {incident} is being driven by {holder} (pid {pid}) since {since}; "
            "open it read-only, or take it over with --take-over."
        )
        self.holder = holder
        self.pid = pid
        self.since = since


class LostLockError(JournalError):
    """Someone took this incident over while we were driving it."""


@dataclass(frozen=True)
class LockInfo:
    incident: str
    holder: str
    host: str
    pid: int
    since: str
    token: str

    def alive(self) -> bool:
        """False when the holder is a dead process on this host (a stale lock)."""
        if self.host != socket.gethostname():
            return True  # cannot tell from here: treat as alive
        return pid_alive(self.pid)


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(
    incident: str, n: int, ts: str, actor: str, step: str | None, type_: str, payload: str, prev: str
) -> str:
    material = json.dumps(
        [incident, n, ts, actor, step, type_, payload, prev], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _disk_message(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "full" in text:
        return f"The journal at {path} could not be written: the disk is full. Free space, then resume the incident."
    if "readonly" in text or "read-only" in text:
        return f"The journal at {path} is read-only: check the file's permissions."
    if "locked" in text or "busy" in text:
        return f"The journal at {path} is busy: another runbook process holds it too long; try again."
    if "malformed" in text or "not a database" in text:
        return (
            f"The journal at {path} is damaged ({text}) and `runbook verify` cannot read it either: keep it, move it "
            f"aside (mv {path} {path}.damaged; the next start begins a new journal), and salvage its events with "
            f"`sqlite3 {path}.damaged .recover | sqlite3 {path}.recovered`."
        )
    return f"The journal at {path} could not be used: {text}."


class Journal:
    """Append-only event store. Thread-safe; one instance per process is enough."""

    def __init__(self, path: Path, *, actor: str | None = None) -> None:
        self.path = Path(path)
        self.actor = actor or default_actor()
        self._lock = threading.RLock()
        self._tokens: dict[str, str] = {}
        self._listeners: list[Any] = []
        private_dir(self.path.parent)
        try:
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            tighten(self.path)
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # The schema is created once; user_version marks it (saves a script run per start-up).
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except sqlite3.Error as exc:
            raise JournalError(_disk_message(exc, self.path)) from None
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists() and (p.stat().st_mode & 0o077):
                try:
                    os.chmod(p, 0o600)
                except OSError:
                    pass

    # -- writing ------------------------------------------------------------------------------

    def append(
        self,
        incident: str,
        type_: EventType | str,
        payload: Mapping[str, Any] | None = None,
        *,
        step: str | None = None,
        actor: str | None = None,
    ) -> Event:
        """Durably append one event and return it (committed to disk when this returns).

        Raises:
            LostLockError: Another process took the incident over.
            JournalError: The disk is full or the journal cannot be written.
        """
        return self.append_many(incident, [(type_, payload, step)], actor=actor)[0]

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the caller holds ``self._lock``): committed when the block ends,
        rolled back on any error; a SQLite error becomes one sentence (the disk may be full)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise JournalError(_disk_message(exc, self.path)) from None

    def _check_token(self, db: sqlite3.Connection, incident: str) -> None:
        """Raise LostLockError when someone took over an incident this process had locked."""
        token = self._tokens.get(incident)
        if token is None:
            return
        row = db.execute("SELECT token, holder, pid FROM locks WHERE incident=?", (incident,)).fetchone()
        if row is None or row[0] != token:
            holder = f"{row[1]} (pid {row[2]})" if row else "nobody"
            self._tokens.pop(incident, None)
            raise LostLockError(f"Incident {incident} was taken over by {holder}; this session stops here.")

    def append_many(
        self,
        incident: str,
        items: Sequence[tuple[EventType | str, Mapping[str, Any] | None, str | None]],
        *,
        actor: str | None = None,
        durable: bool = True,
    ) -> list[Event]:
        """Durably append several events (type, payload, step) in one transaction: after a crash
        the journal holds all of them or none (an incident is never half opened).

        ``durable=False`` commits without waiting for the disk (SQLite's ``synchronous=NORMAL``
        in WAL mode): the events survive this process dying, not the machine losing power. For
        facts only a living machine needs (which process a step started), where the fsync would
        cost more than the step.

        Raises:
            LostLockError: Another process took the incident over.
            JournalError: The disk is full or the journal cannot be written.
        """
        who = actor or self.actor
        written: list[tuple[int, int, str, str | None, str, str, str, str]] = []
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._write() as db:
                    self._check_token(db, incident)
                    last = db.execute(
                        "SELECT n, hash FROM events WHERE incident=? ORDER BY n DESC LIMIT 1", (incident,)
                    ).fetchone()
                    n, prev = (last[0] + 1, last[1]) if last else (0, GENESIS)
                    for kind, payload, step in items:
                        type_ = str(kind)  # an EventType is stored as its value
                        body = canonical(dict(payload or {}))
                        ts = utc_now()
                        digest = chain_hash(incident, n, ts, who, step, type_, body, prev)
                        cur = db.execute(
                            "INSERT INTO events (incident, n, ts, actor, step, type, payload, prev, hash) "
                            "VALUES (?,?,?,?,?,?,?,?,?)",
                            (incident, n, ts, who, step, type_, body, prev, digest),
                        )
                        written.append((int(cur.lastrowid or 0), n, ts, step, type_, body, prev, digest))
                        n, prev = n + 1, digest
            except UnicodeError:
                raise JournalError("An event could not be journaled: it holds text that is not valid UTF-8.") from None
            finally:
                if not durable:
                    with contextlib.suppress(sqlite3.Error):  # the original error (a full disk) matters more
                        self._db.execute("PRAGMA synchronous=FULL")
        events = [
            Event(seq, incident, n, ts, who, step, type_, json.loads(body), prev, digest)
            for seq, n, ts, step, type_, body, prev, digest in written
        ]
        for event in events:
            for listener in list(self._listeners):
                listener(event)
        return events

    def subscribe(self, listener: Any) -> None:
        """Call ``listener(event)`` after each append by this process (e.g. the Slack outbox)."""
        self._listeners.append(listener)

    # -- reading ------------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(_disk_message(exc, self.path)) from None

    @staticmethod
    def _event(row: tuple[Any, ...]) -> Event:
        seq, incident, n, ts, actor, step, type_, payload, prev, digest = row
        try:
            data = json.loads(payload)
        except ValueError:
            data = {"_unparseable": payload}
        return Event(seq, incident, n, ts, actor, step, type_, data, prev, digest)

    def events(self, incident: str, *, after_n: int = -1) -> list[Event]:
        rows = self._rows(
            "SELECT seq, incident, n, ts, actor, step, type, payload, prev, hash FROM events "
            "WHERE incident=? AND n>? ORDER BY n",
            (incident, after_n),
        )
        return [self._event(r) for r in rows]

    def iter_events(self, incident: str, batch: int = 5000) -> Iterator[Event]:
        after = -1
        while True:
            chunk = self.events_page(incident, after, batch)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1].n

    def events_page(self, incident: str, after_n: int, limit: int) -> list[Event]:
        rows = self._rows(
            "SELECT seq, incident, n, ts, actor, step, type, payload, prev, hash FROM events "
            "WHERE incident=? AND n>? ORDER BY n LIMIT ?",
            (incident, after_n, limit),
        )
        return [self._event(r) for r in rows]

    def events_of_type(self, kind: EventType | str) -> list[Event]:
        rows = self._rows(
            "SELECT seq, incident, n, ts, actor, step, type, payload, prev, hash FROM events WHERE type=? ORDER BY seq",
            (str(kind),),
        )
        return [self._event(r) for r in rows]

    def incidents(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT incident FROM events WHERE n=0 ORDER BY seq DESC", ())]

    def find_incident(self, prefix: str) -> str:
        """Resolve an incident id or a unique prefix of one.

        Raises:
            RunbookError: No such incident, or the prefix is ambiguous.
        """
        if self._rows("SELECT 1 FROM events WHERE incident=? AND n=0", (prefix,)):
            return prefix
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows("SELECT incident FROM events WHERE n=0 AND incident LIKE ? ESCAPE '\\'", (like,))
        if len(rows) == 1:
            return str(rows[0][0])
        if not rows:
            raise RunbookError(f"No incident {prefix!r}: run `runbook incidents` to see them.", exit_code=2)
        raise RunbookError(f"{prefix!r} matches {len(rows)} incidents; give more of the id.", exit_code=2)

    def verify(self, incident: str) -> tuple[int, Event | None, str]:
        """Recompute the chain. Returns (events checked, first bad event or None, reason)."""
        prev = GENESIS
        expected_n = 0
        count = 0
        for event in self.iter_events_raw(incident):
            seq, inc, n, ts, actor, step, type_, payload, stored_prev, digest = event
            ev = self._event(event)
            if n != expected_n:
                return count, ev, f"event {expected_n} is missing"
            if stored_prev != prev:
                return count, ev, "it does not link to the previous event"
            if chain_hash(inc, n, ts, actor, step, type_, payload, stored_prev) != digest:
                return count, ev, "its content does not match its hash"
            prev = digest
            expected_n += 1
            count += 1
        return count, None, ""

    def iter_events_raw(self, incident: str, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        after = -1
        while True:
            rows = self._rows(
                "SELECT seq, incident, n, ts, actor, step, type, payload, prev, hash FROM events "
                "WHERE incident=? AND n>? ORDER BY n LIMIT ?",
                (incident, after, batch),
            )
            if not rows:
                return
            yield from rows
            after = rows[-1][2]

    # -- locks --------------------------------------------------------------------------------

    def lock_info(self, incident: str) -> LockInfo | None:
        rows = self._rows("SELECT incident, holder, host, pid, since, token FROM locks WHERE incident=?", (incident,))
        return LockInfo(*rows[0]) if rows else None

    def acquire(self, incident: str, *, take_over: bool = False) -> LockInfo | None:
        """Lock ``incident`` to this process.

        Returns the previous holder when the lock was taken from a live process (take-over) or
        a dead one (stale), else None.

        Raises:
            LockedError: Another live process holds it and ``take_over`` is false.
        """
        token = uuid.uuid4().hex
        host = socket.gethostname()
        with self._lock:
            with self._write() as db:
                row = db.execute(
                    "SELECT incident, holder, host, pid, since, token FROM locks WHERE incident=?", (incident,)
                ).fetchone()
                previous = LockInfo(*row) if row else None
                mine = previous is not None and previous.token == self._tokens.get(incident)
                if previous is not None and not mine and previous.alive() and not take_over:
                    raise LockedError(incident, previous.holder, previous.pid, previous.since)
                db.execute(
                    "INSERT OR REPLACE INTO locks (incident, holder, host, pid, since, token) VALUES (?,?,?,?,?,?)",
                    (incident, self.actor, host, os.getpid(), utc_now(), token),
                )
            self._tokens[incident] = token
        return None if (previous is None or mine) else previous

    def release(self, incident: str) -> None:
        with self._lock:
            token = self._tokens.pop(incident, None)
            if token is None:
                return
            try:
                self._db.execute("DELETE FROM locks WHERE incident=? AND token=?", (incident, token))
            except sqlite3.Error:
                pass  # a stale lock is recognised by its dead pid later

    def holds(self, incident: str) -> bool:
        return incident in self._tokens

    def close(self) -> None:
        with self._lock:
            for incident in list(self._tokens):
                self.release(incident)
            self._db.close()


def open_journal(home: Path | None = None) -> Journal:
    from runbook.core.paths import home as state_home

    base = home or state_home()
    return Journal(base / "journal.sqlite3")
