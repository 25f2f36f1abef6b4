"""Plumbing every action shares: running processes, polling, file facts."""
