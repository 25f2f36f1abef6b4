"""runbook — incident-response playbooks for the terminal, run for real, with a durable timeline."""

__version__ = "0.1.0"
