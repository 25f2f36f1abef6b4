"""The run loop: one loop for every kind of step, every mode, and resume.

Safety rules it enforces, whatever the front end:

* every event is journaled (durably) before a front end hears of it;
* a mutating step asks ``yes``, a destructive one asks for the target typed exactly; a playbook
  can only raise that;
* dry-run runs read-only steps for real and only shows mutating ones, resolved;
* a step that was started but never finished (crash, kill, lost connection) is never re-run
  without a person choosing retry, mark done or skip;
* values reach commands as argv elements or API arguments; secrets are masked everywhere.
"""

from __future__ import annotations

import re
import secrets as pysecrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.actions.registry import get_action
from runbook.actions.spec import Services, StepContext
from runbook.core import incident as S
from runbook.core.durations import parse_duration
from runbook.core.effect import Effect
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, NeedsHuman, RunbookError, UsageError
from runbook.core.redact import Redactor
from runbook.engine.frontend import (
    Ask,
    Choice,
    Frontend,
    Journaled,
    OutputLine,
    Request,
    StepChanged,
)
from runbook.journal.logs import StepLog, step_log_path
from runbook.journal.store import Event, Journal, JournalError, LostLockError
from runbook.playbook import params as P
from runbook.playbook.model import ConfirmTyped, Mode, OutputSpec, Playbook, Step
from runbook.playbook.refs import (
    RefError,
    Unknown,
    contains_unknown,
    evaluate_condition,
    make_lookup,
    parse_condition,
    render,
)
from runbook.playbook.validate import Loaded, required_confirm, step_effect, validate_raw

OUTPUT_JOURNAL_LIMIT = 64 * 1024  # chars of one output value kept in the journal
TIMEOUT_GRACE = 5.0


def new_incident_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{pysecrets.token_hex(2)}"


@dataclass
class Outcome:
    """How a run ended: ``completed``, ``failed``, ``paused`` or ``needs-human``."""

    incident: str
    status: str
    message: str = ""

    @property
    def exit_code(self) -> int:
        # taken-over: someone else drives it now; a script must not read that as success.
        return {"completed": 0, "failed": 1, "paused": 0, "needs-human": 3, "taken-over": 1}.get(self.status, 1)


class _Quit(Exception):
    """The operator quit: pause the incident."""


class _Stop(Exception):
    """The incident ends as failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Engine:
    """Runs incidents. Front ends call :meth:`open` or :meth:`resume`, then :meth:`run`.

    Args:
        journal: Where events go.
        frontend: Receives events and answers questions.
        home: State directory (step logs, per-incident work directories).
        environment: The store connections for the incident.
        services: What actions may use besides the stores (the Slack outbox).
    """

    def __init__(
        self, journal: Journal, frontend: Frontend, *, home: Path, environment: Environment, services: Services | None = None
    ) -> None:
        self.journal = journal
        self.services = services or Services()
        self.frontend = frontend
        self.home = home
        self.environment = environment
        self.redactor = Redactor(environment.secret_values())
        self.playbook: Playbook | None = None
        self.state: S.IncidentState | None = None
        self._cancel = threading.Event()
        self._lock = threading.RLock()

    # -- journaling --------------------------------------------------------------------------

    def _append(self, type_: str, payload: dict[str, Any] | None = None, *, step: str | None = None) -> Event:
        return self._append_all([(type_, payload, step)])[0]

    def _append_all(self, items: list[tuple[str, dict[str, Any] | None, str | None]]) -> list[Event]:
        """Journal events in one transaction (all or none survive a crash), then apply and emit them."""
        assert self.state is not None
        with self._lock:  # notes arrive from the front end's thread while the engine runs
            events = self.journal.append_many(
                self.state.id, [(t, self.redactor.value(p or {}), step) for t, p, step in items]
            )
            for ev in events:
                S.apply(self.state, ev)
        for ev in events:
            self.frontend.emit(Journaled(self.state.id, ev))
            if ev.step is not None and ev.type.startswith("step_"):
                self.frontend.emit(StepChanged(self.state.id, ev.step, self.state.step(ev.step).status))
        return events

    def add_note(self, text: str) -> Event:
        """Journal a note from the operator (safe to call from any thread)."""
        text = P.check_text("note", text.strip(), allow_newlines=True)
        if not text:
            raise UsageError("A note cannot be empty.")
        with self._lock:
            return self._append("note", {"text": text})

    def cancel_current(self) -> None:
        """Stop the running step (its command is terminated); the step is recorded as failed."""
        self._cancel.set()

    # -- opening -----------------------------------------------------------------------------

    def open(self, loaded: Loaded, given: dict[str, Any], *, mode: str = "live", drill: bool = False) -> S.IncidentState:
        """Bind params and open a new incident (journaled), locked to this process.

        Raises:
            UsageError: Invalid playbook or parameter values (nothing is journaled or run).
        """
        if not loaded.ok or loaded.playbook is None:
            first = loaded.errors[0] if loaded.errors else "invalid playbook"
            raise UsageError(f"The playbook is not valid: {first}")
        pb = loaded.playbook
        try:
            mode = Mode(mode).value
        except ValueError:
            raise UsageError(f"Unknown mode {mode!r}: use live, dry-run or drill.") from None
        if mode == Mode.DRILL.value and self.environment.production:
            raise UsageError(f"A drill cannot run against the production environment {self.environment.name!r}: drill on the sandbox or a staging environment.")
        try:
            bound = P.bind(pb.params, given, self.environment.lookup)
        except P.ParamError as exc:
            raise UsageError(_sentence(_capitalized(str(exc)))) from None
        for name, spec in pb.params.items():
            if spec.secret and bound.get(name):
                self.redactor.add(bound[name])
        text = loaded.path.read_text(encoding="utf-8")
        incident = new_incident_id()
        while self.journal.events_page(incident, -1, 1):
            incident = new_incident_id()  # two incidents opened in the same second
        self.playbook = pb
        self.state = S.IncidentState(incident)
        self.journal.acquire(incident)
        started = datetime.now(UTC)
        opening: list[tuple[str, dict[str, Any] | None, str | None]] = [(
            "incident_opened",
            {
                "playbook": pb.id,
                "playbook_path": str(loaded.path),
                "playbook_text": text,
                "title": pb.title,
                "tier": pb.tier.value,
                "level": pb.level,
                "env": self.environment.name,
                "env_location": self.environment.location or None,
                "mode": mode,
                "rto": pb.rto_seconds,
                "rpo": pb.rpo_seconds,
                "started": f"{started:%Y%m%d_%H%M%S}",
                "pid": __import__("os").getpid(),
            },
            None,
        )]
        for name, value in bound.items():
            spec = pb.params[name]
            if spec.secret:
                opening.append(("param_bound", {"name": name, "secret": True, "provided": value is not None}, None))
            else:
                opening.append(("param_bound", {"name": name, "value": value}, None))
        # One transaction: a kill while opening leaves no incident rather than one missing params.
        self._append_all(opening)
        self._secret_values = {n: v for n, v in bound.items() if pb.params[n].secret}
        return self.state

    def resume(self, incident: str, *, take_over: bool = False, secrets: dict[str, str] | None = None) -> S.IncidentState:
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
            st = S.fold(incident, self.journal.events(incident))
            if st.status == "completed":
                raise RunbookError(f"Incident {incident} is already completed; nothing to resume.")
            raw = _load_text(st.playbook_text)
            loaded = validate_raw(raw, Path(st.playbook_path or f"{st.playbook_id}.yaml"))
            if loaded.playbook is None or loaded.errors:
                raise RunbookError(f"The playbook journaled with incident {incident} cannot be loaded: {loaded.errors[0]}")
            self.playbook = loaded.playbook
            # Secrets are collected and checked before anything is journaled.
            self._secret_values = {}
            for name in st.secret_params:
                value = (secrets or {}).get(name)
                if value is None:
                    d = self.frontend.decide(Request(Ask.SECRET, incident, None, title=f"Value of secret parameter {name!r}", choices=(Choice.VALUE, Choice.QUIT), extra={"param": name}))
                    if d.choice != Choice.VALUE or not d.value:
                        raise NeedsHuman(f"Incident {incident} needs the secret parameter {name!r}: set RUNBOOK_PARAM_{name.upper()} and resume.")
                    value = d.value
                spec = self.playbook.params.get(name)
                if spec is not None:
                    try:
                        value = P.coerce(name, spec, value)
                    except P.ParamError as exc:
                        raise UsageError(_sentence(_capitalized(str(exc)))) from None
                self.redactor.add(value)
                self._secret_values[name] = value
        except BaseException:
            self.journal.release(incident)
            raise
        self.state = st
        if previous is not None and previous.alive():
            self._append("take_over", {"from": previous.holder, "from_pid": previous.pid, "since": previous.since})
        else:
            self._append("resumed", {"stale_lock": previous.holder if previous else None})
        if st.closed is not None:
            self._append("reopened", {"was": st.status})
        return st

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run from the first unfinished step to the end (or a pause/failure). Releases the lock."""
        assert self.state is not None and self.playbook is not None
        st = self.state
        try:
            for step in self.playbook.steps:
                self._run_step(step)
            return self._close()
        except _Quit:
            self._pause("operator quit")
            return Outcome(st.id, "paused", f"Incident {st.id} paused; resume it with `runbook resume {st.id}`.")
        except NeedsHuman as exc:
            self._pause(str(exc))
            return Outcome(st.id, "needs-human", str(exc))
        except _Stop as exc:
            self._append("incident_closed", self._closing("failed", str(exc)))
            return Outcome(st.id, "failed", str(exc))
        except LostLockError as exc:
            return Outcome(st.id, "taken-over", str(exc))
        except JournalError as exc:
            # The disk may be full: stop cleanly; what is journaled stays.
            return Outcome(st.id, "failed", str(exc))
        finally:
            self.journal.release(st.id)

    def _pause(self, reason: str) -> None:
        try:
            self._append("paused", {"reason": reason})
        except JournalError:
            pass

    def _closing(self, status: str, message: str = "") -> dict[str, Any]:
        st = self.state
        assert st is not None
        elapsed = st.elapsed
        out: dict[str, Any] = {"status": status, "elapsed": round(elapsed, 3), "rto_target": st.rto}
        if st.rto is not None:
            out["rto_met"] = elapsed <= st.rto
        if message:
            out["message"] = message
        failed = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and not s.continued]
        if failed:
            out["failed_steps"] = failed
        return out

    def _close(self) -> Outcome:
        st = self.state
        assert st is not None
        # A failure the playbook accepted (on_failure: continue) is recorded, not fatal.
        failed = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and not s.continued]
        accepted = [s.id for s in st.steps.values() if s.status == S.StepStatus.FAILED and s.continued]
        status = "failed" if failed else "completed"
        msg = f"steps failed: {', '.join(failed)}" if failed else ""
        closing = self._closing(status, msg)
        if accepted:
            closing["failures_accepted"] = accepted
        self._append("incident_closed", closing)
        return Outcome(st.id, status, msg)

    # -- one step -------------------------------------------------------------------------------

    def _lookup(self, *, unknown_outputs: bool = False) -> Any:
        st = self.state
        assert st is not None
        params = dict(st.params)
        params.update(getattr(self, "_secret_values", {}))
        workdir = self.home / "incidents" / st.id
        return make_lookup(
            params=params,
            outputs=st.outputs(),
            incident={"id": st.id, "started": st.started_compact, "workdir": str(workdir), "operator": st.operator},
            env=self.environment.lookup,
            mode=st.mode,
            unknown_outputs=unknown_outputs,
        )

    def _run_step(self, step: Step) -> None:
        st = self.state
        assert st is not None
        ss = st.step(step.id)
        if ss.status in S.RESOLVED or (ss.status == S.StepStatus.FAILED and ss.continued):
            return
        dry = st.mode == Mode.DRY_RUN
        if ss.status == S.StepStatus.RUNNING and step.kind == "manual":
            pass  # nothing ran by itself: ask the operator again below
        elif ss.status == S.StepStatus.RUNNING:
            self._resolve_interrupted(step, ss)
            if ss.status in S.RESOLVED:
                return
        elif ss.status == S.StepStatus.FAILED:
            # A failed incident was reopened: the failed step needs a decision.
            self._after_failure(step, ss.error or "it failed", force_ask=True)
            if ss.status in S.RESOLVED or ss.continued:
                return

        lookup = self._lookup(unknown_outputs=dry)
        if step.when is not None:
            try:
                verdict = evaluate_condition(parse_condition(step.when), lookup)
            except (RefError, ActionError) as exc:
                self._fail_step(step, 0, f"its condition could not be evaluated: {exc}", 0.0, None, final=True)
                self._after_failure(step, str(exc))
                return
            if isinstance(verdict, Unknown):
                self._append("step_planned", {"reason": f"depends on {verdict.ref}", "when": step.when}, step=step.id)
                return
            if not verdict:
                self._append("step_skipped", {"reason": f"condition is false: {step.when}", "by": "engine"}, step=step.id)
                return

        while True:  # until the step is resolved (run, skipped, failed-and-handled)
            try:
                call = self._resolve(step, lookup)
            except (RefError, ActionError) as exc:
                self._fail_step(step, ss.attempts + 1, _sentence(str(exc)), 0.0, None, final=True)
                self._after_failure(step, str(exc))
                return
            if dry and (call["effect"] != Effect.READ_ONLY.value or step.kind == "manual"):
                self._append("step_planned", {"action": call["describe"], "run": call["action"], "effect": call["effect"], "target": call["target"], "confirm": call["confirm"]}, step=step.id)
                return
            if dry and contains_unknown(call["params"]):
                self._append("step_planned", {"action": call["describe"], "run": call["action"], "effect": call["effect"], "reason": "needs outputs of steps that did not run"}, step=step.id)
                return

            decision = self.frontend.decide(self._request(Ask.BEFORE_STEP, step, call, choices=(Choice.RUN, Choice.SKIP, Choice.QUIT)))
            if decision.choice == Choice.QUIT:
                raise _Quit()
            if decision.choice == Choice.SKIP:
                self._skip(step, decision.reason)
                return

            if step.kind == "manual":
                self._manual(step, call)
                return

            if not self._confirm(step, call):
                if ss.status in S.RESOLVED:
                    return  # skipped from the confirmation
                continue  # refused: ask again what to do with this step

            attempts_left = step.retries + 1
            force_ask = False
            while attempts_left > 0:
                attempts_left -= 1
                ok, error, stuck = self._execute(step, call, final=attempts_left == 0)
                if ok:
                    return
                if stuck:
                    # The action did not stop when told: never start a second copy beside it.
                    force_ask = True
                    break
                if attempts_left > 0:
                    delay = parse_duration(step.retry_delay)
                    if self._cancel.wait(delay):
                        self._cancel.clear()
                        self._fail_step(step, ss.attempts, "the retries were stopped by the operator", 0.0, None, final=True)
                        break
                    try:
                        call = self._resolve(step, self._lookup())
                    except (RefError, ActionError):
                        pass
            self._after_failure(step, error or "it failed", force_ask=force_ask)
            return

    def _resolve(self, step: Step, lookup: Any) -> dict[str, Any]:
        return resolve_call(step, lookup, self.redactor)

    def _request(self, ask: Ask, step: Step, call: dict[str, Any], **kw: Any) -> Request:
        assert self.state is not None
        return Request(
            ask=ask,
            incident=self.state.id,
            step=step.id,
            title=step.label,
            description=step.description or "",
            action=call.get("describe", ""),
            effect=call.get("effect", ""),
            target=call.get("target", ""),
            confirm=call.get("confirm", "none"),
            attempt=self.state.step(step.id).attempts,
            **kw,
        )

    def _confirm(self, step: Step, call: dict[str, Any]) -> bool:
        level = call["confirm"]
        if level == "none":
            return True
        expected = call["expected"]
        for _ in range(3):
            self.frontend.emit(StepChanged(self.state.id, step.id, "needs-confirmation"))  # type: ignore[union-attr]
            d = self.frontend.decide(
                self._request(Ask.CONFIRM, step, call, expected=expected, choices=(Choice.CONFIRM, Choice.REFUSE, Choice.SKIP, Choice.QUIT))
            )
            if d.choice == Choice.QUIT:
                raise _Quit()
            if d.choice == Choice.SKIP:
                self._skip(step, d.reason)
                return False
            if d.choice == Choice.REFUSE:
                self._append("confirmation_refused", {"level": level, "action": call["describe"], "target": call["target"]}, step=step.id)
                return False
            if level == "typed":
                typed = d.typed if d.typed is not None else ""
                try:
                    typed = P.check_text("typed confirmation", typed)
                except P.ParamError:
                    typed = typed.encode("utf-8", "replace").decode("utf-8")[:200]  # journaled as refused below
                if typed != expected:
                    self._append("confirmation_refused", {"level": level, "typed": typed, "expected": expected, "reason": "typed value does not match"}, step=step.id)
                    continue
                self._append("confirmation_given", {"level": level, "typed": typed, "action": call["describe"], "target": call["target"], "effect": call["effect"], "how": d.reason or "operator"}, step=step.id)
                return True
            self._append("confirmation_given", {"level": level, "action": call["describe"], "target": call["target"], "effect": call["effect"], "how": d.reason or "operator"}, step=step.id)
            return True
        raise NeedsHuman(f"Step {step.id!r} was not confirmed: the typed value did not match {expected!r}.")

    def _skip(self, step: Step, reason: str | None) -> None:
        reason = (reason or "").strip()
        if not reason:
            raise NeedsHuman(f"Skipping step {step.id!r} needs a reason.")
        self._append("step_skipped", {"reason": P.check_text("reason", reason[:2000], allow_newlines=True), "by": "operator"}, step=step.id)

    def _manual(self, step: Step, call: dict[str, Any]) -> None:
        ss = self.state.step(step.id)  # type: ignore[union-attr]
        if ss.status != S.StepStatus.RUNNING:
            self._append("step_started", {"attempt": ss.attempts + 1, "action": "manual", "effect": "manual"}, step=step.id)
        d = self.frontend.decide(self._request(Ask.MANUAL, step, call, choices=(Choice.DONE, Choice.SKIP, Choice.QUIT)))
        if d.choice == Choice.DONE:
            self._append("step_finished", {"manual": True, "note": d.reason, "outputs": {}, "duration": None}, step=step.id)
        elif d.choice == Choice.SKIP:
            self._skip(step, d.reason)
        else:
            raise _Quit()

    def _execute(self, step: Step, call: dict[str, Any], *, final: bool = True) -> tuple[bool, str | None, bool]:
        """Run one attempt. Returns (ok, error, still running after being told to stop)."""
        st = self.state
        assert st is not None
        ss = st.step(step.id)
        attempt = ss.attempts + 1
        log_path = step_log_path(self.home, st.id, step.id, attempt)
        self._append(
            "step_started",
            {"attempt": attempt, "action": call["describe"], "effect": call["effect"], "target": call["target"], "log": str(log_path)},
            step=step.id,
        )
        log = StepLog(log_path)
        redact = self.redactor.text
        incident_id = st.id

        def emit_line(line: str) -> None:
            clean = redact(line)
            try:
                log.write(clean)
            except OSError as exc:
                # Stops the step (its command is ended); the failure is journaled if there is room.
                raise ActionError(f"the step's log could not be written ({exc.strerror}): free space under {self.home}, then resume") from None
            self.frontend.emit(OutputLine(incident_id, step.id, clean))

        workdir = self.home / "incidents" / st.id
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        timeout = parse_duration(step.timeout) if step.timeout is not None else None
        self._cancel.clear()
        ctx = StepContext(
            incident_id=st.id,
            step_id=step.id,
            mode=st.mode,
            environment=self.environment,
            workdir=workdir,
            log=emit_line,
            cancelled=self._cancel,  # cancel_current() reaches the running action directly
            timeout=timeout,
            redact=redact,
            services=self.services,
        )
        result: dict[str, Any] = {}
        failure: list[BaseException] = []

        def target() -> None:
            try:
                result.update(call["impl"].run(ctx, call["params"]) or {})
            except BaseException as exc:  # noqa: BLE001 - reported as the step's failure
                failure.append(exc)

        started = time.monotonic()
        timed_out = False
        stuck = False
        if timeout is None:
            # No deadline to enforce from outside: run inline (commands still stop on cancel,
            # through their own watchdog), saving a thread per step.
            target()
        else:
            stuck = self._watch(target, ctx, timeout, started)
            timed_out = time.monotonic() - started >= timeout and ctx.cancelled.is_set()
        duration = time.monotonic() - started
        try:
            digest = log.close()
        except OSError as exc:
            digest = ""
            failure.append(ActionError(f"the step's log could not be written ({exc.strerror}): free space under {self.home}, then resume"))
        if timed_out:
            self._cancel.clear()
            error = f"it did not finish within its timeout of {step.timeout} and was stopped"
        elif self._cancel.is_set():
            self._cancel.clear()
            error = "it was stopped by the operator"
        elif failure:
            exc = failure[0]
            if timeout is not None and duration >= timeout:
                timed_out = True
                error = f"it did not finish within its timeout of {step.timeout} and was stopped"
            elif isinstance(exc, RunbookError):
                error = str(exc)
            else:
                error = f"{type(exc).__name__}: {exc}"
        else:
            error = None
        if error is None:
            try:
                outputs = self._outputs(step, result, log_path)
            except ActionError as exc:
                error = str(exc)
        if stuck:
            error = f"{error or 'it failed'} It did not stop when told to and may still be running: check before retrying"
        if error is not None:
            self._fail_step(step, attempt, error, duration, (str(log_path), digest, log.lines), final=final or stuck, timed_out=timed_out)
            return False, error, stuck
        self._append(
            "step_finished",
            {"outputs": _journal_outputs(outputs), "duration": round(duration, 3), "log": str(log_path), "log_sha256": digest, "lines": log.lines},
            step=step.id,
        )
        return True, None, False

    def _watch(self, target: Any, ctx: StepContext, timeout: float, started: float) -> bool:
        """Run ``target`` in a worker thread and stop it (via ctx.cancelled) at the deadline.

        Returns True when the action is still running after the grace period (it ignored the stop).
        """
        worker = threading.Thread(target=target, name=f"step-{ctx.step_id}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(max(0.0, min(0.2, timeout - (time.monotonic() - started))))
            if not worker.is_alive():
                return False
            if ctx.cancelled.is_set() or time.monotonic() - started >= timeout:
                ctx.cancelled.set()
                worker.join(TIMEOUT_GRACE)
                return worker.is_alive()
        return False

    def _fail_step(self, step: Step, attempt: int, error: str, duration: float, log: tuple[str, str, int] | None, *, final: bool, timed_out: bool = False) -> None:
        payload: dict[str, Any] = {"attempt": attempt, "error": _sentence(error), "duration": round(duration, 3), "will_retry": not final}
        if timed_out:
            payload["timed_out"] = True
        if log is not None:
            payload.update({"log": log[0], "log_sha256": log[1], "lines": log[2]})
        self._append("step_failed", payload, step=step.id)

    def _after_failure(self, step: Step, error: str, *, force_ask: bool = False) -> None:
        policy = "ask" if force_ask else step.on_failure
        ss = self.state.step(step.id)  # type: ignore[union-attr]
        if policy == "continue":
            self._append("step_failure_accepted", {"policy": "continue", "error": _sentence(error)}, step=step.id)
            ss.continued = True
            return
        if policy == "stop":
            raise _Stop(f"Step {step.id!r} failed: {_sentence(error)}")
        d = self.frontend.decide(
            Request(Ask.FAILURE, self.state.id, step.id, title=step.label, description=step.description or "", error=_sentence(error), attempt=ss.attempts, choices=(Choice.RETRY, Choice.SKIP, Choice.STOP, Choice.QUIT))  # type: ignore[union-attr]
        )
        if d.choice == Choice.RETRY:
            self._append("step_retry_requested", {"reason": d.reason or "operator chose retry"}, step=step.id)
            self._run_step(step)
        elif d.choice == Choice.SKIP:
            self._skip(step, d.reason)
        elif d.choice == Choice.QUIT:
            raise _Quit()
        else:
            raise _Stop(f"Step {step.id!r} failed: {_sentence(error)}")

    def _resolve_interrupted(self, step: Step, ss: S.StepState) -> None:
        st = self.state
        assert st is not None
        last = _tail(ss.log, 20)
        d = self.frontend.decide(
            Request(
                Ask.INTERRUPTED,
                st.id,
                step.id,
                title=step.label,
                description=step.description or "",
                effect=step_effect(step).value,
                attempt=ss.attempts,
                choices=(Choice.RETRY, Choice.DONE, Choice.SKIP, Choice.QUIT),
                extra={"started_at": ss.started, "last_output": last, "log": ss.log},
            )
        )
        reason = (d.reason or "").strip()
        try:
            reason = P.check_text("reason", reason[:2000], allow_newlines=True)
        except P.ParamError as exc:
            raise UsageError(_sentence(_capitalized(str(exc)))) from None
        if d.choice == Choice.QUIT:
            raise _Quit()
        if d.choice in (Choice.DONE, Choice.SKIP) and not reason:
            raise NeedsHuman(f"Step {step.id!r} was interrupted: a reason is needed to mark it done or skip it.")
        self._append("interrupted_resolved", {"choice": d.choice.value, "reason": reason or None, "started_at": ss.started}, step=step.id)
        if d.choice == Choice.RETRY:
            self._append("step_retry_requested", {"reason": reason or "retry after interruption"}, step=step.id)
        elif d.choice == Choice.DONE:
            self._append("step_marked_done", {"reason": reason}, step=step.id)
        elif d.choice == Choice.SKIP:
            self._append("step_skipped", {"reason": reason, "by": "operator"}, step=step.id)
        else:
            raise NeedsHuman(f"Step {step.id!r} was interrupted and needs a decision.")

    def _outputs(self, step: Step, result: dict[str, Any], log_path: Path) -> dict[str, Any]:
        outputs = dict(result)
        for name, spec in step.outputs.items():
            source = spec.source if isinstance(spec, OutputSpec) else spec
            regex = spec.regex if isinstance(spec, OutputSpec) else None
            if source in ("stdout", "last_line", "exit_code"):
                text = result.get(source)
                if text is None and source in ("stdout", "last_line"):
                    text = log_path.read_text(encoding="utf-8", errors="replace")
                    if source == "last_line":
                        text = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            else:
                text = result.get(source)
            if regex is not None:
                matches = [m for m in (re.search(regex, ln) for ln in str(text or "").splitlines()) if m]
                if not matches:
                    raise ActionError(f"output {name!r}: no line matched {regex!r}")
                m = matches[-1]
                text = m.group(1) if m.groups() else m.group(0)
            elif isinstance(text, str) and source == "stdout":
                text = text.strip()
            outputs[name] = text
        return outputs


def resolve_call(step: Step, lookup: Any, redactor: Redactor) -> dict[str, Any]:
    """The exact call: action, validated params, description, target, effect, confirmation."""
    if step.kind == "manual":
        return {"action": "manual", "params": None, "effect": Effect.READ_ONLY.value, "target": "", "confirm": "none", "describe": "manual step", "expected": None, "impl": None}
    if step.kind == "shell":
        action = get_action("shell")
        # Every argv element is text: an int or bool param becomes its written form.
        raw = {"argv": [_argv_text(a) for a in render(step.shell, lookup)], "env": {k: _argv_text(v) for k, v in render(step.env, lookup).items()}}
        if step.cwd:
            raw["cwd"] = render(step.cwd, lookup)
    else:
        action = get_action(step.run or "")
        if action is None:
            raise ActionError(f"unknown action {step.run!r}")
        raw = render(step.with_, lookup)
    assert action is not None
    if contains_unknown(raw):
        return {"action": action.name, "params": raw, "effect": step_effect(step).value, "target": "", "confirm": required_confirm(step), "describe": redactor.text(_describe_unknown(action.name, raw)), "expected": None, "impl": action}
    try:
        params = action.Params.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError
        raise ActionError(_pydantic_sentence(action.name, exc)) from None
    target = action.target(params)
    confirm = required_confirm(step)
    expected = None
    if confirm == "typed":
        expected = render(step.confirm.typed, lookup) if isinstance(step.confirm, ConfirmTyped) else target
        expected = str(expected)
        if not expected.strip():
            # An empty value would let Enter alone confirm a destructive step.
            raise ActionError("its typed confirmation has nothing to type (the target resolved to an empty value)")
    return {
        "action": action.name,
        "params": params,
        "effect": step_effect(step).value,
        "target": redactor.text(str(target)),
        "confirm": confirm,
        "describe": redactor.text(action.describe(params)),
        "expected": expected,
        "impl": action,
    }


def _argv_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, sort_keys=True, default=str)  # one argv element, machine-readable
    return value


def _journal_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in outputs.items():
        if isinstance(v, str) and len(v) > OUTPUT_JOURNAL_LIMIT:
            v = v[-OUTPUT_JOURNAL_LIMIT:]
        out[k] = v
    return out


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


def _load_text(text: str) -> Any:
    from runbook.playbook import yamlload

    return yamlload.loads(text)


def _describe_unknown(name: str, raw: Any) -> str:
    if name == "shell" and isinstance(raw, dict):
        return " ".join(str(a) for a in raw.get("argv", []))
    return f"{name}({', '.join(f'{k}={v}' for k, v in (raw or {}).items())})"


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str) -> str:
    # One line ending in a full stop; the case is left alone (it may start with a program name).
    text = " ".join(str(text).split())
    if not text:
        return text
    return text if text.endswith((".", "!", "?")) else text + "."


def _pydantic_sentence(action: str, exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        errs = errors()
        if errs:
            e = errs[0]
            where = ".".join(str(p) for p in e.get("loc", ()))
            return f"action {action}: {where}: {e.get('msg', 'invalid value').removeprefix('Value error, ')}"
    return f"action {action}: {exc}"
