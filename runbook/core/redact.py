"""Secrets never reach the journal, the step logs, the screen or an export."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "••••••"
# Credentials that show up in command output even when nobody declared them secret.
_PATTERNS = [
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s]+)(@)"),  # scheme://user:password@host
    re.compile(r"(?i)([A-Za-z_]*(?:password|passwd)\s*[=:]\s*)(\S+)"),  # PGPASSWORD=…, password: …
    re.compile(r"\b(xox[abprs]-)[A-Za-z0-9-]{8,}"),
]


_VERBATIM = {"playbook_text"}


class Redactor:
    """Replaces every known secret value, and credential-looking patterns, with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._re: re.Pattern[str] | None = None
        for s in secrets:
            self.add(s)

    def add(self, secret: object) -> None:
        if secret is None or isinstance(secret, bool):
            return
        secret = str(secret)  # an int PIN is a secret too
        if len(secret) < 3 or secret in self._secrets:
            return
        self._secrets.append(secret)
        # Longest first so a secret that contains another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(s) for s in ordered))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str, *, patterns: bool = True) -> str:
        if self._re is not None and value:
            value = self._re.sub(MASK, value)
        if not patterns:
            return value
        lowered = value.lower()
        if "://" in value or "passw" in lowered or "xox" in value:
            for pat in _PATTERNS:
                value = pat.sub(lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""), value)
        return value

    def value(self, value: Any) -> Any:
        """Redact strings anywhere inside lists and dicts."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            # The journaled playbook is re-read on resume: mask secret values in it, but never
            # rewrite it by pattern (a param named `password:` is YAML, not a credential).
            return {k: self.text(v, patterns=False) if k in _VERBATIM and isinstance(v, str) else self.value(v) for k, v in value.items()}
        return value
