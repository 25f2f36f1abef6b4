"""One attempt of a step's action: run it with its context and log, enforce its timeout, and say
how it ended in one sentence.

The action runs inline when the step has no timeout (commands still stop on cancel through their
own watchdog), else in a worker thread that is told to stop at the deadline. An action that
ignores the stop is reported as *stuck*: the engine then never starts a second copy beside it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.actions.spec import Services, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, RunbookError
from runbook.core.procs import STEP_PROCESSES, start_time
from runbook.core.redact import Redactor
from runbook.engine.calls import Call
from runbook.engine.frontend import Frontend, OutputLine
from runbook.journal.logs import StepLog
from runbook.playbook.model import OutputSpec, Step

TIMEOUT_GRACE = 5.0
_TEXT_SOURCES = ("stdout", "last_line", "exit_code")


@dataclass
class AttemptOutcome:
    """How an attempt ended. ``error`` is None on success."""

    error: str | None
    duration: float
    digest: str
    lines: int
    outputs: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    stuck: bool = False  # it did not stop when told to and may still be running


@dataclass
class Attempt:
    """Everything one attempt needs from the engine."""

    incident: str
    mode: str
    step: Step
    call: Call
    log_path: Path
    workdir: Path
    timeout: float | None
    record_process: Callable[[dict[str, Any]], object] | None = None  # journals a command the step started


@dataclass(frozen=True)
class AttemptRunner:
    """Runs attempts for one engine (its environment, services, redactor, front end and cancel flag)."""

    environment: Environment
    services: Services
    redactor: Redactor
    frontend: Frontend
    cancel: threading.Event  # cancel_current() reaches the running action through it
    home: Path

    def run(self, attempt: Attempt) -> AttemptOutcome:
        log = StepLog(attempt.log_path)
        ctx = self._context(attempt, log)
        result: dict[str, Any] = {}
        failure: list[BaseException] = []
        assert attempt.call.spec is not None
        spec, params = attempt.call.spec, attempt.call.params

        def target() -> None:
            token = STEP_PROCESSES.set(_process_recorder(attempt.record_process))
            try:
                result.update(spec.run(ctx, params) or {})
            except KeyboardInterrupt:
                raise  # Ctrl-C: the operator leaves; not the step's failure (the engine pauses)
            except BaseException as exc:  # noqa: BLE001 - reported as the step's failure
                failure.append(exc)
            finally:
                STEP_PROCESSES.reset(token)

        started = time.monotonic()
        stuck = timed_out = False
        try:
            if attempt.timeout is None:
                target()  # no deadline to enforce from outside: save a thread per step
            else:
                stuck = _watch(target, ctx, attempt.timeout, started)
                timed_out = time.monotonic() - started >= attempt.timeout and ctx.cancelled.is_set()
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                log.close()  # what the step printed stays in its log
            raise
        duration = time.monotonic() - started
        try:
            digest = log.close()
        except OSError as exc:
            digest = ""
            failure.append(ActionError(self._disk_full(exc)))
        return self._outcome(attempt, result, failure, duration, timed_out, stuck, digest, log.lines)

    def _context(self, attempt: Attempt, log: StepLog) -> StepContext:
        redact = self.redactor.text
        step_id, incident = attempt.step.id, attempt.incident

        def emit_line(line: str) -> None:
            clean = redact(line)
            try:
                log.write(clean)
            except OSError as exc:
                # Stops the step (its command is ended); the failure is journaled if there is room.
                raise ActionError(self._disk_full(exc)) from None
            self.frontend.emit(OutputLine(incident, step_id, clean))

        attempt.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cancel.clear()
        return StepContext(
            incident,
            step_id,
            attempt.mode,
            self.environment,
            attempt.workdir,
            emit_line,
            cancelled=self.cancel,
            timeout=attempt.timeout,
            redact=redact,
            services=self.services,
        )

    def _disk_full(self, exc: OSError) -> str:
        return f"the step's log could not be written ({exc.strerror}): free space under {self.home}, then resume"

    def _outcome(
        self,
        attempt: Attempt,
        result: dict[str, Any],
        failure: list[BaseException],
        duration: float,
        timed_out: bool,
        stuck: bool,
        digest: str,
        lines: int,
    ) -> AttemptOutcome:
        step = attempt.step
        timeout_error = f"it did not finish within its timeout of {step.timeout} and was stopped"
        error: str | None = None
        if timed_out:
            self.cancel.clear()
            error = timeout_error
        elif self.cancel.is_set():
            self.cancel.clear()
            error = "it was stopped by the operator"
        elif failure:
            exc = failure[0]
            if attempt.timeout is not None and duration >= attempt.timeout:
                timed_out, error = True, timeout_error
            else:
                error = str(exc) if isinstance(exc, RunbookError) else f"{type(exc).__name__}: {exc}"
        outputs: dict[str, Any] = {}
        if error is None:
            try:
                outputs = step_outputs(step, result, attempt.log_path)
            except ActionError as exc:
                error = str(exc)
        if stuck:
            error = (
                f"{error or 'it failed'} It did not stop when told to and may still be running: check before retrying"
            )
        if error is not None:
            error = self.redactor.text(error)  # a command's last output line may carry a secret
        return AttemptOutcome(error, duration, digest, lines, outputs, timed_out, stuck)


def _process_recorder(record: Callable[[dict[str, Any]], object] | None) -> Callable[[int, str], None] | None:
    """What the process runner calls for each command the step starts: journal who it is."""
    if record is None:
        return None

    def started(pid: int, program: str) -> None:
        record({"pid": pid, "pgid": pid, "started": start_time(pid), "program": program})

    return started


def _watch(target: Any, ctx: StepContext, timeout: float, started: float) -> bool:
    """Run ``target`` in a worker thread and stop it (via ctx.cancelled) at the deadline.

    Returns True when the action is still running after the grace period (it ignored the stop).
    """
    worker = threading.Thread(target=target, name=f"step-{ctx.step_id}", daemon=True)
    worker.start()
    try:
        return _wait_worker(worker, ctx, timeout, started)
    except KeyboardInterrupt:
        ctx.cancelled.set()  # Ctrl-C: the action stops its command before we leave
        worker.join(TIMEOUT_GRACE)
        raise


def _wait_worker(worker: threading.Thread, ctx: StepContext, timeout: float, started: float) -> bool:
    while worker.is_alive():
        worker.join(max(0.0, min(0.2, timeout - (time.monotonic() - started))))
        if not worker.is_alive():
            return False
        if ctx.cancelled.is_set() or time.monotonic() - started >= timeout:
            ctx.cancelled.set()
            worker.join(TIMEOUT_GRACE)
            return worker.is_alive()
    return False


def step_outputs(step: Step, result: dict[str, Any], log_path: Path) -> dict[str, Any]:
    """The action's outputs plus the step's own (``outputs:`` with a source and an optional regex)."""
    outputs = dict(result)
    for name, spec in step.outputs.items():
        source = spec.source if isinstance(spec, OutputSpec) else spec
        regex = spec.regex if isinstance(spec, OutputSpec) else None
        text = _source_text(source, result, log_path)
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


def _source_text(source: str, result: dict[str, Any], log_path: Path) -> Any:
    text = result.get(source)
    if text is None and source in ("stdout", "last_line"):
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if source == "last_line":
            text = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
    return text
