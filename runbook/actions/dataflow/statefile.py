"""The pipeline state file: ``dataflow.describe_job`` writes it, ``dataflow.launch`` reads it.

The "pipeline state backup" of the seed: ``gcloud dataflow jobs describe --format json >
pipeline_state_<ts>.json`` (JOB_VIEW_ALL, so the launch parameters are in it).

State file: the job as ``gcloud dataflow jobs describe --format json`` prints it (camelCase Job
JSON) plus a ``runbook`` section holding what a relaunch needs: ``name``, ``type``, ``region``,
``templatePath``, ``templateKind``, ``parameters``, ``environment`` (flex runtime environment in
snake_case) and ``labels``. Edit that section to change a relaunch; ``dataflow.launch`` also
reads a plain ``gcloud`` JSON file (without the section) the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runbook.actions.dataflow.jobs import (
    JobParams,
    api_call,
    find,
    label,
    show_job,
    state_of,
    type_of,
    working_on,
)
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, stamp, utc_now

# Pipeline options every job carries that are not template parameters: a relaunch must not pass them.
SDK_OPTIONS = frozenset(
    {
        "project", "region", "jobName", "job_name", "templateLocation", "template_location", "runner",
        "tempLocation", "temp_location", "gcpTempLocation", "gcp_temp_location", "stagingLocation",
        "staging_location", "appName", "optionsId", "dataflowJobId", "serviceAccount",
        "service_account_email", "labels", "update", "experiments", "filesToStage", "files_to_stage",
    }
)  # fmt: skip
# Worker pool fields carried to a relaunch. Zones, worker regions and subnetworks are regional:
# never carried to another region.
POOL_FIELDS = (("machineType", "machine_type"), ("numWorkers", "num_workers"), ("network", "network"))


def _gs_path(prefix: str) -> str:
    """``storage.googleapis.com/bucket/dir`` (how jobs report temp storage) as ``gs://bucket/dir``."""
    for head in ("storage.googleapis.com/", "https://storage.googleapis.com/"):
        if prefix.startswith(head):
            return "gs://" + prefix[len(head) :]
    return prefix


def _runtime(env: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The flex runtime environment (snake_case) a relaunch passes, from a Job's ``environment``."""
    runtime: dict[str, Any] = {}
    if env.get("tempStoragePrefix"):
        runtime["temp_location"] = _gs_path(str(env["tempStoragePrefix"]))
    if env.get("serviceAccountEmail"):
        runtime["service_account_email"] = env["serviceAccountEmail"]
    pools = env.get("workerPools") or []
    if pools:
        pool = pools[0]
        for src, dst in POOL_FIELDS:
            if pool.get(src):
                runtime[dst] = pool[src]
        max_workers = (pool.get("autoscalingSettings") or {}).get("maxNumWorkers")
        if max_workers:
            runtime["max_workers"] = max_workers
    if labels:
        runtime["additional_user_labels"] = labels
    return runtime


def relaunch_spec(job_json: dict[str, Any], region: str) -> dict[str, Any]:
    """What a relaunch needs, from a Job's JSON (camelCase, as ``gcloud ... describe`` prints it)."""
    env = job_json.get("environment") or {}
    options = dict(((env.get("sdkPipelineOptions") or {}).get("options")) or {})
    parameters = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items() if k not in SDK_OPTIONS
    }
    labels = {k: v for k, v in (job_json.get("labels") or {}).items() if not k.startswith("goog-")}
    return {
        "name": job_json.get("name", ""),
        "type": str(job_json.get("type", "")).removeprefix("JOB_TYPE_"),
        "region": job_json.get("location") or region,
        "templatePath": str(options.get("templateLocation") or options.get("template_location") or ""),
        "templateKind": "flex",
        "parameters": parameters,
        "environment": _runtime(env, labels),
        "labels": labels,
    }


def read_spec(state_file: str, region: str) -> dict[str, Any]:
    """The relaunch section of a state file (or one derived from a plain ``gcloud`` JSON file)."""
    path = Path(state_file)
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


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ActionError(f"Cannot write the state file {path}: {exc.strerror or exc}.") from None


# --- dataflow.describe_job -------------------------------------------------------------------


class DescribeParams(JobParams):
    path: str | None = None
    """State file (default: DIRECTORY/pipeline_state_<name>_<ts>.json)."""
    directory: str | None = None
    """Where to write it (default: the files store's pipeline dir, else the step's workdir)."""


class DescribeOutputs(ActionOutputs):
    path: str
    """The state file."""
    job_id: str
    """Job id."""
    name: str
    """Job name."""
    state: str
    """Current state, e.g. RUNNING."""
    type: str
    """STREAMING or BATCH."""
    parameters: dict[str, str]
    """Launch parameters (what a relaunch passes)."""
    template: str
    """Template path, or empty when the job does not report it."""


def _describe_describe(p: DescribeParams) -> str:
    out = p.path or f"{p.directory or '<pipeline backups>'}/pipeline_state_<name>_<YYYYmmdd_HHMMSS>.json"
    get = api_call("JobsV1Beta3.GetJob", p.region, f"job={show_job(p)}", "view=JOB_VIEW_ALL")
    return f"{get} > {out}"


def _state_path(ctx: StepContext, params: DescribeParams, job_name: str) -> Path:
    if params.path:
        return Path(params.path)
    directory = params.directory or ctx.environment.stores.get("files", {}).get("pipeline") or ctx.workdir
    return Path(directory) / f"pipeline_state_{job_name}_{stamp()}.json"


@action("dataflow.describe_job", Effect.READ_ONLY,
        "Save a Dataflow job (full view: parameters, environment, labels) to a JSON state file.",
        target=show_job, describe=_describe_describe)
def describe_job(ctx: StepContext, params: DescribeParams) -> DescribeOutputs:
    from google.cloud import dataflow_v1beta3 as df

    with working_on(ctx, params, "describe") as (s, ref):
        job = find(s, ref, full=True)
    data = json.loads(df.Job.to_json(job, use_integers_for_enums=False, indent=None))
    spec = relaunch_spec(data, s.region)
    data["runbook"] = {"savedAt": iso_z(utc_now()), "project": s.project, **spec}
    path = _state_path(ctx, params, job.name)
    _write(path, data)
    template = spec["templatePath"] or "?"
    ctx.log(f"{label(job)}: {state_of(job)} {type_of(job)} in {job.location}; template {template}")
    ctx.log(f"parameters: {json.dumps(spec['parameters'], sort_keys=True)}")
    ctx.log(f"saved {path}")
    return DescribeOutputs(
        path=str(path),
        job_id=job.id,
        name=job.name,
        state=state_of(job),
        type=type_of(job),
        parameters=spec["parameters"],
        template=spec["templatePath"],
    )
