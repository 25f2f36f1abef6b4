"""A front end's side of a supervised incident: start its supervisor, attach, relay to a local front end.

:class:`SupervisedEngine` has the engine's interface that front ends use (``run``,
``cancel_current``, ``add_note``), so the TUI and the headless CLI drive an incident the same way
whether its engine is here or in a supervisor; it only adds :meth:`start` and :meth:`attach`.

The supervisor is ``runbook supervise`` in a new session (no controlling terminal, standard
streams not the terminal's): a dropped SSH connection sends SIGHUP to the client only. The
incident's parameters, secrets included, go to it over a pipe, never argv or the environment.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from runbook.core.errors import RunbookError, UsageError
from runbook.core.text import sentence
from runbook.engine.frontend import Frontend, Journaled, OutputLine, StepChanged
from runbook.engine.outcome import Outcome, RunStatus
from runbook.journal.store import Journal, default_actor
from runbook.supervisor import protocol as W

START_TIMEOUT = 300.0  # opening may start local stores first (a cold sandbox takes a while)


class DrivenElsewhere(RunbookError):
    """Someone else drives the incident (its supervisor refused the driving role, or its lock is held)."""

    exit_code = 1


def supervisor_alive(home: Path, incident: str) -> bool:
    """Whether a supervisor answers on the incident's socket."""
    try:
        W.connect(W.socket_path(home, incident), timeout=2.0).close()
    except OSError:
        return False
    return True


def supervisor_state(home: Path, incident: str) -> dict[str, Any] | None:
    """What a live supervisor says about its incident (driver, waiting, running), or None."""
    try:
        sock = W.connect(W.socket_path(home, incident), timeout=2.0)
    except OSError:
        return None
    try:
        sock.settimeout(2.0)
        sock.sendall(W.encode("hello", v=W.VERSION, role="status", who=default_actor(), pid=os.getpid()))
        reply = next(W.LineReader(sock).messages(), None)
    except (OSError, W.ProtocolError):
        return None
    finally:
        sock.close()
    return reply if reply is not None and reply.get("t") == "state" else None


def start_supervisor(spec: dict[str, Any], home: Path, config: str | None, actor: str | None = None) -> dict[str, Any]:
    """Start a supervisor for ``spec`` (open or resume) and wait until its socket listens.

    ``actor`` is who the journal names for what the supervisor writes (the operator's identity).

    Raises:
        RunbookError: The incident could not be opened or resumed (the supervisor's sentence).
    """
    if actor is not None:
        spec = {**spec, "actor": actor}
    argv = [sys.executable, "-m", "runbook"] + (["--config", config] if config else []) + ["supervise"]
    log = W.socket_dir(home) / "supervisor.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    # Secret parameters reach it in the spec; a long-lived process and its steps never get them
    # from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_PARAM_")}
    env["RUNBOOK_HOME"] = str(home)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fd, env=env,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    threading.Thread(target=proc.wait, name="reap-supervisor", daemon=True).start()  # no zombie
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(spec).encode("utf-8"))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    reply = _reply(proc.stdout, log)
    if not reply.get("ok"):
        error = DrivenElsewhere if reply.get("locked") else RunbookError
        raise error(str(reply.get("error")), exit_code=int(reply.get("code") or 1))
    return reply


def _reply(stdout: Any, log: Path) -> dict[str, Any]:
    """The supervisor's one-line answer (within START_TIMEOUT), or a sentence saying it never came."""
    ready, _, _ = select.select([stdout], [], [], START_TIMEOUT)
    line = stdout.readline() if ready else b""
    stdout.close()
    try:
        reply = json.loads(line) if line else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        why = "did not answer in time" if not ready else "stopped before it answered"
        raise RunbookError(f"The incident's supervisor {why}; see {log}.")
    return reply


class SupervisedEngine:
    """A client of one incident's supervisor, with the engine's front-end-facing interface.

    Args:
        frontend: Where events go and who answers questions (the TUI's bridge or the headless printer).
        journal: Read for the history before the attach (same user, same journal).
        home: The runbook home (where the sockets are).
    """

    def __init__(self, frontend: Frontend, journal: Journal, home: Path) -> None:
        self.frontend = frontend
        self.journal = journal
        self.home = home
        self.incident = ""
        self.role = ""
        self.welcome: dict[str, Any] = {}
        self.running: str | None = None  # the step running now, as the supervisor last said
        self.notices: list[str] = []  # what the supervisor said at the end (the Slack outbox line)
        self._sock: Any = None
        self._messages: Any = None
        self._send_lock = threading.Lock()

    # -- attaching -------------------------------------------------------------------------------

    def attach(self, incident: str, *, role: str = "drive", take_over: bool = False, interactive: bool = False,
               answers: dict[str, Any] | None = None, since_n: int | None = None) -> dict[str, Any]:
        """Attach to the incident's supervisor; replay the journal's events after ``since_n`` first.

        The supervisor says which event it had sent last when this client joined, so the history
        read from the journal and the live stream neither overlap nor leave a gap.

        Raises:
            RunbookError: No supervisor answers, or it refused the role (one sentence, exit 2).
        """
        try:
            self._sock = W.connect(W.socket_path(self.home, incident))
        except OSError:
            raise RunbookError(f"Incident {incident} has no live supervisor: resume it with "
                               f"`runbook resume {incident}`.", exit_code=2) from None
        self.incident = incident
        self._messages = W.LineReader(self._sock).messages()
        self._send("hello", v=W.VERSION, role=role, who=default_actor(), pid=os.getpid(),
                   takeover=take_over, interactive=interactive, answers=answers)
        first = next(self._messages, None)
        if first is None or first.get("t") != "welcome":
            self.detach()
            text = first.get("message") if first else "the supervisor closed the connection"
            code = int((first or {}).get("code") or 2)
            raise (DrivenElsewhere if code == 1 else RunbookError)(sentence(str(text)), exit_code=code)
        self.welcome, self.role = first, str(first.get("role"))
        self.running = first.get("running")
        if since_n is not None:
            self._replay(since_n, int(first.get("after_n", -1)))
        return first

    def _replay(self, since_n: int, after_n: int) -> None:
        for ev in self.journal.events(self.incident, after_n=since_n):
            if ev.n <= after_n:
                self.frontend.emit(Journaled(self.incident, ev))
        for line in self.welcome.get("tail") or []:
            self.frontend.emit(OutputLine(self.incident, str(self.welcome.get("tail_step") or ""), line))

    def detach(self) -> None:
        """Let go of the incident (it goes on); a thread reading from the supervisor wakes and ends."""
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # close() alone would leave a blocked recv() waiting
            except OSError:
                pass
            sock.close()

    # -- the engine's interface --------------------------------------------------------------------

    def run(self) -> Outcome:
        """Relay until the incident ends, pauses, or this client stops driving it."""
        try:
            for message in self._messages:
                outcome = self._dispatch(message)
                if outcome is not None:
                    return outcome
        except W.ProtocolError as exc:
            return Outcome(self.incident, RunStatus.FAILED, str(exc))
        finally:
            self.detach()
        return Outcome(self.incident, RunStatus.FAILED,
                       f"The supervisor of incident {self.incident} stopped before the incident ended; "
                       f"resume it with `runbook resume {self.incident}`.")

    def cancel_current(self, step: str | None = None) -> None:
        """Ask the supervisor to stop the running step (the caller confirmed it)."""
        self._send("cancel", step=step or self.running or "")

    def add_note(self, text: str) -> None:
        """Journal a note (checked here first, as the engine would: a bad one is refused with a sentence)."""
        from runbook.playbook import params as P  # pydantic: only when a note is written

        text = P.check_text("note", text.strip(), allow_newlines=True)
        if not text:
            raise UsageError("A note cannot be empty.")
        self._send("note", text=text)

    # -- helpers -----------------------------------------------------------------------------------

    def _send(self, kind: str, **body: Any) -> None:
        data = W.encode(kind, **body)
        with self._send_lock:
            if self._sock is None:
                return
            try:
                self._sock.sendall(data)
            except OSError:
                pass  # the supervisor is gone: run() says so

    def _dispatch(self, message: dict[str, Any]) -> Outcome | None:
        kind = message.get("t")
        if kind == "output":
            self.frontend.emit(OutputLine(self.incident, str(message.get("step")), str(message.get("line"))))
        elif kind == "event":
            self.frontend.emit(Journaled(self.incident, W.event_from_wire(message["event"])))
        elif kind == "status":
            if message.get("status") == "running":
                self.running = str(message.get("step"))
            elif self.running == message.get("step"):
                self.running = None
            self.frontend.emit(StepChanged(self.incident, str(message.get("step")), str(message.get("status"))))
        elif kind == "dropped":
            line = f"… {message.get('lines')} lines not shown here (the step log has them all)"
            self.frontend.emit(OutputLine(self.incident, "", line))
        elif kind == "request":
            threading.Thread(target=self._answer, args=(message,), name="decide", daemon=True).start()
        elif kind == "role" and message.get("role") == "watch":
            return Outcome(self.incident, RunStatus.TAKEN_OVER,
                           f"Incident {self.incident} was taken over by {message.get('by')}; this session stops "
                           "driving it.")
        elif kind == "outcome":
            self.notices = [str(n) for n in message.get("notices") or []]
            return Outcome(self.incident, RunStatus(str(message.get("status"))), str(message.get("message") or ""))
        return None

    def _answer(self, message: dict[str, Any]) -> None:
        request = W.request_from_wire(message["request"])
        decision = self.frontend.decide(request)
        self._send("decision", id=message.get("id"), **W.decision_to_wire(decision))
