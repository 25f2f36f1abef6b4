"""The supervisor's socket: accepts clients of the same user and hands their messages to the relay.

The engine runs in the supervisor's main thread; this module only adds an accept thread and one
reader thread per client. A client's death is an end-of-file here and changes nothing else.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.core.errors import RunbookError
from runbook.core.events import EventType
from runbook.core.timestamps import utc_now
from runbook.engine.frontend import Request
from runbook.headless import HeadlessAnswers
from runbook.supervisor import protocol as W
from runbook.supervisor.relay import Connection, Relay

if TYPE_CHECKING:
    from runbook.engine.runner import Engine

HELLO_TIMEOUT = 5.0  # a peer that connects and says nothing is dropped


_CHOICES = {"interrupted": (None, "retry", "done", "skip"), "failed": (None, "retry")}


def answers_from_wire(data: Any) -> HeadlessAnswers | None:
    """A headless command line's answers, each field checked (a wrong one is dropped, never run)."""
    if not isinstance(data, dict):
        return None
    out = HeadlessAnswers()
    for name, default in vars(HeadlessAnswers()).items():
        value = data.get(name, default)
        if name in _CHOICES:
            ok = value in _CHOICES[name]
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, dict):
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        else:
            ok = value is None or isinstance(value, str)
        if ok:
            setattr(out, name, value)
    return out


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


class Server:
    """Serves one incident's clients on ``path`` while its engine runs.

    Args:
        engine: The opened or resumed engine (its front end is ``relay``).
        relay: The engine's front end.
        path: The socket path (its directory is private to the user).
    """

    def __init__(self, engine: Engine, relay: Relay, path: Path) -> None:
        self.engine = engine
        self.relay = relay
        self.path = path
        self.incident = engine.state.id if engine.state is not None else ""
        self.attached = threading.Event()  # someone attached at least once
        self._sock = W.listen(path)
        self._closed = False
        relay.serving = True
        relay.journal_waiting = self._journal_waiting
        relay.on_take_over = self._journal_take_over
        threading.Thread(target=self._accept, name="accept", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        self._sock.close()

    # -- journaling on the relay's behalf ----------------------------------------------------------

    def _journal_waiting(self, request: Request, last_driver: str) -> None:
        payload = {"ask": request.ask.value, "last_driver": last_driver}
        try:
            self.engine.rec.append(EventType.WAITING, payload, step=request.step) if self.engine.rec else None
        except RunbookError:
            pass  # the question still waits; the journal's own error surfaces at the next write

    def _journal_take_over(self, old: Connection, new: Connection) -> None:
        took = {"from": old.label, "from_pid": old.pid, "since": old.since, "to": new.label}
        try:
            self.engine.rec.append(EventType.TAKE_OVER, took) if self.engine.rec else None
        except RunbookError:
            pass

    # -- clients -----------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="client", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        """One client's whole connection; nothing it sends can take the supervisor down."""
        try:
            self._serve_checked(sock)
        except Exception:  # noqa: BLE001 - a broken client is dropped; the log says why
            traceback.print_exc()
            try:
                sock.close()
            except OSError:
                pass

    def _serve_checked(self, sock: socket.socket) -> None:
        try:
            if W.peer_uid(sock) != os.getuid():
                sock.sendall(W.encode("refused", message="Only the user who runs this incident may attach to it."))
                sock.close()
                return
            sock.settimeout(HELLO_TIMEOUT)
            messages = W.LineReader(sock).messages()
            hello = next(messages, None)
            sock.settimeout(None)
        except (OSError, W.ProtocolError, RecursionError):
            sock.close()
            return
        refusal = _bad_hello(hello)
        if refusal is not None or hello is None:
            _refuse(sock, refusal or "No hello.")
            return
        if hello.get("role") == "status":
            _refuse(sock, "", kind="state", **self._state())
            return
        self._session(sock, hello, messages)

    def _session(self, sock: socket.socket, hello: dict[str, Any], messages: Any) -> None:
        conn = Connection(sock, hello)
        role = "drive" if hello.get("role") == "drive" else "watch"
        answers = answers_from_wire(hello.get("answers"))
        since = utc_now().isoformat(timespec="seconds")
        refusal = self.relay.attach(conn, role, bool(hello.get("takeover")), since, answers)
        if refusal is not None:
            conn.send(W.encode("refused", code=1, message=f"Incident {self.incident} {refusal}: watch it with "
                               f"`runbook attach {self.incident} --watch`, or take it over with --take-over."))
            conn.close()
            return
        if role == "drive":
            self.attached.set()
        try:
            for message in messages:
                self._handle(conn, message)
        except (W.ProtocolError, RecursionError):
            pass
        finally:
            self.relay.detach(conn)

    def _handle(self, conn: Connection, message: dict[str, Any]) -> None:
        if not self.relay.drives(conn):
            return  # watchers only watch, and a driver taken over no longer drives
        kind = message.get("t")
        if kind == "decision":
            try:
                decision = W.decision_from_wire(message)
            except W.ProtocolError:
                return
            self.relay.answer(conn, _number(message.get("id")), decision)
        elif kind == "cancel":
            if message.get("step") and message.get("step") == self.relay.running:
                self.engine.cancel_current()
        elif kind == "note":
            try:
                self.engine.add_note(str(message.get("text") or ""))
            except RunbookError as exc:
                conn.send(W.encode("notice", message=str(exc)))

    def _state(self) -> dict[str, Any]:
        driver = self.relay.driver
        return {"pid": os.getpid(), "driver": driver.label if driver is not None else None,
                "waiting": self.relay.waiting_for(), "running": self.relay.running,
                "clients": len(self.relay.clients)}


def _bad_hello(hello: dict[str, Any] | None) -> str | None:
    if hello is None or hello.get("t") != "hello":
        return "The first message must be a hello."
    if hello.get("v") != W.VERSION:
        return (f"This supervisor speaks protocol version {W.VERSION} and the client {hello.get('v')!r}: "
                "attach with the same runbook version that started the incident.")
    return None


def _refuse(sock: socket.socket, message: str, *, kind: str = "refused", **body: Any) -> None:
    try:
        sock.sendall(W.encode(kind, message=message, **body))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
