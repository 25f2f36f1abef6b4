"""Run a command from an argv list, stream its output line by line, stop it on timeout or cancel.

Output is stdout and stderr merged, or, for machine output too long to stream (``stdout_to``),
stdout written to a file and only stderr streamed.

Never a shell: user values travel as argv elements. The child gets its own process group so a
timeout or cancel stops everything it started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runbook.core.errors import ActionError

GRACE_SECONDS = 3.0
CAPTURE_LIMIT = 1 << 20  # bytes of stdout kept for ``capture=True``


@dataclass
class ProcessResult:
    """How a command ended."""

    argv: list[str]
    exit_code: int
    tail: list[str]
    captured: str | None
    timed_out: bool = False
    cancelled: bool = False
    lines: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if wait is None:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_process(
    argv: list[str],
    *,
    log: Callable[[str], None],
    cancelled: threading.Event | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin_bytes: bytes | None = None,
    capture: bool = False,
    check: bool = False,
    tail_lines: int = 50,
    preexec_user: str | None = None,
    stdout_to: BinaryIO | None = None,
) -> ProcessResult:
    """Run ``argv`` and stream every output line (stdout and stderr merged) to ``log``.

    Args:
        argv: Program and arguments; a list, never a shell string.
        log: Receives each output line without its newline.
        cancelled: When set, the command is stopped.
        timeout: Seconds before the command is stopped and the result marked ``timed_out``.
        env: Extra environment variables (merged over the current environment).
        cwd: Working directory.
        stdin_bytes: Bytes fed to the command's stdin (otherwise stdin is /dev/null).
        capture: Keep up to 1 MiB of output in ``ProcessResult.captured``.
        check: Raise :class:`ActionError` if the command does not exit 0.
        tail_lines: How many last lines to keep in ``ProcessResult.tail``.
        preexec_user: Run as this system user (``runuser -u USER --``), used for PostgreSQL as root.
        stdout_to: Write stdout to this file instead (for machine output too long to stream
            line by line); only stderr then reaches ``log``, ``tail`` and ``captured``.

    Raises:
        ActionError: The program does not exist, or ``check`` and the command failed.
    """
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ActionError("A command must be a non-empty list of strings.")
    if any("\x00" in a for a in argv):
        raise ActionError("A command argument contains a NUL byte.")
    full_argv = ["runuser", "-u", preexec_user, "--", *argv] if preexec_user else list(argv)
    child_env = None
    if env is not None:
        child_env = dict(os.environ)
        child_env.update(env)
    try:
        proc = subprocess.Popen(
            full_argv,
            stdout=subprocess.PIPE if stdout_to is None else stdout_to,
            stderr=subprocess.STDOUT if stdout_to is None else subprocess.PIPE,
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ActionError(f"Command not found: {argv[0]!r} is not installed or not on PATH.") from None
    except PermissionError:
        raise ActionError(f"Command {argv[0]!r} is not executable.") from None
    except OSError as exc:
        raise ActionError(f"Could not start {argv[0]!r}: {exc.strerror or exc}.") from None

    done = threading.Event()
    why: list[str] = []

    def watchdog() -> None:
        # Off the hot path: polls for cancel, enforces the timeout, exits when the command ends.
        remaining = timeout
        while not done.is_set():
            step = 0.1 if remaining is None else min(0.1, max(remaining, 0.0))
            if done.wait(step):
                return
            if cancelled is not None and cancelled.is_set():
                why.append("cancelled")
                _kill_group(proc)
                return
            if remaining is not None:
                remaining -= step
                if remaining <= 0:
                    why.append("timeout")
                    _kill_group(proc)
                    return

    if timeout is not None or cancelled is not None:
        threading.Thread(target=watchdog, name="runbook-watchdog", daemon=True).start()

    if stdin_bytes is not None:
        assert proc.stdin is not None

        def feed() -> None:
            try:
                proc.stdin.write(stdin_bytes)  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                pass

        threading.Thread(target=feed, daemon=True).start()

    tail: deque[str] = deque(maxlen=max(tail_lines, 1))
    captured: list[str] | None = [] if capture else None
    captured_bytes = 0
    count = 0
    stream = proc.stdout if stdout_to is None else proc.stderr
    assert stream is not None
    leaving = True  # until the output ends normally: then the command is waited for, not stopped
    try:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            count += 1
            tail.append(line)
            if captured is not None and captured_bytes < CAPTURE_LIMIT:
                captured.append(line)
                captured_bytes += len(raw)
            log(line)
        leaving = False
    finally:
        stream.close()
        if leaving:  # ``log`` raised (say the step's log is on a full disk): stop the command too
            _kill_group(proc)
        exit_code = proc.wait()
        done.set()

    result = ProcessResult(
        argv=list(argv),
        exit_code=exit_code,
        tail=list(tail),
        captured="\n".join(captured) if captured is not None else None,
        timed_out="timeout" in why,
        cancelled="cancelled" in why,
        lines=count,
    )
    if check and not result.ok:
        raise ActionError(describe_failure(result))
    return result


def describe_failure(result: ProcessResult) -> str:
    """One sentence for a command that did not succeed."""
    prog = os.path.basename(result.argv[0])
    if result.timed_out:
        return f"{prog} was stopped: it exceeded its timeout."
    if result.cancelled:
        return f"{prog} was stopped by the operator."
    last = next((line.strip() for line in reversed(result.tail) if line.strip()), "")
    detail = f": {last[:300]}" if last else ""
    if result.exit_code < 0:
        return f"{prog} was killed by signal {-result.exit_code}{detail}."
    return f"{prog} exited with code {result.exit_code}{detail}."
