"""``runbook drill``: rehearse a playbook on a throwaway sandbox and measure RTO/RPO.

1. start a fresh sandbox (only the stores the playbook needs) under the drill's directory;
2. run the scenario's ``setup`` steps (e.g. take the backup the restore will use), then its
   ``break`` steps (drop a table, delete a tenant, fail a job…) — journaled as their own incident;
3. fingerprint the stores listed in ``scenario.restores`` as they were *before* the break;
4. run the playbook headless in drill mode, auto-confirming (typed confirmations are answered
   with the expected value and journaled as automatic);
5. run the scenario's ``verify`` steps and compare fingerprints: the data must be back exactly;
6. journal a ``drill_result`` (RTO achieved vs target scaled to the sandbox, RPO achieved, per-step
   durations, verdict), tear the sandbox down unless ``--keep``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runbook.engine import state as S
from runbook.engine.runner import Engine
from runbook.errors import RunbookError, UsageError
from runbook.headless import HeadlessAnswers, HeadlessFrontend
from runbook.journal.store import Journal
from runbook.playbook.validate import Loaded, load


@dataclass
class DrillReport:
    playbook: str
    incident: str
    passed: bool
    rto_achieved: float
    rto_target: float | None
    rto_allowed: float | None
    rpo_achieved: float | None
    rpo_target: float | None
    steps: list[tuple[str, str, float | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    scenario_incident: str | None = None
    verify_incident: str | None = None
    sandbox_dir: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "passed": self.passed,
            "rto_achieved": round(self.rto_achieved, 3),
            "rto_target": self.rto_target,
            "rto_allowed": self.rto_allowed,
            "rto_met": self.rto_allowed is None or self.rto_achieved <= self.rto_allowed,
            "rpo_achieved": None if self.rpo_achieved is None else round(self.rpo_achieved, 3),
            "rpo_target": self.rpo_target,
            "rpo_met": None if self.rpo_achieved is None or self.rpo_target is None else self.rpo_achieved <= self.rpo_target,
            "steps": [{"id": s, "status": st, "duration": d} for s, st, d in self.steps],
            "problems": self.problems,
            "scenario_incident": self.scenario_incident,
            "verify_incident": self.verify_incident,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _synthetic(loaded: Loaded, key_steps: list[Any], suffix: str, directory: Path) -> Loaded:
    """A playbook made of scenario steps (they share the playbook's params)."""
    raw = _plain(loaded.raw)
    doc = {
        "id": f"{raw['id']}--{suffix}",
        "title": f"{raw.get('title', raw['id'])} — drill {suffix}",
        "tier": raw.get("tier", "maintenance"),
        "params": raw.get("params", {}),
        "steps": key_steps,
        "not_drillable": "part of the drill of another playbook",
    }
    path = directory / f"{doc['id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = load(path)
    if out.errors:
        raise UsageError(f"The drill scenario of {raw['id']} is not valid: {out.errors[0]}")
    return out


def _run(journal: Journal, loaded: Loaded, params: dict[str, Any], env: Any, home: Path, quiet: bool) -> S.IncidentState:
    frontend = HeadlessFrontend(HeadlessAnswers(auto=True, quiet_output=quiet))
    engine = Engine(journal, frontend, home=home, environment=env)
    st = engine.open(loaded, params, mode="drill")
    engine.run()
    return S.fold(st.id, journal.events(st.id))


def run_drill(journal: Journal, loaded: Loaded, *, home: Path, keep: bool = False, quiet: bool = True, echo: Any = print) -> DrillReport:
    """Run one drill end to end (see the module docstring). Never touches the user's own sandbox."""
    from runbook.sandbox import fingerprint
    from runbook.sandbox.environment import sandbox_environment
    from runbook.sandbox.manager import Sandbox, playbook_components

    pb = loaded.playbook
    if pb is None:
        raise UsageError(f"The playbook is not valid: {loaded.errors[0]}")
    if pb.scenario is None:
        reason = pb.not_drillable or "it has no scenario"
        raise UsageError(f"Playbook {pb.id} cannot be drilled: {reason}.")
    sc = pb.scenario
    drill_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{pb.id}"
    drill_dir = home / "drills" / drill_id
    drill_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = os.environ.get("RUNBOOK_SANDBOX_DIR")
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(drill_dir / "sandbox")
    box = Sandbox()
    try:
        t0 = time.monotonic()
        box.ensure(playbook_components(pb))
        echo(f"drill {pb.id}: sandbox ready in {time.monotonic() - t0:.1f} s")
        env = sandbox_environment()
        params = dict(sc.params)
        scenario_incident = None
        if sc.setup or sc.break_:
            raw_sc = _plain(loaded.raw)["scenario"]
            steps = list(raw_sc.get("setup", [])) + list(raw_sc.get("break", []))
            if sc.setup:
                # Fingerprint between setup and break: setup may create what the playbook restores.
                setup_pb = _synthetic(loaded, list(raw_sc.get("setup", [])), "setup", drill_dir)
                st = _run(journal, setup_pb, params, env, home, quiet)
                scenario_incident = st.id
                if st.status != "completed":
                    raise RunbookError(f"Drill setup of {pb.id} failed: {_first_failure(st)}")
                steps = list(raw_sc.get("break", []))
            before = fingerprint.take(env.stores, list(sc.restores))
            setup_end = time.time()
            if steps:
                break_pb = _synthetic(loaded, steps, "break", drill_dir)
                st = _run(journal, break_pb, params, env, home, quiet)
                scenario_incident = st.id
                if st.status != "completed":
                    raise RunbookError(f"Drill scenario of {pb.id} failed to break the sandbox: {_first_failure(st)}")
        else:
            before = fingerprint.take(env.stores, list(sc.restores))
            setup_end = time.time()
        break_time = time.time()
        echo(f"drill {pb.id}: scenario applied ({sc.description or 'no description'})")

        env = sandbox_environment()
        started = time.monotonic()
        st = _run(journal, loaded, params, env, home, quiet)
        rto_achieved = time.monotonic() - started
        problems: list[str] = []
        if st.status != "completed":
            problems.append(f"the playbook did not complete ({st.status}): {_first_failure(st)}")

        verify_incident = None
        if sc.verify:
            verify_pb = _synthetic(loaded, _plain(loaded.raw)["scenario"]["verify"], "verify", drill_dir)
            vst = _run(journal, verify_pb, params, sandbox_environment(), home, quiet)
            verify_incident = vst.id
            if vst.status != "completed":
                problems.append(f"verification failed: {_first_failure(vst)}")
        after = fingerprint.take(sandbox_environment().stores, list(sc.restores))
        problems += fingerprint.differences(before, after)

        rto_target = pb.rto_seconds
        allowed = rto_target * sc.rto_scale if rto_target is not None else None
        if allowed is not None and rto_achieved > allowed:
            problems.append(f"recovery took {rto_achieved:.1f} s, over the sandbox RTO of {allowed:.1f} s")
        report = DrillReport(
            playbook=pb.id,
            incident=st.id,
            passed=not problems,
            rto_achieved=rto_achieved,
            rto_target=rto_target,
            rto_allowed=allowed,
            rpo_achieved=max(0.0, break_time - setup_end) if sc.setup else None,
            rpo_target=pb.rpo_seconds,
            steps=[(s.id, st.steps[s.id].status if s.id in st.steps else "pending", st.steps[s.id].duration if s.id in st.steps else None) for s in pb.steps],
            problems=problems,
            scenario_incident=scenario_incident,
            verify_incident=verify_incident,
            sandbox_dir=str(drill_dir / "sandbox"),
        )
        journal.append(st.id, "drill_result", report.payload())
        return report
    finally:
        if not keep:
            try:
                box.down()
            finally:
                shutil.rmtree(drill_dir / "sandbox", ignore_errors=True)
        if previous is None:
            os.environ.pop("RUNBOOK_SANDBOX_DIR", None)
        else:
            os.environ["RUNBOOK_SANDBOX_DIR"] = previous


def _first_failure(st: S.IncidentState) -> str:
    for s in st.steps.values():
        if s.status == S.FAILED or (s.status == S.RUNNING and s.error):
            return f"step {s.id}: {s.error}"
    return st.status
