"""Launching Dataflow stand-in jobs: SDK submissions, flex and classic templates, seeded jobs.

A launched job is JOB_STATE_QUEUED (flex) or JOB_STATE_PENDING and becomes JOB_STATE_RUNNING after
the store's transition delay; ``batch_duration`` (off by default) lets batch jobs finish as
JOB_STATE_DONE. A launch is streaming when its ``parameters`` or ``launchOptions`` say
``streaming=true`` or its environment enables Streaming Engine. The launch parameters come back
under ``environment.sdkPipelineOptions.options`` in JOB_VIEW_ALL (the sandbox adds ``project``,
``region``, ``jobName`` and ``templateLocation`` unless given).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from runbook.sandbox.dataflow.model import (
    JOB_STATES,
    JOB_TYPES,
    TERMINAL_STATES,
    DataflowApiError,
    Job,
    check_job_name,
    check_location,
    job_environment,
    new_job_id,
    parse_enum,
    truthy,
)
from runbook.sandbox.dataflow.store import JobStore


@dataclass
class Launch:
    """What a request asks to start, before it becomes a :class:`Job`."""

    project: str
    location: str
    name: str
    job_type: str
    first_state: str
    environment: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # What was launched (kind, template path, parameters, runtime environment) for replay.
    record: dict[str, Any] = field(default_factory=dict)
    update: bool = False
    replace_job_id: str | None = None
    client_request_id: str | None = None


# The first state of a template launch, by kind (see the module docstring).
_FIRST_STATE = {"flex": "JOB_STATE_QUEUED", "classic": "JOB_STATE_PENDING"}


@dataclass
class TemplateLaunch:
    """A flex or classic template launch, as the routes read it from the request."""

    kind: Literal["flex", "classic"]
    template_path: str
    name: str
    parameters: dict[str, Any]
    launch_options: dict[str, Any]
    launch_env: dict[str, Any]
    update: bool
    validate_only: bool


def _job_to_replace(store: JobStore, launch: Launch) -> tuple[Job | None, Job | None]:
    """Which running job this launch replaces, and an identical earlier create to answer again.

    Returns:
        ``(old, same)``: the job an update or ``replaceJobId`` replaces, and the existing job when
        this is a retried create with the same client request id.
    """
    existing = store.active_named(launch.project, launch.location, launch.name)
    old: Job | None = None
    if launch.replace_job_id:
        old = store.find(launch.project, launch.location, launch.replace_job_id)
    elif launch.update:
        old = existing
        if old is None:
            raise DataflowApiError(
                "FAILED_PRECONDITION",
                f"Cannot update job '{launch.name}': there is no running job with that name.",
            )
    elif existing is not None:
        if launch.client_request_id and existing.client_request_id == launch.client_request_id:
            return None, existing  # the same create retried: the real service answers the same job
        raise DataflowApiError(
            "ALREADY_EXISTS",
            f"There is already an active job named {launch.name} with id: {existing.id}. If you want "
            "to submit a second job, try again by setting a different name.",
        )
    if old is not None and (
        not old.active or old.type != "JOB_TYPE_STREAMING" or old.state != "JOB_STATE_RUNNING"
    ):
        raise DataflowApiError(
            "FAILED_PRECONDITION",
            f"Cannot update job {old.id}: only a running streaming job can be updated "
            f"(it is {old.type} in {old.state}).",
        )
    return old, None


def _new_job(store: JobStore, launch: Launch, now: float, pending: list[list[Any]]) -> Job:
    """The job ``launch`` asks for, created ``now`` under a fresh id, in its first state."""
    job_id = new_job_id(now)
    while job_id in store.jobs:
        job_id = new_job_id(now)
    return Job(
        id=job_id,
        project_id=launch.project,
        location=launch.location,
        name=launch.name,
        type=launch.job_type,
        state=launch.first_state,
        state_time=now,
        create_time=now,
        environment=launch.environment,
        labels=launch.labels,
        launch=launch.record,
        pending=pending,
        client_request_id=launch.client_request_id,
    )


def start_job(store: JobStore, launch: Launch) -> Job:
    """Create a job (optionally replacing a running streaming one) and schedule it to run.

    Call with the store's lock held; returns the stored job itself.
    """
    check_job_name(
        launch.name,
        f"Invalid job name '{launch.name}': it must match [a-z]([-a-z0-9]{{0,1022}}[a-z0-9])?.",
    )
    now = store.now()
    old, same = _job_to_replace(store, launch)
    if same is not None:
        return same
    due = now + store.delay
    pending: list[list[Any]] = [[due, "JOB_STATE_RUNNING"]]
    if launch.job_type == "JOB_TYPE_BATCH" and store.batch_duration is not None:
        pending.append([due + store.batch_duration, "JOB_STATE_DONE"])
    job = _new_job(store, launch, now, pending)
    if old is not None:
        # The old job hands over when the new one starts running.
        job.replace_job_id = old.id
        old.replaced_by_job_id = job.id
        old.pending = [[due, "JOB_STATE_UPDATED"]]
    store.jobs[job.id] = job
    store.save()
    return job


def create_job(
    store: JobStore, project: str, location: str, body: dict[str, Any], replace_job_id: str
) -> Job:
    """Create a job from a Job message (what SDKs submit)."""
    job_type = parse_enum(body.get("type", 0), JOB_TYPES, "type")
    if job_type == "JOB_TYPE_UNKNOWN":
        job_type = "JOB_TYPE_BATCH"
    environment = copy.deepcopy(body.get("environment") or {})
    options = (environment.get("sdkPipelineOptions") or {}).get("options") or {}
    launch = Launch(
        project,
        location,
        str(body.get("name", "")),
        job_type,
        "JOB_STATE_PENDING",
        environment=environment,
        labels=dict(body.get("labels") or {}),
        record={"kind": "job", "parameters": copy.deepcopy(options)},
        replace_job_id=replace_job_id or None,
        client_request_id=body.get("clientRequestId") or None,
    )
    with store.lock:
        return copy.deepcopy(start_job(store, launch))


def _pipeline_options(parameters: dict[str, Any], defaults: dict[str, str]) -> dict[str, Any]:
    """The launch parameters as ``sdkPipelineOptions``, with what the service adds unless given."""
    options = {str(k): v for k, v in parameters.items()}
    for key, value in defaults.items():
        options.setdefault(key, value)
    return {"options": options, "display_data": []}


def launch_template(store: JobStore, project: str, location: str, request: TemplateLaunch) -> Job | None:
    """Launch a flex or classic template; ``None`` for a validate-only (dry) run."""
    if not request.template_path:
        raise DataflowApiError(
            "INVALID_ARGUMENT", "A template location (GCS path or container spec) is required."
        )
    streaming = any(
        truthy(src.get("streaming", False)) for src in (request.parameters, request.launch_options)
    ) or truthy(request.launch_env.get("enableStreamingEngine", False))
    job_type = "JOB_TYPE_STREAMING" if streaming else "JOB_TYPE_BATCH"
    environment = job_environment(request.launch_env, job_type)
    environment["sdkPipelineOptions"] = _pipeline_options(
        request.parameters,
        {
            "project": project,
            "region": location,
            "jobName": request.name,
            "templateLocation": request.template_path,
        },
    )
    record = {
        "kind": request.kind,
        "templatePath": request.template_path,
        "parameters": copy.deepcopy(request.parameters),
        "launchOptions": copy.deepcopy(request.launch_options),
        "environment": copy.deepcopy(request.launch_env),
    }
    labels = {str(k): str(v) for k, v in (request.launch_env.get("additionalUserLabels") or {}).items()}
    if request.validate_only:
        check_job_name(request.name, f"Invalid job name '{request.name}'.")
        return None
    launch = Launch(
        project,
        location,
        request.name,
        job_type,
        _FIRST_STATE[request.kind],
        environment=environment,
        labels=labels,
        record=record,
        update=request.update,
    )
    with store.lock:
        return copy.deepcopy(start_job(store, launch))


def seed_job(
    store: JobStore,
    project: str,
    location: str,
    name: str,
    *,
    parameters: dict[str, Any],
    job_type: str,
    state: str,
    labels: dict[str, str],
    environment: dict[str, Any],
    container_spec_gcs_path: str,
) -> Job:
    """Add a job already in ``state``, as if launched from a flex template earlier."""
    job_type = parse_enum(job_type, JOB_TYPES, "type")
    state = parse_enum(state, JOB_STATES, "state")
    check_location(location)
    env = job_environment(environment, job_type)
    defaults = {"project": project, "region": location, "jobName": name}
    if container_spec_gcs_path:
        defaults["templateLocation"] = container_spec_gcs_path
    env["sdkPipelineOptions"] = _pipeline_options(parameters, defaults)
    record = {
        "kind": "flex",
        "templatePath": container_spec_gcs_path,
        "parameters": copy.deepcopy(parameters),
        "launchOptions": {},
        "environment": copy.deepcopy(environment),
    }
    with store.lock:
        now = store.now()
        check_job_name(name, f"Invalid job name '{name}'.")
        if state not in TERMINAL_STATES and store.active_named(project, location, name):
            raise DataflowApiError("ALREADY_EXISTS", f"There is already an active job named {name}.")
        pending: list[list[Any]] = []
        if state == "JOB_STATE_RUNNING" and job_type == "JOB_TYPE_BATCH" and store.batch_duration is not None:
            pending.append([now + store.batch_duration, "JOB_STATE_DONE"])
        launch = Launch(
            project, location, name, job_type, state, environment=env, labels=dict(labels), record=record
        )
        job = _new_job(store, launch, now, pending)
        store.jobs[job.id] = job
        store.save()
        return copy.deepcopy(job)
