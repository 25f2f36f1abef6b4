"""Dataflow actions: find failed jobs, save a job's state, cancel, drain, relaunch, wait.

The seed's pipeline procedures, run for real through google-cloud-dataflow-client:

* ``dataflow.list_jobs`` — ``gcloud dataflow jobs list --filter "state=Failed"``;
* ``dataflow.describe_job`` — the "pipeline state backup": ``gcloud dataflow jobs describe
  --format json > pipeline_state_<ts>.json`` (JOB_VIEW_ALL, so the launch parameters are in it);
* ``dataflow.launch`` — restart a failed job or launch a replacement in another region from a
  flex (or classic) template, with the parameters from a saved state file;
* ``dataflow.cancel`` / ``dataflow.drain`` / ``dataflow.wait_for_state``.

A job is named by its id (``2025-01-01_03_00_00-123…``) or by its name; a name means the newest
job with that name (an active one first), as the console shows them.

State file: the job as ``gcloud dataflow jobs describe --format json`` prints it (camelCase Job
JSON) plus a ``runbook`` section holding what a relaunch needs: ``name``, ``type``, ``region``,
``templatePath``, ``templateKind``, ``parameters``, ``environment`` (flex runtime environment in
snake_case) and ``labels``. Edit that section to change a relaunch; ``dataflow.launch`` also
reads a plain ``gcloud`` JSON file (without the section) the same way.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from runbook.actions.base import ActionParams, BaseAction, Effect, StepContext
from runbook.core.durations import check_duration, format_duration, parse_duration
from runbook.core.errors import ActionError
from runbook.stores import dataflow as dfs
from runbook.stores import gcp

STORE = dfs.STORE
TERMINAL = frozenset({"DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINED"})
LIST_FILTERS = {"active": "ACTIVE", "terminated": "TERMINATED", "failed": "TERMINATED", "all": "ALL"}
# Pipeline options every job carries that are not template parameters: a relaunch must not pass them.
SDK_OPTIONS = frozenset(
    {
        "project", "region", "jobName", "job_name", "templateLocation", "template_location", "runner",
        "tempLocation", "temp_location", "gcpTempLocation", "gcp_temp_location", "stagingLocation",
        "staging_location", "appName", "optionsId", "dataflowJobId", "serviceAccount",
        "service_account_email", "labels", "update", "experiments", "filesToStage", "files_to_stage",
    }
)  # fmt: skip
MAX_LIST = 1000  # jobs a listing or a name lookup reads at most


# --- shared helpers --------------------------------------------------------------------------


def _short(enum_value: Any, prefix: str) -> str:
    name = getattr(enum_value, "name", str(enum_value))
    return name.removeprefix(prefix)


def _state(job: Any) -> str:
    return _short(job.current_state, "JOB_STATE_")


def _type(job: Any) -> str:
    return _short(job.type_, "JOB_TYPE_")


def _summary(job: Any) -> dict[str, str]:
    return {
        "id": job.id,
        "name": job.name,
        "state": _state(job),
        "type": _type(job),
        "location": job.location,
    }


def _norm_state(value: str) -> str:
    return value.strip().upper().removeprefix("JOB_STATE_")


_duration = check_duration


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Where:
    """Clients, settings and region of one step."""

    def __init__(self, ctx: StepContext, region: str | None) -> None:
        self.c, self.gs = dfs.clients(ctx.environment, region)
        self.region = self.c.region
        self.project = self.c.project
        self.budget = dfs.rpc_timeout(self.gs, ctx.timeout)

    def fail(self, exc: BaseException, what: str) -> ActionError:
        return gcp.translate(dfs.unwrap(exc), STORE, what, self.gs)


class _Guard:
    """``with _Guard(w, "what"):`` turns client errors into one-sentence ActionErrors."""

    def __init__(self, where: _Where, what: str) -> None:
        self.where, self.what = where, what

    def __enter__(self) -> _Guard:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, ActionError) or not dfs.is_store_error(exc):
            return False  # anything else is a bug here: keep its traceback for --debug
        raise self.where.fail(exc, self.what) from exc


class _Job(ActionParams):
    job: str | None = Field(None, description="Job id or name (default: gcp dataflow_job_name).")
    region: str | None = Field(None, description='"primary" (default), "secondary" or a region name.')


def _job_ref(w: _Where, job: str | None) -> str:
    got = job or w.gs.get("dataflow_job_name", w.region)
    if not got:
        raise ActionError("No Dataflow job given: set job in the step or dataflow_job_name in the gcp store.")
    return str(got)


def _list(w: _Where, filter_name: str, limit: int = MAX_LIST) -> list[Any]:
    from google.cloud import dataflow_v1beta3 as df

    request = df.ListJobsRequest(
        project_id=w.project,
        location=w.region,
        filter=getattr(df.ListJobsRequest.Filter, filter_name),
        page_size=min(limit, 100),
    )
    out = []
    for job in w.c.jobs.list_jobs(request=request, retry=dfs.read_retry(w.budget), timeout=w.budget):
        out.append(job)
        if len(out) >= limit:
            break
    return out


def _get(w: _Where, job_id: str, full: bool = False) -> Any:
    from google.cloud import dataflow_v1beta3 as df

    view = df.JobView.JOB_VIEW_ALL if full else df.JobView.JOB_VIEW_SUMMARY
    return w.c.jobs.get_job(
        request=df.GetJobRequest(project_id=w.project, location=w.region, job_id=job_id, view=view),
        retry=dfs.read_retry(w.budget),
        timeout=w.budget,
    )


def _find(w: _Where, ref: str, full: bool = False) -> Any:
    """The job with id ``ref``, or the newest job named ``ref`` (active ones first)."""
    if dfs.JOB_ID.match(ref):
        return _get(w, ref, full)
    # ALL lists active jobs first (newest first), then terminated ones by termination time.
    for job in _list(w, "ALL"):
        if job.name == ref:
            return _get(w, job.id, full) if full else job
    raise ActionError(f"No Dataflow job named {ref} in {w.region} (project {w.project}).")


def _label(job: Any) -> str:
    return f"{job.name} ({job.id})"


def _request_state(w: _Where, job: Any, state_name: str) -> Any:
    from google.cloud import dataflow_v1beta3 as df

    return w.c.jobs.update_job(
        request=df.UpdateJobRequest(
            project_id=w.project,
            location=w.region,
            job_id=job.id,
            job=df.Job(requested_state=getattr(df.JobState, state_name)),
        ),
        timeout=w.budget,
    )


def _wait(ctx: StepContext, w: _Where, job: Any, want: set[str], timeout: float, poll: float) -> Any:
    """Poll ``job`` until its state is in ``want``; one sentence when it ends elsewhere or times out."""
    start = time.monotonic()
    last = ""
    wanted = " or ".join(sorted(want))
    while True:
        job = _get(w, job.id)
        state = _state(job)
        if state != last:
            ctx.log(f"{_label(job)}: {state}")
            last = state
        if state in want:
            return job
        if state in TERMINAL:
            raise ActionError(f"Job {_label(job)} is {state}, not {wanted}.")
        waited = time.monotonic() - start
        if waited >= timeout:
            raise ActionError(
                f"Job {_label(job)} is still {state} after {format_duration(waited)}, not {wanted}."
            )
        if ctx.cancelled.wait(min(poll, max(timeout - waited, 0.01))):
            raise ActionError(f"Stopped by the operator while waiting for job {_label(job)} ({state}).")


# --- dataflow.list_jobs ----------------------------------------------------------------------


class ListJobsParams(ActionParams):
    state: Literal["active", "terminated", "failed", "all"] = Field("all", description="Which jobs.")
    region: str | None = Field(None, description='"primary" (default), "secondary" or a region name.')
    name: str | None = Field(None, description="Only jobs with this name.")
    limit: int = Field(200, ge=1, le=MAX_LIST, description="At most this many jobs.")


class ListJobsAction(BaseAction):
    name: ClassVar[str] = "dataflow.list_jobs"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = "List Dataflow jobs in a region by state (active, terminated, failed, all)."
    Params = ListJobsParams
    outputs: ClassVar[dict[str, str]] = {
        "jobs": "List of {id, name, state, type, location}, as the service orders them (newest first).",
        "count": "How many jobs.",
        "failed": "The FAILED jobs among them (same shape).",
        "first_failed_id": "Id of the most recently failed job, or empty.",
    }

    def target(self, params: ListJobsParams) -> str:
        return params.region or "primary"

    def describe(self, params: ListJobsParams) -> str:
        where = params.region or "<gcp.region>"
        extra = ", then state == FAILED" if params.state == "failed" else ""
        name = f", name == {params.name}" if params.name else ""
        return f"JobsV1Beta3.ListJobs(location={where}, filter={LIST_FILTERS[params.state]}{extra}{name})"

    def run(self, ctx: StepContext, params: ListJobsParams) -> dict[str, Any]:
        w = _Where(ctx, params.region)
        with _Guard(w, f"list jobs in {w.region}"):
            found = _list(w, LIST_FILTERS[params.state], params.limit)
        jobs = [_summary(j) for j in found if params.name is None or j.name == params.name]
        if params.state == "failed":
            jobs = [j for j in jobs if j["state"] == "FAILED"]
        for j in jobs:
            ctx.log(f"{j['id']}  {j['name']}  {j['state']}  {j['type']}")
        failed = [j for j in jobs if j["state"] == "FAILED"]
        ctx.log(f"{len(jobs)} job(s) in {w.region}, {len(failed)} failed")
        return {
            "jobs": jobs,
            "count": len(jobs),
            "failed": failed,
            "first_failed_id": failed[0]["id"] if failed else "",
        }


# --- dataflow.describe_job -------------------------------------------------------------------


def _gs_path(prefix: str) -> str:
    """``storage.googleapis.com/bucket/dir`` (how jobs report temp storage) as ``gs://bucket/dir``."""
    for head in ("storage.googleapis.com/", "https://storage.googleapis.com/"):
        if prefix.startswith(head):
            return "gs://" + prefix[len(head) :]
    return prefix


def relaunch_spec(job_json: dict[str, Any], region: str) -> dict[str, Any]:
    """What a relaunch needs, from a Job's JSON (camelCase, as ``gcloud ... describe`` prints it)."""
    env = job_json.get("environment") or {}
    options = dict(((env.get("sdkPipelineOptions") or {}).get("options")) or {})
    parameters = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items() if k not in SDK_OPTIONS
    }
    runtime: dict[str, Any] = {}
    if env.get("tempStoragePrefix"):
        runtime["temp_location"] = _gs_path(str(env["tempStoragePrefix"]))
    if env.get("serviceAccountEmail"):
        runtime["service_account_email"] = env["serviceAccountEmail"]
    pools = env.get("workerPools") or []
    if pools:
        pool = pools[0]
        # Zones, worker regions and subnetworks are regional: never carried to another region.
        for src, dst in (
            ("machineType", "machine_type"),
            ("numWorkers", "num_workers"),
            ("network", "network"),
        ):
            if pool.get(src):
                runtime[dst] = pool[src]
        max_workers = (pool.get("autoscalingSettings") or {}).get("maxNumWorkers")
        if max_workers:
            runtime["max_workers"] = max_workers
    labels = {k: v for k, v in (job_json.get("labels") or {}).items() if not k.startswith("goog-")}
    if labels:
        runtime["additional_user_labels"] = labels
    return {
        "name": job_json.get("name", ""),
        "type": str(job_json.get("type", "")).removeprefix("JOB_TYPE_"),
        "region": job_json.get("location") or region,
        "templatePath": str(options.get("templateLocation") or options.get("template_location") or ""),
        "templateKind": "flex",
        "parameters": parameters,
        "environment": runtime,
        "labels": labels,
    }


class DescribeParams(_Job):
    path: str | None = Field(
        None, description="State file (default: DIRECTORY/pipeline_state_<name>_<ts>.json)."
    )
    directory: str | None = Field(
        None,
        description="Where to write it (default: the files store's pipeline dir, else the step's workdir).",
    )


class DescribeJobAction(BaseAction):
    name: ClassVar[str] = "dataflow.describe_job"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "Save a Dataflow job (full view: parameters, environment, labels) to a JSON state file."
    )
    Params = DescribeParams
    outputs: ClassVar[dict[str, str]] = {
        "path": "The state file.",
        "job_id": "Job id.",
        "name": "Job name.",
        "state": "Current state, e.g. RUNNING.",
        "type": "STREAMING or BATCH.",
        "parameters": "Launch parameters (what a relaunch passes).",
        "template": "Template path, or empty when the job does not report it.",
    }

    def target(self, params: DescribeParams) -> str:
        return params.job or "<gcp.dataflow_job_name>"

    def describe(self, params: DescribeParams) -> str:
        out = (
            params.path
            or f"{params.directory or '<pipeline backups>'}/pipeline_state_<name>_<YYYYmmdd_HHMMSS>.json"
        )
        return (
            f"JobsV1Beta3.GetJob(location={params.region or '<gcp.region>'}, job={self.target(params)}, "
            f"view=JOB_VIEW_ALL) > {out}"
        )

    def run(self, ctx: StepContext, params: DescribeParams) -> dict[str, Any]:
        from google.cloud import dataflow_v1beta3 as df

        w = _Where(ctx, params.region)
        ref = _job_ref(w, params.job)
        with _Guard(w, f"describe job {ref} in {w.region}"):
            job = _find(w, ref, full=True)
        data = json.loads(df.Job.to_json(job, use_integers_for_enums=False, indent=None))
        spec = relaunch_spec(data, w.region)
        data["runbook"] = {"savedAt": _iso_now(), "project": w.project, **spec}
        if params.path:
            path = Path(params.path)
        else:
            directory = (
                params.directory or ctx.environment.stores.get("files", {}).get("pipeline") or ctx.workdir
            )
            path = Path(directory) / f"pipeline_state_{job.name}_{datetime.now(UTC):%Y%m%d_%H%M%S}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise ActionError(f"Cannot write the state file {path}: {exc.strerror or exc}.") from None
        ctx.log(
            f"{_label(job)}: {_state(job)} {_type(job)} in {job.location}; template {spec['templatePath'] or '?'}"
        )
        ctx.log(f"parameters: {json.dumps(spec['parameters'], sort_keys=True)}")
        ctx.log(f"saved {path}")
        return {
            "path": str(path),
            "job_id": job.id,
            "name": job.name,
            "state": _state(job),
            "type": _type(job),
            "parameters": spec["parameters"],
            "template": spec["templatePath"],
        }


# --- dataflow.cancel / drain -----------------------------------------------------------------


class StopParams(ActionParams):
    job: str = Field(description="Job id or name.")
    region: str | None = Field(None, description='"primary" (default), "secondary" or a region name.')
    wait: bool = Field(True, description="Wait until the job has stopped.")
    timeout: str | int = Field("15m", description="How long to wait.")
    poll_interval: float = Field(2.0, gt=0, description="Seconds between state checks.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        return _duration(v, "timeout")


class CancelAction(BaseAction):
    name: ClassVar[str] = "dataflow.cancel"
    effect: ClassVar[Effect] = Effect.DESTRUCTIVE
    summary: ClassVar[str] = (
        "Cancel a Dataflow job (in-flight data is dropped) and wait until it is CANCELLED."
    )
    Params = StopParams
    outputs: ClassVar[dict[str, str]] = {"job_id": "Job id.", "state": "State at the end, e.g. CANCELLED."}
    _verb: ClassVar[str] = "cancel"
    _requested: ClassVar[str] = "JOB_STATE_CANCELLED"
    _final: ClassVar[str] = "CANCELLED"

    def target(self, params: StopParams) -> str:
        return params.job

    def describe(self, params: StopParams) -> str:
        wait = f" and wait for {self._final}" if params.wait else ""
        return (
            f"JobsV1Beta3.UpdateJob(location={params.region or '<gcp.region>'}, job={params.job}, "
            f"requested_state={self._requested}){wait}"
        )

    def _check(self, job: Any) -> None:
        """Refuse before asking the service (drain overrides this)."""

    def run(self, ctx: StepContext, params: StopParams) -> dict[str, Any]:
        w = _Where(ctx, params.region)
        with _Guard(w, f"{self._verb} job {params.job} in {w.region}"):
            job = _find(w, params.job)
            state = _state(job)
            if state in TERMINAL:
                ctx.log(f"{_label(job)} is already {state}: nothing to {self._verb}")
                return {"job_id": job.id, "state": state}
            self._check(job)
            ctx.log(f"requesting {self._requested} for {_label(job)} ({state})")
            job = _request_state(w, job, self._requested)
            if params.wait:
                job = _wait(ctx, w, job, {self._final}, parse_duration(params.timeout), params.poll_interval)
        return {"job_id": job.id, "state": _state(job)}


class DrainAction(CancelAction):
    name: ClassVar[str] = "dataflow.drain"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = "Drain a streaming Dataflow job (finish in-flight data, stop reading) and wait."
    _verb: ClassVar[str] = "drain"
    _requested: ClassVar[str] = "JOB_STATE_DRAINED"
    _final: ClassVar[str] = "DRAINED"

    def _check(self, job: Any) -> None:
        if _type(job) != "STREAMING":
            raise ActionError(
                f"Job {_label(job)} is a {_type(job).lower()} job: only streaming jobs can be drained; "
                f"use dataflow.cancel to stop it."
            )


# --- dataflow.launch -------------------------------------------------------------------------


class LaunchParams(ActionParams):
    state_file: str | None = Field(
        None, description="A dataflow.describe_job (or gcloud describe) JSON file."
    )
    name: str | None = Field(
        None, description="Job name (default: the state file's, else gcp dataflow_job_name)."
    )
    template: str | None = Field(
        None, description="gs:// template path (default: the state file's, else gcp template)."
    )
    template_kind: Literal["flex", "classic"] | None = Field(
        None, description="Default: the state file's, else flex."
    )
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Merged over the state file's parameters."
    )
    environment: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime environment fields (snake_case, e.g. max_workers, subnetwork), merged over the file's.",
    )
    region: str | None = Field(None, description='"primary" (default), "secondary" or a region name.')
    update: bool = Field(False, description="Replace the running streaming job of the same name in place.")


class LaunchAction(BaseAction):
    name: ClassVar[str] = "dataflow.launch"
    effect: ClassVar[Effect] = Effect.MUTATING
    summary: ClassVar[str] = (
        "Launch a Dataflow job from a flex or classic template, e.g. a replacement in another region."
    )
    Params = LaunchParams
    outputs: ClassVar[dict[str, str]] = {
        "job_id": "The new job's id.",
        "name": "Job name.",
        "region": "Region it runs in.",
        "state": "State right after the launch (QUEUED/PENDING).",
    }

    def target(self, params: LaunchParams) -> str:
        return params.name or (
            f"job from {params.state_file}" if params.state_file else "<gcp.dataflow_job_name>"
        )

    def describe(self, params: LaunchParams) -> str:
        kind = params.template_kind or "flex"
        call = "FlexTemplates.LaunchFlexTemplate" if kind == "flex" else "Templates.LaunchTemplate"
        src = f", from {params.state_file}" if params.state_file else ""
        return (
            f"{call}(location={params.region or '<gcp.region>'}, job_name={params.name or '<from state file>'}, "
            f"template={params.template or '<from state file>'}, parameters+={params.parameters or {}}"
            f"{', update=true' if params.update else ''}{src})"
        )

    def _spec(self, params: LaunchParams, region: str) -> dict[str, Any]:
        if not params.state_file:
            return {}
        path = Path(params.state_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ActionError(f"State file not found: {path}.") from None
        except (OSError, ValueError) as exc:
            raise ActionError(f"Cannot read the state file {path}: {exc}.") from None
        if not isinstance(data, dict):
            raise ActionError(f"{path} is not a Dataflow job state file (expected a JSON object).")
        spec = data.get("runbook")
        return dict(spec) if isinstance(spec, dict) else relaunch_spec(data, region)

    def run(self, ctx: StepContext, params: LaunchParams) -> dict[str, Any]:
        from google.cloud import dataflow_v1beta3 as df

        w = _Where(ctx, params.region)
        spec = self._spec(params, w.region)
        name = params.name or spec.get("name") or w.gs.get("dataflow_job_name", w.region)
        template = params.template or spec.get("templatePath") or w.gs.get("template", w.region)
        kind = params.template_kind or spec.get("templateKind") or "flex"
        if not name:
            raise ActionError(
                "No job name: set name in the step, a state_file, or dataflow_job_name in the gcp store."
            )
        if not template:
            raise ActionError(
                "No template path: set template in the step, a state_file, or template in the gcp store."
            )
        parameters = {**(spec.get("parameters") or {}), **params.parameters}
        runtime = {**(spec.get("environment") or {}), **params.environment}
        env_type = df.FlexTemplateRuntimeEnvironment if kind == "flex" else df.RuntimeEnvironment
        try:
            environment = env_type(**runtime)
        except (ValueError, TypeError, KeyError) as exc:
            raise ActionError(f"Invalid runtime environment for a {kind} template launch: {exc}.") from None
        from_region = spec.get("region")
        moved = f" (the saved job ran in {from_region})" if from_region and from_region != w.region else ""
        ctx.log(f"launching {name} from {kind} template {template} in {w.region}{moved}")
        ctx.log(f"parameters: {json.dumps(parameters, sort_keys=True)}")
        with _Guard(w, f"launch job {name} in {w.region}"):
            if kind == "flex":
                job = w.c.flex.launch_flex_template(
                    request=df.LaunchFlexTemplateRequest(
                        project_id=w.project,
                        location=w.region,
                        launch_parameter=df.LaunchFlexTemplateParameter(
                            job_name=name,
                            container_spec_gcs_path=template,
                            parameters=parameters,
                            environment=environment,
                            update=params.update,
                        ),
                    ),
                    timeout=max(w.budget, 60.0),
                ).job
            else:
                job = w.c.templates.launch_template(
                    request=df.LaunchTemplateRequest(
                        project_id=w.project,
                        location=w.region,
                        gcs_path=template,
                        launch_parameters=df.LaunchTemplateParameters(
                            job_name=name,
                            parameters=parameters,
                            environment=environment,
                            update=params.update,
                        ),
                    ),
                    timeout=max(w.budget, 60.0),
                ).job
        if not job.id:
            raise ActionError(f"{STORE} accepted the launch of {name} in {w.region} but returned no job id.")
        ctx.log(f"launched {_label(job)} in {w.region}: {_state(job)}")
        return {"job_id": job.id, "name": job.name or name, "region": w.region, "state": _state(job)}


# --- dataflow.wait_for_state -----------------------------------------------------------------


class WaitParams(_Job):
    states: list[str] = Field(
        default_factory=lambda: ["RUNNING"], min_length=1, description="e.g. [RUNNING]."
    )
    timeout: str | int = Field("15m", description="Fail when no wanted state is reached by then.")
    poll_interval: float = Field(5.0, gt=0, description="Seconds between state checks.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        return _duration(v, "timeout")

    @field_validator("states")
    @classmethod
    def _states(cls, v: list[str]) -> list[str]:
        known = {
            "UNKNOWN", "STOPPED", "RUNNING", "DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINING", "DRAINED",
            "PENDING", "CANCELLING", "QUEUED", "RESOURCE_CLEANING_UP", "PAUSING", "PAUSED",
        }  # fmt: skip
        out = [_norm_state(s) for s in v]
        bad = [s for s in out if s not in known]
        if bad:
            raise ValueError(f"unknown job state {bad[0]}: use e.g. RUNNING, DONE, DRAINED, CANCELLED")
        return out


class WaitForStateAction(BaseAction):
    name: ClassVar[str] = "dataflow.wait_for_state"
    effect: ClassVar[Effect] = Effect.READ_ONLY
    summary: ClassVar[str] = (
        "Wait until a Dataflow job reaches one of the given states; fail if it ends elsewhere."
    )
    Params = WaitParams
    outputs: ClassVar[dict[str, str]] = {"state": "The state reached.", "job_id": "Job id."}

    def target(self, params: WaitParams) -> str:
        return params.job or "<gcp.dataflow_job_name>"

    def describe(self, params: WaitParams) -> str:
        return (
            f"JobsV1Beta3.GetJob(location={params.region or '<gcp.region>'}, job={self.target(params)}) every "
            f"{params.poll_interval:g}s until state in {'/'.join(params.states)} (timeout {params.timeout})"
        )

    def run(self, ctx: StepContext, params: WaitParams) -> dict[str, Any]:
        w = _Where(ctx, params.region)
        ref = _job_ref(w, params.job)
        with _Guard(w, f"check the state of job {ref} in {w.region}"):
            job = _find(w, ref)
            job = _wait(ctx, w, job, set(params.states), parse_duration(params.timeout), params.poll_interval)
        return {"state": _state(job), "job_id": job.id}


ACTIONS = [ListJobsAction, DescribeJobAction, CancelAction, DrainAction, LaunchAction, WaitForStateAction]

__all__ = ["ACTIONS", "relaunch_spec"]
