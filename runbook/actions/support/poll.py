"""The one way an action waits for something: ask again until it holds, a deadline passes, or the
operator stops the step.

Built on tenacity (``retry_if_result`` with a cancellable sleep), so every poll loop in the
actions shares one tested behaviour: the interval (fixed, or growing up to a ceiling), the
deadline, cancellation within one interval, and a progress callback for the step's log.

    job = wait_until(lambda: get(job_id), lambda j: j.state in WANTED, timeout=600, every=2.0,
                     cancelled=ctx.cancelled, on_poll=lambda j, waited: ctx.log(j.state))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(Exception):
    """The condition did not hold before the deadline; ``last`` is the last value seen."""

    def __init__(self, last: Any, waited: float) -> None:
        super().__init__(f"still waiting after {waited:.1f}s")
        self.last = last
        self.waited = waited


class WaitCancelled(Exception):
    """The operator stopped the step while it waited."""


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float | None,
    every: float = 0.2,
    max_every: float | None = None,
    cancelled: threading.Event | None = None,
    on_poll: Callable[[T, float], None] | None = None,
) -> T:
    """Call ``probe`` until ``done(value)``; return that value.

    Args:
        probe: Fetches the current value (an exception it raises ends the wait at once).
        done: Whether a value is the one waited for.
        timeout: Seconds before :class:`WaitTimeout`; None waits as long as it takes.
        every: Seconds between probes (the first interval when ``max_every`` is given).
        max_every: Grow the interval by half each time, up to this many seconds.
        cancelled: When set, the wait ends within one interval with :class:`WaitCancelled`.
        on_poll: Called with each value and the seconds waited so far (for progress lines).

    Raises:
        WaitTimeout: The deadline passed.
        WaitCancelled: ``cancelled`` was set.
    """
    import tenacity

    started = time.monotonic()

    def attempt() -> T:
        value = probe()
        if on_poll is not None:
            on_poll(value, time.monotonic() - started)
        return value

    def sleep(seconds: float) -> None:
        if cancelled is None:
            time.sleep(seconds)
        elif cancelled.wait(seconds):
            raise WaitCancelled()

    def give_up(state: tenacity.RetryCallState) -> T:
        assert state.outcome is not None
        raise WaitTimeout(state.outcome.result(), time.monotonic() - started)

    if cancelled is not None and cancelled.is_set():
        raise WaitCancelled()
    wait: Any = tenacity.wait_fixed(every)
    if max_every is not None:
        wait = tenacity.wait_exponential(multiplier=every, exp_base=1.5, min=every, max=max_every)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout) if timeout is not None else tenacity.stop_never,
        wait=wait,
        retry=tenacity.retry_if_result(lambda value: not done(value)),
        sleep=sleep,
        retry_error_callback=give_up,
    )
    return retrying(attempt)
