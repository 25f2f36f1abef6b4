"""Finding Dataflow jobs and reading their state; ``dataflow.list_jobs``.

A job is named by its id (``2025-01-01_03_00_00-123…``) or by its name; a name means the newest
job with that name (an active one first), as the console shows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.stores import dataflow as dfs
from runbook.stores import gcp

STORE = dfs.STORE
TERMINAL = frozenset({"DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINED"})
KNOWN_STATES = frozenset(
    {
        "UNKNOWN", "STOPPED", "RUNNING", "DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINING", "DRAINED",
        "PENDING", "CANCELLING", "QUEUED", "RESOURCE_CLEANING_UP", "PAUSING", "PAUSED",
    }
)  # fmt: skip
LIST_FILTERS = {"active": "ACTIVE", "terminated": "TERMINATED", "failed": "TERMINATED", "all": "ALL"}
MAX_LIST = 1000  # jobs a listing or a name lookup reads at most
REGION_HELP = '"primary" (default), "secondary" or a region name.'


# --- what a job looks like to an operator ----------------------------------------------------


def _short(enum_value: Any, prefix: str) -> str:
    name = getattr(enum_value, "name", str(enum_value))
    return name.removeprefix(prefix)


def state_of(job: Any) -> str:
    """``RUNNING``, ``FAILED``… (without the ``JOB_STATE_`` prefix)."""
    return _short(job.current_state, "JOB_STATE_")


def type_of(job: Any) -> str:
    """``STREAMING`` or ``BATCH``."""
    return _short(job.type_, "JOB_TYPE_")


def label(job: Any) -> str:
    return f"{job.name} ({job.id})"


def summary(job: Any) -> dict[str, str]:
    return {
        "id": job.id,
        "name": job.name,
        "state": state_of(job),
        "type": type_of(job),
        "location": job.location,
    }


def norm_state(value: str) -> str:
    """``job_state_running`` / ``running`` → ``RUNNING``."""
    return value.strip().upper().removeprefix("JOB_STATE_")


def show_region(region: str | None) -> str:
    return region or "<gcp.region>"


def api_call(method: str, region: str | None, *args: str) -> str:
    """describe() of a Dataflow API call: ``Service.Method(location=<region>, args…)``."""
    return f"{method}({', '.join((f'location={show_region(region)}', *args))})"


# --- one step's connection -------------------------------------------------------------------


class Session:
    """Clients, settings and region of one step."""

    def __init__(self, ctx: StepContext, region: str | None) -> None:
        self.c, self.gs = dfs.clients(ctx.environment, region, pool=ctx.services.clients)
        self.region = self.c.region
        self.project = self.c.project
        self.budget = gcp.rpc_timeout(self.gs, ctx.timeout)

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Turn the service's (and the connection's) errors inside the block into one sentence.

        Anything else is a bug here: it keeps its traceback for --debug.
        """
        try:
            yield
        except ActionError:
            raise
        except Exception as exc:
            if not dfs.is_store_error(exc):
                raise
            raise gcp.translate(dfs.unwrap(exc), STORE, what, self.gs) from exc


class JobParams(ActionParams):
    job: str | None = Field(None, description="Job id or name (default: gcp dataflow_job_name).")
    region: str | None = Field(None, description=REGION_HELP)


@contextmanager
def working_on(ctx: StepContext, params: JobParams, doing: str) -> Iterator[tuple[Session, str]]:
    """The step's session and the job it names (else the gcp store's ``dataflow_job_name``).

    The service's errors inside the block become one sentence: "… <doing> job <job> in <region> …".
    """
    s = Session(ctx, params.region)
    ref = params.job or s.gs.get("dataflow_job_name", s.region)
    if not ref:
        raise ActionError("No Dataflow job given: set job in the step or dataflow_job_name in the gcp store.")
    with s.guard(f"{doing} job {ref} in {s.region}"):
        yield s, str(ref)


def show_job(p: JobParams) -> str:
    """The job a step names, for describe() and targets."""
    return p.job or "<gcp.dataflow_job_name>"


# --- lookups ---------------------------------------------------------------------------------


def list_some(s: Session, filter_name: str, limit: int = MAX_LIST) -> list[Any]:
    from google.cloud import dataflow_v1beta3 as df

    request = df.ListJobsRequest(
        project_id=s.project,
        location=s.region,
        filter=getattr(df.ListJobsRequest.Filter, filter_name),
        page_size=min(limit, 100),
    )
    out = []
    for job in s.c.jobs.list_jobs(request=request, retry=dfs.read_retry(s.budget), timeout=s.budget):
        out.append(job)
        if len(out) >= limit:
            break
    return out


def get(s: Session, job_id: str, full: bool = False) -> Any:
    from google.cloud import dataflow_v1beta3 as df

    view = df.JobView.JOB_VIEW_ALL if full else df.JobView.JOB_VIEW_SUMMARY
    return s.c.jobs.get_job(
        request=df.GetJobRequest(project_id=s.project, location=s.region, job_id=job_id, view=view),
        retry=dfs.read_retry(s.budget),
        timeout=s.budget,
    )


def find(s: Session, ref: str, full: bool = False) -> Any:
    """The job with id ``ref``, or the newest job named ``ref`` (active ones first)."""
    if dfs.JOB_ID.match(ref):
        return get(s, ref, full)
    # ALL lists active jobs first (newest first), then terminated ones by termination time.
    for job in list_some(s, "ALL"):
        if job.name == ref:
            return get(s, job.id, full) if full else job
    raise ActionError(f"No Dataflow job named {ref} in {s.region} (project {s.project}).")


# --- dataflow.list_jobs ----------------------------------------------------------------------


class ListJobsParams(ActionParams):
    state: Literal["active", "terminated", "failed", "all"] = Field("all", description="Which jobs.")
    region: str | None = Field(None, description=REGION_HELP)
    name: str | None = Field(None, description="Only jobs with this name.")
    limit: int = Field(200, ge=1, le=MAX_LIST, description="At most this many jobs.")


class ListJobsOutputs(ActionOutputs):
    jobs: list[dict[str, str]]
    """List of {id, name, state, type, location}, as the service orders them (newest first)."""
    count: int
    """How many jobs."""
    failed: list[dict[str, str]]
    """The FAILED jobs among them (same shape)."""
    first_failed_id: str
    """Id of the most recently failed job, or empty."""


def _describe_list(p: ListJobsParams) -> str:
    args = [f"filter={LIST_FILTERS[p.state]}"]
    if p.state == "failed":
        args.append("then state == FAILED")
    if p.name:
        args.append(f"name == {p.name}")
    return api_call("JobsV1Beta3.ListJobs", p.region, *args)


@action("dataflow.list_jobs", Effect.READ_ONLY,
        "List Dataflow jobs in a region by state (active, terminated, failed, all).",
        target=lambda p: p.region or "primary", describe=_describe_list)
def list_jobs(ctx: StepContext, params: ListJobsParams) -> ListJobsOutputs:
    s = Session(ctx, params.region)
    with s.guard(f"list jobs in {s.region}"):
        found = list_some(s, LIST_FILTERS[params.state], params.limit)
    jobs = [summary(j) for j in found if params.name is None or j.name == params.name]
    if params.state == "failed":
        jobs = [j for j in jobs if j["state"] == "FAILED"]
    for j in jobs:
        ctx.log(f"{j['id']}  {j['name']}  {j['state']}  {j['type']}")
    failed = [j for j in jobs if j["state"] == "FAILED"]
    ctx.log(f"{len(jobs)} job(s) in {s.region}, {len(failed)} failed")
    return ListJobsOutputs(
        jobs=jobs, count=len(jobs), failed=failed, first_failed_id=failed[0]["id"] if failed else ""
    )
