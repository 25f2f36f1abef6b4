"""Plain types every layer shares; nothing here imports the rest of runbook."""
