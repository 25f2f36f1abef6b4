"""Opening and resuming an incident: what is checked before anything is journaled.

Opening binds and checks every parameter, refuses a drill against production, and journals the
incident with its parameters in one transaction. Resuming re-reads the playbook text journaled
with the incident (so it runs exactly what was started) and asks again for secret parameters,
which are never journaled.
"""

from __future__ import annotations

import os
import secrets as pysecrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.core import incident as S
from runbook.core.environment import Environment
from runbook.core.errors import NeedsHuman, RunbookError, UsageError
from runbook.core.events import EventType, IncidentOpened, ParamBound
from runbook.core.text import capitalized, sentence
from runbook.core.timestamps import stamp
from runbook.engine.frontend import Ask, Choice, Frontend, Request
from runbook.engine.recorder import Item
from runbook.playbook import params as P
from runbook.playbook.model import Mode, Playbook
from runbook.playbook.validate import Loaded, validate_raw


def new_incident_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{pysecrets.token_hex(2)}"


def checked_mode(mode: str, environment: Environment) -> str:
    try:
        value = Mode(mode).value
    except ValueError:
        raise UsageError(f"Unknown mode {mode!r}: use live, dry-run or drill.") from None
    if value == Mode.DRILL.value and environment.production:
        raise UsageError(
            f"A drill cannot run against the production environment {environment.name!r}: "
            "drill on the sandbox or a staging environment."
        )
    return value


def bind(pb: Playbook, given: dict[str, Any], environment: Environment) -> dict[str, Any]:
    try:
        return P.bind(pb.params, given, environment.lookup)
    except P.ParamError as exc:
        raise UsageError(sentence(capitalized(str(exc)))) from None


def opening_events(
    loaded: Loaded, pb: Playbook, environment: Environment, mode: str, bound: dict[str, Any]
) -> list[Item]:
    """``incident_opened`` and one ``param_bound`` per parameter (a secret's value never)."""
    opened: IncidentOpened = {
        "playbook": pb.id,
        "playbook_path": str(loaded.path),
        "playbook_text": loaded.path.read_text(encoding="utf-8"),
        "title": pb.title,
        "tier": pb.tier.value,
        "level": pb.level,
        "env": environment.name,
        "env_location": environment.location or None,
        "mode": mode,
        "rto": pb.rto_seconds,
        "rpo": pb.rpo_seconds,
        "started": stamp(),
        "pid": os.getpid(),
    }
    items: list[Item] = [(EventType.INCIDENT_OPENED, opened, None)]
    for name, value in bound.items():
        param: ParamBound = (
            {"name": name, "secret": True, "provided": value is not None}
            if pb.params[name].secret
            else {"name": name, "value": value}
        )
        items.append((EventType.PARAM_BOUND, param, None))
    return items


def journaled_playbook(st: S.IncidentState) -> Playbook:
    """The playbook as it was when the incident was opened."""
    from runbook.playbook import yamlload

    loaded = validate_raw(yamlload.loads(st.playbook_text), Path(st.playbook_path or f"{st.playbook_id}.yaml"))
    if loaded.playbook is None or loaded.errors:
        raise RunbookError(f"The playbook journaled with incident {st.id} cannot be loaded: {loaded.errors[0]}")
    return loaded.playbook


def collect_secrets(
    frontend: Frontend, st: S.IncidentState, pb: Playbook, given: dict[str, str] | None
) -> dict[str, Any]:
    """Each secret parameter's value, from ``given`` or asked of the operator, checked."""
    values: dict[str, Any] = {}
    for name in st.secret_params:
        value: Any = (given or {}).get(name)
        if value is None:
            request = Request(
                Ask.SECRET,
                st.id,
                None,
                title=f"Value of secret parameter {name!r}",
                choices=(Choice.VALUE, Choice.QUIT),
                extra={"param": name},
            )
            d = frontend.decide(request)
            if d.choice != Choice.VALUE or not d.value:
                hint = f"set RUNBOOK_PARAM_{name.upper()} and resume"
                raise NeedsHuman(f"Incident {st.id} needs the secret parameter {name!r}: {hint}.")
            value = d.value
        spec = pb.params.get(name)
        if spec is not None:
            try:
                value = P.coerce(name, spec, value)
            except P.ParamError as exc:
                raise UsageError(sentence(capitalized(str(exc)))) from None
        values[name] = value
    return values
