"""Notifications: Slack through a journal-backed outbox.

``attach(journal, config, environment)`` wires the outbox to a journal (it hears every event this
process appends) and starts its sender; :func:`cli_hook` is what the command line calls for
``run``/``resume``: attach, deliver what earlier processes left queued, and at exit wait a few
seconds for delivery before leaving the rest for the next process.

Importing this package is cheap: slack_sdk is loaded by the sender on its first delivery.
"""

from __future__ import annotations

import atexit
import sys
import threading
from typing import TYPE_CHECKING, Any

from runbook.notify.outbox import Outbox
from runbook.notify.slack import SlackSettings, settings_from

if TYPE_CHECKING:
    from runbook.core.environment import Environment
    from runbook.journal.store import Journal
    from runbook.stores.config import Config

__all__ = ["Outbox", "SlackSettings", "attach", "cli_hook", "current_outbox", "settings_from"]

_current: Outbox | None = None
_by_journal: dict[int, Outbox] = {}
_lock = threading.Lock()


def attach(journal: Journal, config: Config | None, environment: Environment | None, *, transport: Any = None) -> Outbox | None:
    """Attach a Slack outbox to ``journal`` and start its sender.

    Settings come from the environment's ``slack`` store, falling back to ``[notify.slack]``.
    Attaching twice to the same journal returns the outbox already attached.

    Args:
        journal: The process's journal.
        config: The loaded ``runbook.toml`` (or None).
        environment: The incident's environment.
        transport: Replaces the Slack transport (tests).

    Returns:
        The outbox, or None when Slack is not configured.
    """
    global _current
    settings = settings_from(config, environment)
    if settings is None:
        return None
    with _lock:
        existing = _by_journal.get(id(journal))
        if existing is not None and not existing._closed:
            _current = existing
            return existing
        secrets = environment.secret_values() if environment is not None else []
        outbox = Outbox(journal, settings, transport=transport, secrets=secrets)
        journal.subscribe(outbox.on_event)
        outbox.start()
        _by_journal[id(journal)] = outbox
        _current = outbox
        return outbox


def current_outbox() -> Outbox | None:
    """The outbox attached in this process (for the ``notify.slack`` action), or None."""
    return _current if _current is not None and not _current._closed else None


def detach(outbox: Outbox | None = None) -> None:
    """Stop an outbox (default: the current one); its queue stays in the journal."""
    global _current
    target = outbox or _current
    if target is None:
        return
    target.close()
    with _lock:
        for key, value in list(_by_journal.items()):
            if value is target:
                del _by_journal[key]
        if _current is target:
            _current = None


def cli_hook(obj: Any, environment: Environment | None, engine: Any = None) -> Outbox | None:
    """Wire notifications into ``runbook run``/``resume`` (call before ``engine.open``/``resume``).

    Attaches the outbox, queues (in the background) what earlier processes left undelivered, shares the engine's
    redactor (secret param values) and, at exit, waits up to ``flush_seconds`` for delivery,
    then prints one line about the outbox on stderr.

    Args:
        obj: The CLI context (``obj.journal``, ``obj.config``).
        environment: The incident's environment.
        engine: The engine, so its redactor masks secret params in messages too.

    Returns:
        The outbox, or None when Slack is not configured.
    """
    outbox = attach(obj.journal, obj.config, environment)
    if outbox is None:
        return None
    if engine is not None and getattr(engine, "redactor", None) is not None:
        outbox.use_redactor(engine.redactor)
    outbox.resume_pending_in_background()
    atexit.register(_at_exit, outbox)
    return outbox


def _at_exit(outbox: Outbox) -> None:
    if outbox._closed:
        return
    try:
        line = outbox.flush(outbox.settings.flush_seconds)
        sys.stderr.write(f"slack: {line}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110 - exiting anyway; the queue is in the journal
        pass
