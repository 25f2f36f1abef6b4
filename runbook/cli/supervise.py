"""``runbook supervise`` (internal): one incident's engine, detached from every terminal.

A front end starts it (:func:`runbook.supervisor.client.start_supervisor`) in a new session and
writes the incident's spec (open or resume, parameters, secrets, standing answers) to its standard
input; it answers one JSON line on standard output (the incident id, or the sentence saying why it
could not open or resume it), then lets go of both and serves clients on the incident's socket
until the run ends. Its standard error is ``run/supervisor.log`` in the runbook home.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from runbook.cli.context import CliContext, pass_ctx
from runbook.cli.root import cli
from runbook.core.errors import RunbookError

FIRST_ATTACH_WAIT = 10.0  # the starting client attaches within this; a detached start does not wait


def _reply(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode("utf-8"))


def _let_go_of_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)


def build(obj: Any, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The engine (opened or resumed), its relay, and its socket server."""
    from runbook.cli.incidents import _attach_notifications, _environment_for, _journaled_playbook
    from runbook.core import incident as S
    from runbook.core.paths import home
    from runbook.engine.runner import Engine
    from runbook.playbook.validate import load
    from runbook.supervisor.protocol import socket_path
    from runbook.supervisor.relay import Relay
    from runbook.supervisor.server import Server, answers_from_wire

    if isinstance(spec.get("actor"), str):  # events are the operator's, whoever's process writes them
        obj.journal.actor = spec["actor"]
    relay = Relay(answers_from_wire(spec.get("answers")), str(spec.get("driver") or "the operator who started it"))
    if spec.get("action") == "open":
        loaded = load(Path(spec["playbook"]))
        env = _environment_for(obj, spec.get("env"), loaded.playbook)
        engine = Engine(obj.journal, relay, home=home(), environment=env)
        _attach_notifications(obj, env, engine)
        engine.open(loaded, dict(spec.get("params") or {}), mode=str(spec.get("mode") or "live"))
    else:
        incident = str(spec.get("incident"))
        st = S.fold(incident, obj.journal.events(incident))
        env = _environment_for(obj, st.env or None, _journaled_playbook(st))
        engine = Engine(obj.journal, relay, home=home(), environment=env)
        _attach_notifications(obj, env, engine)
        engine.resume(incident, take_over=bool(spec.get("takeover")), secrets=dict(spec.get("secrets") or {}))
    assert engine.state is not None
    return engine, relay, Server(engine, relay, socket_path(home(), engine.state.id))


@cli.command("supervise", hidden=True)
@pass_ctx
def supervise(obj: CliContext) -> None:
    """Internal: run one incident's engine for attached clients (started by run, resume and drill)."""
    # No terminal to lose: a stray SIGHUP changes nothing. A handler, not SIG_IGN, because an
    # ignored signal stays ignored in every step command started from here.
    signal.signal(signal.SIGHUP, lambda *_: None)
    try:
        spec = json.loads(sys.stdin.buffer.read() or b"{}")
        engine, relay, server = build(obj, spec)
    except RunbookError as exc:
        from runbook.journal.store import LockedError

        _reply({"ok": False, "error": str(exc), "code": exc.exit_code, "locked": isinstance(exc, LockedError)})
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the client shows one sentence; the log has the rest
        traceback.print_exc()
        _reply({"ok": False, "error": f"Unexpected error ({type(exc).__name__}: {exc}).", "code": 1})
        sys.exit(1)
    _reply({"ok": True, "incident": engine.state.id, "pid": os.getpid()})
    _let_go_of_stdio()
    outcome = serve_until_done(obj, engine, relay, server, detached=bool(spec.get("detached")))
    click.echo(f"{engine.state.id}: {outcome.status.value} {outcome.message}", err=True)


def serve_until_done(obj: Any, engine: Any, relay: Any, server: Any, *, detached: bool) -> Any:
    """Run the engine for its clients until the run ends; tell them how it ended (Slack's line too)."""
    from runbook.notify import flush_and_close

    if not detached:
        server.attached.wait(FIRST_ATTACH_WAIT)  # the client that started it sees it from the start
    try:
        outcome = engine.run()
    finally:
        server.close()
    slack = flush_and_close(getattr(obj, "outbox", None))
    relay.finish(outcome, notices=[slack] if slack else [])
    relay.join_clients()
    return outcome
