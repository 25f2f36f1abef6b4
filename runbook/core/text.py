"""Sentences for people: every error the product shows is one line ending in a full stop."""

from __future__ import annotations


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence(text: object) -> str:
    """One line ending in a full stop; the case is left alone (it may start with a program name)."""
    flat = " ".join(str(text).split())
    if not flat:
        return flat
    return flat if flat.endswith((".", "!", "?")) else flat + "."
