"""Detached execution: each live incident's engine runs in a supervisor process; front ends attach.

* :mod:`.protocol` — the versioned wire format (JSON lines over a Unix socket) and socket helpers;
* :mod:`.relay` — the engine's front end inside the supervisor (fans events out, takes decisions in);
* :mod:`.server` — the socket: same-user clients only, one reader thread each;
* :mod:`.client` — what the TUI and the headless CLI use: start a supervisor, attach, relay.

Why a process of its own: the on-call engineer's SSH session is where the operator lives, and it
drops. The supervisor has no terminal to lose, so a dropped session, a closed pipe or a killed
client never stops, orphans or doubles a step. If the supervisor itself dies, the reaper
(:mod:`runbook.actions.support.reaper`) takes the step's commands with it and the journal's
``process_started`` events let ``resume`` prove nothing of the step is left running.
"""
