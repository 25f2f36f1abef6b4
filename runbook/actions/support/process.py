"""The one process runner: argv lists, output streamed line by line, stopped on timeout or cancel.

Output is stdout and stderr merged, or, for machine output too long to stream (``stdout_to``),
stdout written to a file and only stderr streamed. :func:`run_pipeline` runs ``producer |
consumer`` with the bytes relayed through us, so the consumer never sees a stream whose producer
failed.

Never a shell: user values travel as argv elements. Each child gets its own process group so a
timeout or cancel stops everything it started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from runbook.actions.support.reaper import REAPER
from runbook.core.errors import ActionError
from runbook.core.procs import STEP_PROCESSES

GRACE_SECONDS = 3.0
CAPTURE_LIMIT = 1 << 20  # bytes of stdout kept for ``capture=True``
RELAY_CHUNK = 1 << 20


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


def kill_group(proc: subprocess.Popen[bytes], grace: float | None = GRACE_SECONDS) -> None:
    """Stop ``proc``'s process group: SIGTERM, then SIGKILL after ``grace`` (None: SIGKILL at once)."""
    steps = ((signal.SIGTERM, grace), (signal.SIGKILL, None)) if grace is not None else ((signal.SIGKILL, None),)
    for sig, wait in steps:
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


@contextlib.contextmanager
def watchdog(
    stop: Callable[[str], None], *, cancelled: threading.Event | None, timeout: float | None
) -> Iterator[list[str]]:
    """While the block runs, call ``stop("cancelled"|"timeout")`` once if either happens.

    Yields the list the reason is appended to. Off the hot path: one thread polling every 0.1 s.
    """
    why: list[str] = []
    if cancelled is None and timeout is None:
        yield why
        return
    done = threading.Event()
    deadline = None if timeout is None else time.monotonic() + timeout

    def watch() -> None:
        while not done.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))):
            if cancelled is not None and cancelled.is_set():
                why.append("cancelled")
            elif deadline is not None and time.monotonic() >= deadline:
                why.append("timeout")
            else:
                continue
            stop(why[0])
            return

    threading.Thread(target=watch, name="runbook-watchdog", daemon=True).start()
    try:
        yield why
    finally:
        done.set()


def check_argv(argv: Any) -> None:
    """One sentence unless ``argv`` is a non-empty list of strings without NUL bytes."""
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ActionError("A command must be a non-empty list of strings.")
    if any("\x00" in a for a in argv):
        raise ActionError("A command argument contains a NUL byte.")


def start(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``Popen`` in a new session, with one sentence when the program cannot be started.

    The new process group is watched by this process's reaper (it dies with us) and, inside a
    step, journaled before anyone waits for it (a resume then knows what may still be running).
    Callers :func:`release` it once it has been waited for.
    """
    check_argv(argv)
    try:
        proc = subprocess.Popen(argv, start_new_session=True, **popen)
    except FileNotFoundError:
        raise ActionError(f"Command not found: {argv[0]!r} is not installed or not on PATH.") from None
    except PermissionError:
        raise ActionError(f"Command {argv[0]!r} is not executable.") from None
    except OSError as exc:
        raise ActionError(f"Could not start {argv[0]!r}: {exc.strerror or exc}.") from None
    REAPER.watch(proc.pid)
    listener = STEP_PROCESSES.get()
    if listener is not None:
        try:
            listener(proc.pid, os.path.basename(argv[0]))
        except BaseException:
            kill_group(proc, None)  # a command the journal does not know of must not run
            proc.wait()
            release(proc)
            raise
    return proc


def release(proc: subprocess.Popen[bytes]) -> None:
    """Stop watching ``proc``'s group once it has been waited for (its id may then be reused)."""
    if proc.returncode is not None:
        REAPER.forget(proc.pid)


@dataclass
class _Lines:
    """What a pump keeps of a stream: the count, the tail, and (optionally) the first MiB."""

    tail: deque[str]
    captured: list[str] | None = None
    count: int = 0
    captured_bytes: int = 0


def pump(stream: IO[bytes], log: Callable[[str], None], keep: _Lines) -> None:
    """Decode ``stream`` line by line into ``log`` (no newline), keeping the tail in ``keep``."""
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        keep.count += 1
        keep.tail.append(line)
        if keep.captured is not None and keep.captured_bytes < CAPTURE_LIMIT:
            keep.captured.append(line)
            keep.captured_bytes += len(raw)
        log(line)


def _child_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    merged = dict(os.environ)
    merged.update(env)
    return merged


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    def write() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    threading.Thread(target=write, daemon=True).start()


def _follow(proc: subprocess.Popen[bytes], stream: IO[bytes], log: Callable[[str], None], keep: _Lines, *,
            cancelled: threading.Event | None, timeout: float | None) -> tuple[int, list[str]]:
    """Pump ``stream`` into ``log`` until the command ends; its exit code and why we stopped it (if we did)."""
    with watchdog(lambda _why: kill_group(proc), cancelled=cancelled, timeout=timeout) as why:
        leaving = True  # until the output ends normally: then the command is waited for, not stopped
        try:
            pump(stream, log, keep)
            leaving = False
        finally:
            stream.close()
            if leaving:  # ``log`` raised (say the step's log is on a full disk): stop the command too
                kill_group(proc)
            exit_code = proc.wait()
            release(proc)
    return exit_code, why


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
    check_argv(argv)
    proc = start(
        ["runuser", "-u", preexec_user, "--", *argv] if preexec_user else list(argv),
        stdout=subprocess.PIPE if stdout_to is None else stdout_to,
        stderr=subprocess.STDOUT if stdout_to is None else subprocess.PIPE,
        stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
        env=_child_env(env),
        cwd=cwd,
    )
    if stdin_bytes is not None:
        _feed(proc, stdin_bytes)
    keep = _Lines(deque(maxlen=max(tail_lines, 1)), [] if capture else None)
    stream = proc.stdout if stdout_to is None else proc.stderr
    assert stream is not None
    exit_code, why = _follow(proc, stream, log, keep, cancelled=cancelled, timeout=timeout)
    captured = "\n".join(keep.captured) if keep.captured is not None else None
    result = ProcessResult(list(argv), exit_code, list(keep.tail), captured, timed_out="timeout" in why,
                           cancelled="cancelled" in why, lines=keep.count)
    if check and not result.ok:
        raise ActionError(describe_failure(result))
    return result


@dataclass
class PipelineResult:
    """How ``producer | consumer`` ended. ``stopped`` is "cancelled" or "timeout" when we stopped it."""

    producer_exit: int
    consumer_exit: int
    stopped: str | None = None
    consumer_quit: bool = False  # the consumer closed its input early (its exit code says why)
    producer_tail: list[str] = field(default_factory=list)
    consumer_tail: list[str] = field(default_factory=list)


def run_pipeline(
    producer: list[str],
    consumer: list[str],
    *,
    log: Callable[[str], None],
    names: tuple[str, str],
    env: Mapping[str, str] | None = None,
    cancelled: threading.Event | None = None,
    timeout: float | None = None,
    scrub: Callable[[str], str] = lambda s: s,
) -> PipelineResult:
    """``producer | consumer``, where the consumer only ever sees a complete stream.

    The bytes are relayed through us: if the producer fails (or the step is stopped), the
    consumer is killed *before* its stdin closes, so e.g. ``psql --single-transaction`` never
    reaches its COMMIT. The producer's stderr and the consumer's output are logged, prefixed by
    ``names``.
    """
    child_env = _child_env(env)
    p1 = start(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env)
    try:
        p2 = start(consumer, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env)
    except ActionError:
        kill_group(p1, None)
        p1.wait()
        release(p1)
        raise
    assert p1.stdout and p1.stderr and p2.stdin and p2.stdout
    tails = (_Lines(deque(maxlen=20)), _Lines(deque(maxlen=20)))
    pumps = [_pumping(s, _prefixed(log, name, scrub), k)
             for s, name, k in ((p1.stderr, names[0], tails[0]), (p2.stdout, names[1], tails[1]))]

    def stop(_why: str) -> None:
        kill_group(p2, None)  # first: the consumer must never see the end of the stream
        kill_group(p1, None)

    try:
        with watchdog(stop, cancelled=cancelled, timeout=timeout) as why:
            rc1, quit_early = _relay(p1, p2)
            if rc1 != 0 or why or quit_early:
                kill_group(p2, None)
            else:
                p2.stdin.close()
            rc2 = p2.wait()
    finally:
        for p in (p1, p2):
            if p.poll() is None:
                kill_group(p, None)
                p.wait()
            release(p)
        with contextlib.suppress(OSError):
            p2.stdin.close()
        for t in pumps:
            t.join(timeout=5)
    producer_tail, consumer_tail = ([scrub(x) for x in t.tail] for t in tails)
    return PipelineResult(rc1, rc2, why[0] if why else None, quit_early, producer_tail, consumer_tail)


def _prefixed(log: Callable[[str], None], name: str, scrub: Callable[[str], str]) -> Callable[[str], None]:
    return lambda line: log(f"{name}: {scrub(line)}")


def _pumping(stream: IO[bytes], log: Callable[[str], None], keep: _Lines) -> threading.Thread:
    """:func:`pump` on a thread of its own, started."""
    thread = threading.Thread(target=pump, args=(stream, log, keep), daemon=True)
    thread.start()
    return thread


def _relay(p1: subprocess.Popen[bytes], p2: subprocess.Popen[bytes]) -> tuple[int, bool]:
    """Copy p1's stdout into p2's stdin. Returns p1's exit code (0 if we stopped it) and whether p2 quit."""
    assert p1.stdout and p2.stdin
    source = cast(io.BufferedReader, p1.stdout)  # Popen(stdout=PIPE) gives a buffered reader
    while chunk := source.read1(RELAY_CHUNK):
        try:
            p2.stdin.write(chunk)
        except (BrokenPipeError, OSError):
            kill_group(p1, None)  # else the producer blocks forever on its full stdout pipe
            p1.wait()
            return 0, True  # stopped by us: the consumer's exit code is the story
    return p1.wait(), False


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
