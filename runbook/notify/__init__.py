"""Notifications: Slack through a journal-backed outbox.

``attach(journal, config, environment)`` wires the outbox to a journal (it hears every event this
process appends) and starts its sender; :func:`cli_hook` is what the command line calls for
``run``/``resume``: attach, deliver what earlier processes left queued, and at exit wait a few
seconds for delivery before leaving the rest for the next process.

Importing this package is cheap: slack_sdk is loaded by the sender on its first delivery.
"""

from __future__ import annotations

import atexit
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from runbook.notify.outbox import Outbox
from runbook.notify.settings import SlackSettings, settings_from

if TYPE_CHECKING:
    from runbook.core.environment import Environment
    from runbook.journal.store import Journal
    from runbook.stores.config import Config

__all__ = ["Outbox", "SlackSettings", "attach", "cli_hook", "detach", "settings_from"]


def attach(
    journal: Journal, config: Config | None, environment: Environment | None, *, transport: Any = None
) -> Outbox | None:
    """Attach a new Slack outbox to ``journal`` and start its sender.

    Settings come from the environment's ``slack`` store, falling back to ``[notify.slack]``.
    The caller keeps the outbox (and hands it to the engine as a service); attach once per
    journal and process, or messages are queued twice.

    Args:
        journal: The process's journal.
        config: The loaded ``runbook.toml`` (or None).
        environment: The incident's environment.
        transport: Replaces the Slack transport (tests).

    Returns:
        The outbox, or None when Slack is not configured.
    """
    settings = settings_from(config, environment)
    if settings is None:
        return None
    secrets = environment.secret_values() if environment is not None else []
    outbox = Outbox(journal, settings, transport=transport, secrets=secrets)
    journal.subscribe(outbox.on_event)
    outbox.start()
    return outbox


def detach(outbox: Outbox | None) -> None:
    """Stop an outbox; its queue stays in the journal for the next process."""
    if outbox is not None:
        outbox.close()


def cli_hook(obj: Any, environment: Environment | None, engine: Any = None) -> Outbox | None:
    """Wire notifications into ``runbook run``/``resume`` (call before ``engine.open``/``resume``).

    Attaches the outbox (once per front-end context ``obj``: it is kept as ``obj.outbox``), queues
    (in the background) what earlier processes left undelivered, shares the engine's redactor
    (secret param values), hands the outbox to the engine as its message service and, at exit,
    waits up to ``flush_seconds`` for delivery, then prints one line about the outbox on stderr.

    Args:
        obj: The front end's context (``obj.journal``, ``obj.config``; ``obj.outbox`` is set).
        environment: The incident's environment.
        engine: The engine: its redactor masks secret params in messages too, and it gets the outbox.

    Returns:
        The outbox, or None when Slack is not configured.
    """
    outbox: Outbox | None = getattr(obj, "outbox", None)
    if outbox is None or outbox.closed:
        outbox = attach(obj.journal, obj.config, environment)
        if outbox is None:
            return None
        obj.outbox = outbox
        atexit.register(_at_exit, outbox)
    if engine is not None:
        if getattr(engine, "redactor", None) is not None:
            outbox.use_redactor(engine.redactor)
        engine.services = dataclasses.replace(engine.services, messages=outbox)
    outbox.resume_pending_in_background()
    return outbox


def _at_exit(outbox: Outbox) -> None:
    line = flush_and_close(outbox)
    if line is not None:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()


def flush_and_close(outbox: Outbox | None) -> str | None:
    """Wait up to ``flush_seconds`` for delivery, stop the sender and say how it went (``slack: …``).

    A supervisor calls it when its run ends, so the attached client can print the line.
    """
    if outbox is None or outbox.closed:
        return None
    try:
        line = f"slack: {outbox.flush(outbox.settings.flush_seconds)}"
        outbox.close()
    except Exception:  # noqa: BLE001 - exiting anyway; the queue is in the journal
        return None
    return line
