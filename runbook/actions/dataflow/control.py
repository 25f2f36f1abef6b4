"""Stopping a Dataflow job and waiting for a state: ``dataflow.cancel``, ``dataflow.drain`` and
``dataflow.wait_for_state``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from runbook.actions.dataflow.jobs import (
    KNOWN_STATES,
    REGION_HELP,
    TERMINAL,
    JobParams,
    Session,
    api_call,
    find,
    get,
    label,
    norm_state,
    show_job,
    state_of,
    type_of,
    working_on,
)
from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.poll import WaitCancelled, WaitTimeout, wait_until
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


def wait_for(ctx: StepContext, s: Session, job: Any, want: set[str], timeout: float, poll: float) -> Any:
    """Poll ``job`` until its state is in ``want``; one sentence when it ends elsewhere or times out."""
    wanted = " or ".join(sorted(want))
    job_id = job.id
    last_job, last_state = job, ""

    def on_poll(current: Any, _waited: float) -> None:
        nonlocal last_job, last_state
        last_job = current
        if state_of(current) != last_state:
            last_state = state_of(current)
            ctx.log(f"{label(current)}: {last_state}")

    try:
        job = wait_until(
            lambda: get(s, job_id),
            lambda j: state_of(j) in want or state_of(j) in TERMINAL,
            timeout=timeout,
            every=poll,
            cancelled=ctx.cancelled,
            on_poll=on_poll,
        )
    except WaitTimeout as late:
        raise ActionError(
            f"Job {label(late.last)} is still {state_of(late.last)} after {format_duration(late.waited)}, "
            f"not {wanted}."
        ) from None
    except WaitCancelled:
        raise ActionError(
            f"Stopped by the operator while waiting for job {label(last_job)} ({state_of(last_job)})."
        ) from None
    if state_of(job) not in want:
        raise ActionError(f"Job {label(job)} is {state_of(job)}, not {wanted}.")
    return job


# --- dataflow.cancel / drain -----------------------------------------------------------------


class StopParams(ActionParams):
    job: str
    """Job id or name."""
    region: str | None = Field(None, description=REGION_HELP)
    wait: bool = Field(True, description="Wait until the job has stopped.")
    timeout: Duration = Field("15m", description="How long to wait.")
    poll_interval: float = Field(2.0, gt=0, description="Seconds between state checks.")


class StopOutputs(ActionOutputs):
    job_id: str
    """Job id."""
    state: str
    """State at the end, e.g. CANCELLED."""


@dataclass(frozen=True)
class _Stop:
    """How one kind of stop is asked for, and what refuses it before the service is asked."""

    verb: str
    requested: str
    final: str
    check: Callable[[Any], None]

    def describe(self, p: StopParams) -> str:
        wait = f" and wait for {self.final}" if p.wait else ""
        state = f"requested_state={self.requested}"
        return api_call("JobsV1Beta3.UpdateJob", p.region, f"job={p.job}", state) + wait


def _request_state(s: Session, job: Any, state_name: str) -> Any:
    from google.cloud import dataflow_v1beta3 as df

    request = df.UpdateJobRequest(
        project_id=s.project,
        location=s.region,
        job_id=job.id,
        job=df.Job(requested_state=getattr(df.JobState, state_name)),
    )
    return s.c.jobs.update_job(request=request, timeout=s.budget)


def _stop(ctx: StepContext, params: StopParams, how: _Stop) -> StopOutputs:
    s = Session(ctx, params.region)
    with s.guard(f"{how.verb} job {params.job} in {s.region}"):
        job = find(s, params.job)
        state = state_of(job)
        if state in TERMINAL:
            ctx.log(f"{label(job)} is already {state}: nothing to {how.verb}")
            return StopOutputs(job_id=job.id, state=state)
        how.check(job)
        ctx.log(f"requesting {how.requested} for {label(job)} ({state})")
        job = _request_state(s, job, how.requested)
        if params.wait:
            job = wait_for(ctx, s, job, {how.final}, seconds(params.timeout), params.poll_interval)
    return StopOutputs(job_id=job.id, state=state_of(job))


def _any_job(job: Any) -> None:
    """Every job can be cancelled."""


def _streaming_only(job: Any) -> None:
    if type_of(job) != "STREAMING":
        raise ActionError(
            f"Job {label(job)} is a {type_of(job).lower()} job: only streaming jobs can be drained; "
            f"use dataflow.cancel to stop it."
        )


CANCEL = _Stop("cancel", "JOB_STATE_CANCELLED", "CANCELLED", _any_job)
DRAIN = _Stop("drain", "JOB_STATE_DRAINED", "DRAINED", _streaming_only)


@action("dataflow.cancel", Effect.DESTRUCTIVE,
        "Cancel a Dataflow job (in-flight data is dropped) and wait until it is CANCELLED.",
        target=lambda p: p.job, describe=CANCEL.describe)
def cancel(ctx: StepContext, params: StopParams) -> StopOutputs:
    return _stop(ctx, params, CANCEL)


@action("dataflow.drain", Effect.MUTATING,
        "Drain a streaming Dataflow job (finish in-flight data, stop reading) and wait.",
        target=lambda p: p.job, describe=DRAIN.describe)
def drain(ctx: StepContext, params: StopParams) -> StopOutputs:
    return _stop(ctx, params, DRAIN)


# --- dataflow.wait_for_state -----------------------------------------------------------------


class WaitParams(JobParams):
    states: list[str] = Field(default_factory=lambda: ["RUNNING"], min_length=1)
    """e.g. [RUNNING]."""
    timeout: Duration = Field("15m", description="Fail when no wanted state is reached by then.")
    poll_interval: float = Field(5.0, gt=0, description="Seconds between state checks.")

    @field_validator("states")
    @classmethod
    def _states(cls, v: list[str]) -> list[str]:
        out = [norm_state(s) for s in v]
        bad = [s for s in out if s not in KNOWN_STATES]
        if bad:
            raise ValueError(f"unknown job state {bad[0]}: use e.g. RUNNING, DONE, DRAINED, CANCELLED")
        return out


class WaitOutputs(ActionOutputs):
    state: str
    """The state reached."""
    job_id: str
    """Job id."""


def _describe_wait(p: WaitParams) -> str:
    get = api_call("JobsV1Beta3.GetJob", p.region, f"job={show_job(p)}")
    return f"{get} every {p.poll_interval:g}s until state in {'/'.join(p.states)} (timeout {p.timeout})"


@action("dataflow.wait_for_state", Effect.READ_ONLY,
        "Wait until a Dataflow job reaches one of the given states; fail if it ends elsewhere.",
        target=show_job, describe=_describe_wait)
def wait_for_state(ctx: StepContext, params: WaitParams) -> WaitOutputs:
    with working_on(ctx, params, "check the state of") as (s, ref):
        job = find(s, ref)
        job = wait_for(ctx, s, job, set(params.states), seconds(params.timeout), params.poll_interval)
    return WaitOutputs(state=state_of(job), job_id=job.id)
