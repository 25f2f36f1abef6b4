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
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer|digest)\s+)(\S+)"),  # curl -v, HTTP traces
]
BASE64_CORE_MIN = 6  # a shorter stable run of base64 would mask innocent text


def encoded_forms(secret: str) -> set[str]:
    """The forms a secret takes in output besides itself: URL-encoded, JSON-escaped, and the part
    of its base64 (standard or URL-safe) that stays the same wherever it sits in the encoded
    bytes, e.g. inside ``base64(user:secret)`` of an HTTP Basic header. Case variants are matched
    by the redactor itself (case-insensitively).
    """
    import base64
    import json
    from urllib.parse import quote, quote_plus

    raw = secret.encode("utf-8")
    forms = {quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    for shift in range(3):  # the secret starting at each byte offset of a 3-byte group
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii").rstrip("=")
        start = (shift * 4 + 2) // 3  # chars that also encode the bytes before the secret
        end = len(encoded) - (1 if (shift + len(raw)) % 3 else 0)  # a char shared with what follows
        core = encoded[start:end]
        if len(core) >= BASE64_CORE_MIN:
            forms |= {core, core.replace("+", "-").replace("/", "_")}
    forms.discard(secret)
    return forms


_VERBATIM = {"playbook_text"}


class Redactor:
    """Replaces every known secret value, and credential-looking patterns, with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._forms: set[str] = set()  # every secret and its encoded forms
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
        self._forms.add(secret)
        self._forms |= encoded_forms(secret)
        # Longest first so a secret that contains another is masked whole; any case (`tr a-z A-Z`).
        ordered = sorted(self._forms, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str, *, patterns: bool = True) -> str:
        if self._re is not None and value:
            value = self._re.sub(MASK, value)
        if not patterns:
            return value
        lowered = value.lower()
        if "://" in value or "passw" in lowered or "xox" in value or "authorization" in lowered:
            for pat in _PATTERNS:
                value = pat.sub(
                    lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""), value
                )
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
            return {
                k: self.text(v, patterns=False) if k in _VERBATIM and isinstance(v, str) else self.value(v)
                for k, v in value.items()
            }
        return value


# Credentials that may appear in step output without anybody declaring them secret.
_SCRUB = re.compile(
    "|".join(
        [
            r"\bxox[abprse]-[A-Za-z0-9-]{6,}",  # Slack tokens
            r"\bxapp-[A-Za-z0-9-]{6,}",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",  # a webhook URL is a credential
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"\bya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access token
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            r"\bsk-[A-Za-z0-9_-]{20,}",
        ]
    )
)
# ``password=…``, ``token: …``, ``Authorization: Bearer …``: keep the key, mask the value.
_SCRUB_KV = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|authorization)"
    r"\b[\"']?\s*[=:]\s*(?:bearer\s+|basic\s+)?[\"']?)([^\s\"'<>&|,;]{3,})"
)
_SCRUB_URL = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s/]+)(@)")


def needs_scrub(text: str) -> bool:
    """Cheap test: could ``text`` hold a credential pattern :func:`scrub` masks?"""
    low = text.lower()
    # Unrolled `in` tests: ~10x cheaper than a case-insensitive regex search on short strings.
    return (
        "key" in low
        or "token" in low
        or "pass" in low
        or "secret" in low
        or "auth" in low
        or "://" in low
        or "xox" in low
        or "xapp" in low
        or "gh" in low
        or "akia" in low
        or "aiza" in low
        or "ya29" in low
        or "eyj" in low
        or "private" in low
        or "sk-" in low
        or "pwd" in low
        or "hooks.slack" in low
    )


def scrub(text: str, secrets: Any = ()) -> str:
    """Mask known secret values and anything that looks like a credential.

    Args:
        text: Text bound for Slack or an export.
        secrets: Exact values to mask (e.g. the bot token, secret param values).

    Returns:
        The text with every secret replaced by the engine's mask.
    """
    if not text:
        return text
    for s in secrets:
        if s and len(s) >= 3 and s in text:
            text = text.replace(s, MASK)
    if not needs_scrub(text):  # fast path: most lines carry nothing to look at
        return text
    text = _SCRUB.sub(MASK, text)
    text = _SCRUB_KV.sub(lambda m: m.group(1) + MASK, text)
    return _SCRUB_URL.sub(lambda m: m.group(1) + MASK + m.group(3), text)
