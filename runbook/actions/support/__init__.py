"""Plumbing every action shares: running processes, polling, file facts, the param vocabulary."""
