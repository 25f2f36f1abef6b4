"""``runbook drill``: rehearse a playbook on a throwaway sandbox and measure RTO/RPO.

1. start a fresh sandbox (only the stores the playbook needs) under the drill's directory;
2. run the scenario's ``setup`` steps (e.g. take the backup the restore will use), then its
   ``break`` steps (drop a table, delete a tenant, fail a job…) — journaled as their own incident;
3. fingerprint the stores listed in ``scenario.restores`` as they were *before* the break;
4. run the playbook headless in drill mode, auto-confirming (typed confirmations are answered
   with the expected value and journaled as automatic), in its own supervisor like any incident:
   the recovery survives the drill's terminal (``runbook attach`` shows it to its end);
5. run the scenario's ``verify`` steps and compare fingerprints: the data must be back exactly;
6. journal a ``drill_result`` (RTO achieved vs target scaled to the sandbox, RPO achieved, per-step
   durations, verdict), tear the sandbox down unless ``--keep``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runbook.actions.spec import Services
from runbook.core import incident as S
from runbook.core.errors import RunbookError, UsageError
from runbook.core.events import EventType
from runbook.engine.runner import Engine
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
            "rpo_met": None
            if self.rpo_achieved is None or self.rpo_target is None
            else self.rpo_achieved <= self.rpo_target,
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
        # Scenario steps share the playbook's params, none required: a param the scenario hands to
        # the playbook from its own outputs does not exist yet while setup and break run.
        "params": {name: {**spec, "required": False} for name, spec in raw.get("params", {}).items()},
        "steps": key_steps,
        "not_drillable": "part of the drill of another playbook",
    }
    path = directory / f"{doc['id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = load(path)
    if out.errors:
        raise UsageError(f"The drill scenario of {raw['id']} is not valid: {out.errors[0]}")
    return out


def _run(
    journal: Journal, loaded: Loaded, params: dict[str, Any], env: Any, home: Path, quiet: bool, services: Services
) -> S.IncidentState:
    frontend = HeadlessFrontend(HeadlessAnswers(auto=True, quiet_output=quiet))
    engine = Engine(journal, frontend, home=home, environment=env, services=services)
    st = engine.open(loaded, params, mode="drill")
    engine.run()
    return S.fold(st.id, journal.events(st.id))


def _run_supervised(journal: Journal, loaded: Loaded, params: dict[str, Any], home: Path, quiet: bool,
                    config: str | None) -> S.IncidentState:
    """The recovery itself runs detached, in a supervisor, exactly as ``runbook run`` would run it."""
    from runbook.supervisor.client import SupervisedEngine, start_supervisor

    answers = HeadlessAnswers(auto=True, quiet_output=quiet)
    spec = {"action": "open", "playbook": str(loaded.path.resolve()), "params": params, "env": "sandbox",
            "mode": "drill", "answers": dataclasses.asdict(answers),
            "driver": f"{journal.actor} (drill, pid {os.getpid()})"}
    incident = str(start_supervisor(spec, home, config, journal.actor)["incident"])
    client = SupervisedEngine(HeadlessFrontend(answers), journal, home)
    client.attach(incident, since_n=-1)
    client.run()
    return S.fold(incident, journal.events(incident))


class Drill:
    """One drill's phases, usable one by one (the fault suite kills the recovery in between).

    ``prepare`` starts the throwaway sandbox and runs the scenario's setup, ``break_sandbox``
    fingerprints the stores and applies the break, ``recover`` runs the playbook, ``check`` runs
    the verify steps and compares fingerprints, ``teardown`` stops and removes the sandbox.
    """

    def __init__(self, journal: Journal, loaded: Loaded, *, home: Path, quiet: bool = True, echo: Any = print,
                 config: str | None = None) -> None:
        pb = loaded.playbook
        if pb is None:
            raise UsageError(f"The playbook is not valid: {loaded.errors[0]}")
        if pb.scenario is None:
            reason = pb.not_drillable or "it has no scenario"
            raise UsageError(f"Playbook {pb.id} cannot be drilled: {reason}.")
        self.journal = journal
        self.loaded = loaded
        self.pb = pb
        self.sc = pb.scenario
        self.home = home
        self.quiet = quiet
        self.echo = echo
        self.config = config
        self.params = dict(self.sc.params)
        self.dir = home / "drills" / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{pb.id}"
        self.sandbox_dir = self.dir / "sandbox"
        self.before: dict[str, Any] = {}
        self.services = Services()
        self.setup_end = 0.0
        self.break_time = 0.0
        self.scenario_incident: str | None = None
        self.verify_incident: str | None = None
        self.scenario_outputs: dict[str, dict[str, Any]] = {}  # setup/break step outputs, for scenario.params
        self._previous_env: str | None = None

    # The sandbox of a drill is selected through RUNBOOK_SANDBOX_DIR, for this process and its children.
    def __enter__(self) -> Drill:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._previous_env = os.environ.get("RUNBOOK_SANDBOX_DIR")
        os.environ["RUNBOOK_SANDBOX_DIR"] = str(self.sandbox_dir)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous_env is None:
            os.environ.pop("RUNBOOK_SANDBOX_DIR", None)
        else:
            os.environ["RUNBOOK_SANDBOX_DIR"] = self._previous_env

    def env(self) -> Any:
        from runbook.sandbox.environment import sandbox_environment

        return sandbox_environment()

    def _scenario_steps(self, key: str) -> list[Any]:
        return list(_plain(self.loaded.raw)["scenario"].get(key, []))

    def prepare(self) -> None:
        from runbook.sandbox.manager import Sandbox, playbook_components

        t0 = time.monotonic()
        Sandbox().ensure(playbook_components(self.pb))
        self.echo(f"drill {self.pb.id}: sandbox ready in {time.monotonic() - t0:.1f} s")
        env = self.env()
        if "slack" in env.stores:
            # The drill's own Slack stand-in receives the [DRILL] messages (and notify.slack steps).
            from runbook.notify import attach

            self.outbox = attach(self.journal, None, env)
            self.services = dataclasses.replace(self.services, messages=self.outbox)
        if self.sc.setup:
            setup_pb = _synthetic(self.loaded, self._scenario_steps("setup"), "setup", self.dir)
            st = _run(self.journal, setup_pb, self._static_params(), self.env(), self.home, self.quiet, self.services)
            self.scenario_incident = st.id
            if st.status != "completed":
                raise RunbookError(f"Drill setup of {self.pb.id} failed: {_first_failure(st)}")
            self.scenario_outputs.update(st.outputs())

    def break_sandbox(self) -> None:
        from runbook.sandbox import fingerprint

        env = self.env()
        self.before = fingerprint.take(env.stores, list(self.sc.restores))
        self.setup_end = time.time()
        steps = self._scenario_steps("break")
        if steps:
            break_pb = _synthetic(self.loaded, steps, "break", self.dir)
            st = _run(self.journal, break_pb, self._static_params(), env, self.home, self.quiet, self.services)
            self.scenario_incident = st.id
            if st.status != "completed":
                raise RunbookError(f"Drill scenario of {self.pb.id} failed to break the sandbox: {_first_failure(st)}")
            self.scenario_outputs.update(st.outputs())
        self.break_time = time.time()
        self.echo(f"drill {self.pb.id}: scenario applied ({self.sc.description or 'no description'})")

    def _static_params(self) -> dict[str, Any]:
        """Scenario params usable before the break (those not taken from setup/break outputs)."""
        from runbook.playbook.refs import has_template

        return {k: v for k, v in self.params.items() if not has_template(v)}

    def run_params(self) -> dict[str, Any]:
        """The playbook's params for the drill: ``scenario.params`` with references to setup/break
        step outputs resolved (e.g. the recovery target time the scenario noted before breaking)."""
        from runbook.playbook.refs import make_lookup, render

        lookup = make_lookup(params={}, outputs=self.scenario_outputs, incident={}, env=self.env().lookup, mode="drill")
        return {k: render(v, lookup) for k, v in self.params.items()}

    def recover(self) -> S.IncidentState:
        return _run_supervised(self.journal, self.loaded, self.run_params(), self.home, self.quiet, self.config)

    def check(self) -> list[str]:
        """Verify steps and fingerprints: an empty list when the data came back exactly."""
        from runbook.sandbox import fingerprint

        problems: list[str] = []
        if self.sc.verify:
            verify_pb = _synthetic(self.loaded, self._scenario_steps("verify"), "verify", self.dir)
            vst = _run(self.journal, verify_pb, self.run_params(), self.env(), self.home, self.quiet, self.services)
            self.verify_incident = vst.id
            if vst.status != "completed":
                problems.append(f"verification failed: {_first_failure(vst)}")
        after = fingerprint.take(self.env().stores, list(self.sc.restores))
        return problems + fingerprint.differences(self.before, after)

    def teardown(self) -> None:
        from runbook.sandbox.manager import Sandbox

        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            from runbook.notify import detach

            try:
                outbox.flush(5.0)  # deliver before the Slack stand-in stops; the rest stays queued
            finally:
                detach(outbox)
        self.services.clients.close()  # the stores they talk to are about to stop
        try:
            Sandbox().down()
        finally:
            shutil.rmtree(self.sandbox_dir, ignore_errors=True)


def run_drill(
    journal: Journal, loaded: Loaded, *, home: Path, keep: bool = False, quiet: bool = True, echo: Any = print,
    config: str | None = None,
) -> DrillReport:
    """Run one drill end to end (see the module docstring). Never touches the user's own sandbox."""
    drill = Drill(journal, loaded, home=home, quiet=quiet, echo=echo, config=config)
    pb, sc = drill.pb, drill.sc
    with drill:
        try:
            drill.prepare()
            drill.break_sandbox()
            started = time.monotonic()
            st = drill.recover()
            rto_achieved = time.monotonic() - started
            problems: list[str] = []
            if st.status != "completed":
                problems.append(f"the playbook did not complete ({st.status}): {_first_failure(st)}")
            problems += drill.check()
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
                rpo_achieved=max(0.0, drill.break_time - drill.setup_end) if sc.setup else None,
                rpo_target=pb.rpo_seconds,
                steps=[
                    (
                        s.id,
                        st.steps[s.id].status if s.id in st.steps else "pending",
                        st.steps[s.id].duration if s.id in st.steps else None,
                    )
                    for s in pb.steps
                ],
                problems=problems,
                scenario_incident=drill.scenario_incident,
                verify_incident=drill.verify_incident,
                sandbox_dir=str(drill.sandbox_dir),
            )
            journal.append(st.id, EventType.DRILL_RESULT, report.payload())
            return report
        finally:
            if not keep:
                drill.teardown()


def _first_failure(st: S.IncidentState) -> str:
    for s in st.steps.values():
        if s.status == S.StepStatus.FAILED or (s.status == S.StepStatus.RUNNING and s.error):
            return f"step {s.id}: {s.error}"
    return st.status
