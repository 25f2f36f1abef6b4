"""A local server that speaks the Slack Web API and incoming-webhook HTTP surface.

No Slack emulator exists, so the sandbox and the tests point the real ``slack_sdk`` clients at
this server (``WebClient(token=..., base_url=server.url)``, ``WebhookClient(server.webhook_url(n))``)
and exercise them end to end. Only what runbook uses is implemented, shaped like Slack's answers:

* ``auth.test``, ``chat.postMessage``, ``chat.update``, ``conversations.list`` under ``/api/``,
  with JSON or form bodies (and query strings), token from ``Authorization: Bearer`` or ``token``.
* Incoming webhooks at ``/services/T.../B.../X...``: ``ok`` / ``invalid_payload`` / ``no_service``.
* Limits that matter: text over 40,000 characters (``msg_too_long``), more than 50 blocks
  (``invalid_blocks``). A ``thread_ts`` that names no message in the channel is refused with
  ``thread_not_found`` -- stricter than Slack, on purpose, so a lost parent is caught in tests.

Every accepted message is kept in memory and, with a state directory, appended to
``slack-messages.jsonl`` (one ``post`` or ``update`` event per line) so another process can see
what was delivered (:func:`read_messages`). Token values are never logged or written: records carry
the token's label and a short SHA-256 fingerprint (:func:`token_fingerprint`).

Faults (``down``, ``status_500``, ``rate_limited``, ``error``, ``slow``), set from Python
(:meth:`SlackServer.set_fault`) or over HTTP (``POST /_control``), apply to ``/api/`` and
``/services/`` requests only, so the control endpoints keep working (see :mod:`.faults`).
``GET /_messages`` and ``GET /_stats`` report what was recorded and how many requests arrived.

Run as a process: ``python -m runbook.sandbox.slack --port 0 --state-dir DIR [--token T]``;
it prints ``listening http://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT.

The package: ``limits`` (parsing and Slack's limits), ``workspace`` (tokens, channels, webhooks),
``state`` (messages), ``faults``, ``api`` (the answers), ``routes`` (the Starlette app), ``server``
(:class:`SlackServer` and ``main``). Starlette and uvicorn are imported when a server starts.
"""

from runbook.sandbox.slack.faults import FAULTS
from runbook.sandbox.slack.limits import MAX_BLOCKS, MAX_TEXT
from runbook.sandbox.slack.server import INFO_FILE, SlackServer, main
from runbook.sandbox.slack.state import MESSAGES_FILE, read_messages
from runbook.sandbox.slack.workspace import (
    DEFAULT_CHANNELS,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOKS,
    token_fingerprint,
    webhook_path,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOKS",
    "FAULTS",
    "INFO_FILE",
    "MAX_BLOCKS",
    "MAX_TEXT",
    "MESSAGES_FILE",
    "SlackServer",
    "main",
    "read_messages",
    "token_fingerprint",
    "webhook_path",
]
