"""Former home of the Slack stand-in, now the package :mod:`runbook.sandbox.slack`.

Kept so that code importing ``runbook.sandbox.slack_server`` (or running it with ``python -m``)
keeps working until it moves to the package.
"""

import sys

from runbook.sandbox.slack import (
    DEFAULT_CHANNELS,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOKS,
    FAULTS,
    INFO_FILE,
    MAX_BLOCKS,
    MAX_TEXT,
    MESSAGES_FILE,
    SlackServer,
    main,
    read_messages,
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

if __name__ == "__main__":
    sys.exit(main())
