"""The run loop: one loop for every kind of step, every mode, and resume.

Safety rules it enforces, whatever the front end:

* every event is journaled (durably) before a front end hears of it (:mod:`.recorder`);
* a mutating step asks ``yes``, a destructive one asks for the target typed exactly; a playbook
  can only raise that (:mod:`.decisions`);
* dry-run runs read-only steps for real and only shows mutating ones, resolved (:mod:`.calls`);
* a step that was started but never finished (crash, kill, lost connection) is never re-run
  without a person choosing retry, mark done or skip;
* values reach commands as argv elements or API arguments; secrets are masked everywhere.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from runbook.actions.spec import Services
from runbook.core import incident as S
from runbook.core.durations import parse_duration
from runbook.core.effect import Effect
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, NeedsHuman, RunbookError, UsageError
from runbook.core.events import Event, EventType, IncidentClosed, StepFailed, StepPlanned, TakeOver
from runbook.core.redact import Redactor
from runbook.core.text import sentence
from runbook.engine import opening
from runbook.engine.attempt import Attempt, AttemptOutcome, AttemptRunner
from runbook.engine.calls import Call, resolve_call
from runbook.engine.decisions import Decisions, QuitRequested, StopIncident
from runbook.engine.frontend import Ask, Choice, Frontend
from runbook.engine.outcome import Outcome, RunStatus
from runbook.engine.recorder import Recorder
from runbook.journal.logs import step_log_path
from runbook.journal.store import Journal, JournalError, LostLockError
from runbook.playbook import params as P
from runbook.playbook.model import Mode, Playbook, Step
from runbook.playbook.refs import RefError, Unknown, evaluate_condition, make_lookup, parse_condition
from runbook.playbook.validate import Loaded

OUTPUT_JOURNAL_LIMIT = 64 * 1024  # chars of one output value kept in the journal


class Engine:
    """Runs incidents. Front ends call :meth:`open` or :meth:`resume`, then :meth:`run`.

    Args:
        journal: Where events go.
        frontend: Receives events and answers questions.
        home: State directory (step logs, per-incident work directories).
        environment: The store connections for the incident.
        services: What actions may use besides the stores (the Slack outbox).
    """

    def __init__(self, journal: Journal, frontend: Frontend, *, home: Path, environment: Environment,
                 services: Services | None = None) -> None:
        self.journal = journal
        self.services = services or Services()
        self.frontend = frontend
        self.home = home
        self.environment = environment
        self.redactor = Redactor(environment.secret_values())
        self.playbook: Playbook | None = None
        self.rec: Recorder | None = None
        self._secret_values: dict[str, Any] = {}
        self._cancel = threading.Event()

    @property
    def state(self) -> S.IncidentState | None:
        return self.rec.state if self.rec is not None else None

    def _recorder(self) -> Recorder:
        assert self.rec is not None, "open or resume an incident first"
        return self.rec

    def _append(self, kind: EventType, payload: Any, *, step: str | None = None) -> Event:
        return self._recorder().append(kind, payload, step=step)

    def add_note(self, text: str) -> Event:
        """Journal a note from the operator (safe to call from any thread)."""
        text = P.check_text("note", text.strip(), allow_newlines=True)
        if not text:
            raise UsageError("A note cannot be empty.")
        return self._append(EventType.NOTE, {"text": text})

    def cancel_current(self) -> None:
        """Stop the running step (its command is terminated); the step is recorded as failed."""
        self._cancel.set()

    # -- opening -----------------------------------------------------------------------------

    def open(
        self, loaded: Loaded, given: dict[str, Any], *, mode: str = "live", drill: bool = False
    ) -> S.IncidentState:
        """Bind params and open a new incident (journaled), locked to this process.

        Raises:
            UsageError: Invalid playbook or parameter values (nothing is journaled or run).
        """
        if not loaded.ok or loaded.playbook is None:
            first = loaded.errors[0] if loaded.errors else "invalid playbook"
            raise UsageError(f"The playbook is not valid: {first}")
        pb = loaded.playbook
        mode = opening.checked_mode(mode, self.environment)
        bound = opening.bind(pb, given, self.environment)
        for name, spec in pb.params.items():
            if spec.secret and bound.get(name):
                self.redactor.add(bound[name])
        items = opening.opening_events(loaded, pb, self.environment, mode, bound)
        incident = opening.new_incident_id()
        while self.journal.events_page(incident, -1, 1):
            incident = opening.new_incident_id()  # two incidents opened in the same second
        self.playbook = pb
        self.rec = Recorder(self.journal, self.frontend, self.redactor, S.IncidentState(incident))
        self.journal.acquire(incident)
        # One transaction: a kill while opening leaves no incident rather than one missing params.
        self.rec.append_all(items)
        self._secret_values = {n: v for n, v in bound.items() if pb.params[n].secret}
        return self.rec.state

    def resume(
        self, incident: str, *, take_over: bool = False, secrets: dict[str, str] | None = None
    ) -> S.IncidentState:
        """Load an incident from the journal and lock it to this process.

        Raises:
            LockedError: Another live process drives it (unless ``take_over``).
            RunbookError: It is completed, or its playbook can no longer be read.
        """
        if not self.journal.events_page(incident, -1, 1):
            raise RunbookError(f"No incident {incident!r}.", exit_code=2)
        # Lock first, then read: a take-over must see every event the previous holder wrote.
        previous = self.journal.acquire(incident, take_over=take_over)
        try:
            _, bad, reason = self.journal.verify(incident)  # a tampered journal never runs anything
            if bad is not None:
                raise RunbookError(
                    f"Incident {incident} is not resumed: its journal does not verify (event {bad.n}, {bad.type}: "
                    f"{reason}); nothing was run. See `runbook verify {incident}`."
                )
            st = S.fold(incident, self.journal.events(incident))
            if st.status == S.IncidentStatus.COMPLETED:
                raise RunbookError(f"Incident {incident} is already completed; nothing to resume.")
            self.playbook = opening.journaled_playbook(st)
            # Secrets are collected and checked before anything is journaled.
            self._secret_values = opening.collect_secrets(self.frontend, st, self.playbook, secrets)
            for value in self._secret_values.values():
                self.redactor.add(value)
        except BaseException:
            self.journal.release(incident)
            raise
        self.rec = Recorder(self.journal, self.frontend, self.redactor, st)
        if previous is not None and previous.alive():
            took: TakeOver = {"from": previous.holder, "from_pid": previous.pid, "since": previous.since}
            self._append(EventType.TAKE_OVER, took)
        else:
            self._append(EventType.RESUMED, {"stale_lock": previous.holder if previous else None})
        if st.closed is not None:
            self._append(EventType.REOPENED, {"was": st.status.value})
        return st

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run from the first unfinished step to the end (or a pause/failure). Releases the lock."""
        assert self.playbook is not None
        st = self._recorder().state
        try:
            for step in self.playbook.steps:
                self._run_step(step)
            return self._close()
        except QuitRequested:
            self._pause("operator quit")
            paused = f"Incident {st.id} paused; resume it with `runbook resume {st.id}`."
            return Outcome(st.id, RunStatus.PAUSED, paused)
        except NeedsHuman as exc:
            self._pause(str(exc))
            return Outcome(st.id, RunStatus.NEEDS_HUMAN, str(exc))
        except StopIncident as exc:
            self._append(EventType.INCIDENT_CLOSED, self._closing("failed", str(exc)))
            return Outcome(st.id, RunStatus.FAILED, str(exc))
        except KeyboardInterrupt:
            return self._interrupted()
        except LostLockError as exc:
            return Outcome(st.id, RunStatus.TAKEN_OVER, str(exc))
        except JournalError as exc:
            # The disk may be full: stop cleanly; what is journaled stays.
            return Outcome(st.id, RunStatus.FAILED, str(exc))
        finally:
            self.journal.release(st.id)

    def _interrupted(self) -> Outcome:
        """Ctrl-C: pause now; a step cut short stays as it is journaled (running: asked about on resume)."""
        st = self._recorder().state
        cut = next((s.id for s in st.steps.values() if s.status == S.StepStatus.RUNNING), None)
        self._pause("Ctrl-C" + (f": step {cut} was stopped before it ended" if cut else ""))
        what = f"step {cut!r} was stopped before it ended and will be asked about; " if cut else ""
        return Outcome(st.id, RunStatus.INTERRUPTED,
                       f"Incident {st.id} paused by Ctrl-C: {what}resume it with `runbook resume {st.id}`.")

    def _pause(self, reason: str) -> None:
        try:
            self._append(EventType.PAUSED, {"reason": reason})
        except JournalError:
            pass

    def _closing(self, status: str, message: str = "") -> IncidentClosed:
        st = self._recorder().state
        elapsed = st.elapsed
        out: IncidentClosed = {"status": status, "elapsed": round(elapsed, 3), "rto_target": st.rto}
        if st.rto is not None:
            out["rto_met"] = elapsed <= st.rto
        if message:
            out["message"] = message
        failed = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and not s.continued]
        if failed:
            out["failed_steps"] = failed
        return out

    def _close(self) -> Outcome:
        st = self._recorder().state
        # A failure the playbook accepted (on_failure: continue) is recorded, not fatal.
        failed = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and not s.continued]
        accepted = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and s.continued]
        status = RunStatus.FAILED if failed else RunStatus.COMPLETED
        msg = f"steps failed: {', '.join(failed)}" if failed else ""
        closing = self._closing(status.value, msg)
        if accepted:
            closing["failures_accepted"] = accepted
        self._append(EventType.INCIDENT_CLOSED, closing)
        return Outcome(st.id, status, msg)

    # -- one step -------------------------------------------------------------------------------

    def _lookup(self, *, unknown_outputs: bool = False) -> Any:
        st = self._recorder().state
        params = dict(st.params)
        params.update(self._secret_values)
        workdir = self.home / "incidents" / st.id
        return make_lookup(
            params=params,
            outputs=st.outputs(),
            incident={"id": st.id, "started": st.started_compact, "workdir": str(workdir), "operator": st.operator},
            env=self.environment.lookup,
            mode=st.mode,
            unknown_outputs=unknown_outputs,
        )

    def _decisions(self) -> Decisions:
        return Decisions(self._recorder(), self.frontend)

    def _run_step(self, step: Step) -> None:
        st = self._recorder().state
        if not self._settle_previous(step, st.step(step.id)):
            return
        dry = st.mode == Mode.DRY_RUN
        lookup = self._lookup(unknown_outputs=dry)
        if step.when is not None and not self._condition_holds(step, lookup):
            return
        while True:  # until the step is resolved (run, skipped, failed-and-handled)
            try:
                call = resolve_call(step, lookup, self.redactor)
            except (RefError, ActionError) as exc:
                self._fail_step(step, st.step(step.id).attempts + 1, sentence(str(exc)), 0.0, None, final=True)
                self._after_failure(step, str(exc))
                return
            if dry and self._plan_only(step, call):
                return
            if self._ask_before(step, call) and not self._confirmed_and_ran(step, call):
                continue  # refused: ask again what to do with this step
            return

    def _settle_previous(self, step: Step, ss: S.StepState) -> bool:
        """Deal with what an earlier run left; False when the step needs nothing more."""
        if ss.status in S.RESOLVED or (ss.status == S.StepStatus.FAILED and ss.continued):
            return False
        if ss.status == S.StepStatus.RUNNING and step.kind != "manual":
            self._decisions().interrupted(step, ss, _tail)  # never re-run without a person's choice
            return ss.status not in S.RESOLVED
        if ss.status == S.StepStatus.FAILED:
            # A failed incident was reopened: the failed step needs a decision.
            self._after_failure(step, ss.error or "it failed", force_ask=True)
            return not (ss.status in S.RESOLVED or ss.continued)
        return True  # pending, or a manual step someone never finished: ask again

    def _condition_holds(self, step: Step, lookup: Any) -> bool:
        assert step.when is not None
        try:
            verdict = evaluate_condition(parse_condition(step.when), lookup)
        except (RefError, ActionError) as exc:
            self._fail_step(step, 0, f"its condition could not be evaluated: {exc}", 0.0, None, final=True)
            self._after_failure(step, str(exc))
            return False
        if isinstance(verdict, Unknown):
            planned = {"reason": f"depends on {verdict.ref}", "when": step.when}
            self._append(EventType.STEP_PLANNED, planned, step=step.id)
            return False
        if not verdict:
            skipped = {"reason": f"condition is false: {step.when}", "by": "engine"}
            self._append(EventType.STEP_SKIPPED, skipped, step=step.id)
            return False
        return True

    def _plan_only(self, step: Step, call: Call) -> bool:
        """Dry-run: journal a mutating (or unresolvable) step as planned instead of running it."""
        planned: StepPlanned = {"action": call.describe, "run": call.action, "effect": call.effect}
        if call.effect != Effect.READ_ONLY.value or step.kind == "manual":
            planned.update({"target": call.target, "confirm": call.confirm})
            self._append(EventType.STEP_PLANNED, planned, step=step.id)
            return True
        if not call.resolved:
            planned["reason"] = "needs outputs of steps that did not run"
            self._append(EventType.STEP_PLANNED, planned, step=step.id)
            return True
        return False

    def _ask_before(self, step: Step, call: Call) -> bool:
        """Run it now? False when the operator skipped it (journaled)."""
        decisions = self._decisions()
        d = self.frontend.decide(
            decisions.request(Ask.BEFORE_STEP, step, call, choices=(Choice.RUN, Choice.SKIP, Choice.QUIT))
        )
        if d.choice == Choice.QUIT:
            raise QuitRequested()
        if d.choice == Choice.SKIP:
            decisions.skip(step, d.reason)
            return False
        return True

    def _confirmed_and_ran(self, step: Step, call: Call) -> bool:
        """Confirm and run the step. False when the confirmation was refused (ask again)."""
        decisions = self._decisions()
        if step.kind == "manual":
            decisions.manual(step, call)
            return True
        if not decisions.confirm(step, call):
            return self._recorder().state.step(step.id).status in S.RESOLVED  # skipped from the confirmation
        self._attempts(step, call)
        return True

    def _attempts(self, step: Step, call: Call) -> None:
        """Run the step, retrying as the playbook allows; a stuck action is never started twice."""
        ss = self._recorder().state.step(step.id)
        attempts_left = step.retries + 1
        error: str | None = None
        while attempts_left > 0:
            attempts_left -= 1
            outcome = self._execute(step, call, final=attempts_left == 0)
            if outcome.error is None:
                return
            error = outcome.error
            if outcome.stuck:
                self._after_failure(step, error, force_ask=True)
                return
            if attempts_left > 0:
                if self._cancel.wait(parse_duration(step.retry_delay)):
                    self._cancel.clear()
                    self._fail_step(
                        step, ss.attempts, "the retries were stopped by the operator", 0.0, None, final=True
                    )
                    break
                try:
                    call = resolve_call(step, self._lookup(), self.redactor)
                except (RefError, ActionError):
                    pass
        self._after_failure(step, error or "it failed")

    def _execute(self, step: Step, call: Call, *, final: bool = True) -> AttemptOutcome:
        """Run one attempt and journal how it ended."""
        st = self._recorder().state
        attempt = st.step(step.id).attempts + 1
        log_path = step_log_path(self.home, st.id, step.id, attempt)
        self._append(
            EventType.STEP_STARTED,
            {
                "attempt": attempt,
                "action": call.describe,
                "effect": call.effect,
                "target": call.target,
                "log": str(log_path),
            },
            step=step.id,
        )
        runner = AttemptRunner(self.environment, self.services, self.redactor, self.frontend, self._cancel, self.home)
        timeout = parse_duration(step.timeout) if step.timeout is not None else None
        # Which process a step started matters only while the machine runs: no fsync (see Journal).
        record = lambda p: self._recorder().append(EventType.PROCESS_STARTED, p, step=step.id, durable=False)  # noqa: E731
        outcome = runner.run(Attempt(st.id, st.mode, step, call, log_path, self.home / "incidents" / st.id, timeout,
                                     record_process=record))
        log = (str(log_path), outcome.digest, outcome.lines)
        if outcome.error is not None:
            self._fail_step(
                step,
                attempt,
                outcome.error,
                outcome.duration,
                log,
                final=final or outcome.stuck,
                timed_out=outcome.timed_out,
            )
        else:
            self._append(
                EventType.STEP_FINISHED,
                {
                    "outputs": _journal_outputs(outcome.outputs),
                    "duration": round(outcome.duration, 3),
                    "log": log[0],
                    "log_sha256": log[1],
                    "lines": log[2],
                },
                step=step.id,
            )
        return outcome

    def _fail_step(
        self,
        step: Step,
        attempt: int,
        error: str,
        duration: float,
        log: tuple[str, str, int] | None,
        *,
        final: bool,
        timed_out: bool = False,
    ) -> None:
        payload: StepFailed = {
            "attempt": attempt,
            "error": sentence(error),
            "duration": round(duration, 3),
            "will_retry": not final,
        }
        if timed_out:
            payload["timed_out"] = True
        if log is not None:
            payload.update({"log": log[0], "log_sha256": log[1], "lines": log[2]})
        self._append(EventType.STEP_FAILED, payload, step=step.id)

    def _after_failure(self, step: Step, error: str, *, force_ask: bool = False) -> None:
        policy = "ask" if force_ask else step.on_failure
        st = self._recorder().state
        ss = st.step(step.id)
        if policy == "continue":
            self._append(
                EventType.STEP_FAILURE_ACCEPTED, {"policy": "continue", "error": sentence(error)}, step=step.id
            )
            ss.continued = True
            return
        if policy == "stop":
            raise StopIncident(f"Step {step.id!r} failed: {sentence(error)}")
        choices = (Choice.RETRY, Choice.SKIP, Choice.STOP, Choice.QUIT)
        d = self._decisions().ask(step, Ask.FAILURE, choices, error=sentence(error))
        if d.choice == Choice.RETRY:
            self._append(EventType.STEP_RETRY_REQUESTED, {"reason": d.reason or "operator chose retry"}, step=step.id)
            self._run_step(step)
        elif d.choice == Choice.SKIP:
            self._decisions().skip(step, d.reason)
        elif d.choice == Choice.QUIT:
            raise QuitRequested()
        else:
            raise StopIncident(f"Step {step.id!r} failed: {sentence(error)}")


def _journal_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v[-OUTPUT_JOURNAL_LIMIT:] if isinstance(v, str) and len(v) > OUTPUT_JOURNAL_LIMIT else v
        for k, v in outputs.items()
    }


def _tail(path: str | None, n: int) -> list[str]:
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-n:]
