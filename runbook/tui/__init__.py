"""The Textual TUI: home, start form, run screen, confirmations, resume, timeline.

Entry points (called by ``runbook.cli``) live in :mod:`runbook.tui.app`; everything heavy is
imported lazily so the home screen paints fast.
"""
