"""A local Dataflow (v1b3 REST) server with real, time-driven job state.

No Dataflow emulator exists, so the sandbox serves the slice of the REST surface that the real
``google.cloud.dataflow_v1beta3`` clients (``transport="rest"``) call, keeping jobs in memory and,
with a state directory, in ``dataflow-state.json`` (written atomically, so a restart keeps jobs).

Connect a real client with::

    dataflow_v1beta3.JobsV1Beta3Client(
        transport="rest", credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=server.endpoint))

REST routes (``{p}`` project, ``{l}`` location; the routes without ``/locations/{l}`` mean
``us-central1``, as the real service does):

* ``GET  /v1b3/projects/{p}[/locations/{l}]/jobs`` list (``filter`` int enum, ``pageSize``,
  ``pageToken``; always the summary view, as the service documents)
* ``GET  /v1b3/projects/{p}/jobs:aggregated`` list across locations (down ones in ``failedLocation``)
* ``POST /v1b3/projects/{p}[/locations/{l}]/jobs`` create_job (``replaceJobId`` query)
* ``GET  /v1b3/projects/{p}[/locations/{l}]/jobs/{id}`` get_job (``view``)
* ``PUT  /v1b3/projects/{p}[/locations/{l}]/jobs/{id}`` update_job: ``requestedState``
  JOB_STATE_CANCELLED or JOB_STATE_DRAINED, or ``updateMask`` of ``runtimeUpdatableParams.*``
* ``POST /v1b3/projects/{p}/locations/{l}/flexTemplates:launch`` launch_flex_template
* ``POST /v1b3/projects/{p}[/locations/{l}]/templates:launch`` launch_template (``gcsPath`` or
  ``dynamicTemplate.gcsPath`` query)

Job model: a launched job is JOB_STATE_QUEUED (flex) or JOB_STATE_PENDING and becomes
JOB_STATE_RUNNING after ``transition_delay``; cancel goes CANCELLING → CANCELLED and drain
(streaming only) DRAINING → DRAINED after the same delay; ``batch_duration`` (off by default) lets
batch jobs finish as JOB_STATE_DONE. A launch is streaming when its ``parameters`` or
``launchOptions`` say ``streaming=true`` or its environment enables Streaming Engine. The launch
parameters come back under ``environment.sdkPipelineOptions.options`` in JOB_VIEW_ALL (the
sandbox adds ``project``, ``region``, ``jobName`` and ``templateLocation`` unless given).

Errors use Google's JSON shape. Note that the REST transport maps them by HTTP status alone:
400 (INVALID_ARGUMENT and FAILED_PRECONDITION alike) raises ``BadRequest``, 403 ``Forbidden``,
409 ``Conflict``; read ``exc.response.json()["error"]["status"]`` for the gRPC-style status.

Control routes (JSON in and out, enums as names): ``GET /_control/health``, ``GET /_control/state``,
``POST /_control/fail-job`` ``{"projectId", "location", "jobId"}``,
``POST /_control/location-down`` ``{"location", "down": true|false}``,
``POST /_control/seed-job`` ``{"projectId", "location", "name", "parameters"?, "type"?, "state"?,
"labels"?, "environment"?, "containerSpecGcsPath"?}``, ``POST /_control/reset``.

Run as a process: ``python -m runbook.sandbox.dataflow_server --port 0 --state-dir DIR`` prints
``listening http://127.0.0.1:PORT`` and serves until SIGTERM.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DataflowApiError", "DataflowServer", "STATE_FILE"]

STATE_FILE = "dataflow-state.json"
DEFAULT_LOCATION = "us-central1"

# Enum names in proto number order: the REST client sends ints (``$alt=json;enum-encoding=int``).
JOB_STATES = (
    "JOB_STATE_UNKNOWN", "JOB_STATE_STOPPED", "JOB_STATE_RUNNING", "JOB_STATE_DONE",
    "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_UPDATED", "JOB_STATE_DRAINING",
    "JOB_STATE_DRAINED", "JOB_STATE_PENDING", "JOB_STATE_CANCELLING", "JOB_STATE_QUEUED",
    "JOB_STATE_RESOURCE_CLEANING_UP", "JOB_STATE_PAUSING", "JOB_STATE_PAUSED",
)  # fmt: skip
JOB_TYPES = ("JOB_TYPE_UNKNOWN", "JOB_TYPE_BATCH", "JOB_TYPE_STREAMING")
LIST_FILTERS = ("UNKNOWN", "ALL", "TERMINATED", "ACTIVE")
JOB_VIEWS = ("JOB_VIEW_UNKNOWN", "JOB_VIEW_SUMMARY", "JOB_VIEW_ALL", "JOB_VIEW_DESCRIPTION")
TERMINAL_STATES = frozenset(
    {"JOB_STATE_DONE", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_UPDATED", "JOB_STATE_DRAINED"}
)
RUNTIME_PARAMS = ("maxNumWorkers", "minNumWorkers", "workerUtilizationHint")

_HTTP_FOR_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "INTERNAL": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
}  # fmt: skip
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")
_LOCATION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 100


class DataflowApiError(Exception):
    """An API error, answered over HTTP in Google's JSON error shape.

    Attributes:
        status: The canonical status name, e.g. ``"FAILED_PRECONDITION"``.
        http_code: The HTTP status code for ``status``.
        message: The human-readable message.
    """

    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.http_code = _HTTP_FOR_STATUS.get(status, 500)
        self.message = message
        self.details = details or []

    def to_json(self) -> dict[str, Any]:
        """Return the ``{"error": {...}}`` body Google APIs answer with."""
        error: dict[str, Any] = {"code": self.http_code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _enum(value: Any, names: tuple[str, ...], field: str) -> str:
    """Accept an enum as its int (what the client sends) or its name (curl, control API)."""
    if isinstance(value, bool):
        raise DataflowApiError("INVALID_ARGUMENT", f"Invalid value for {field}: {value!r}")
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        if value.isdigit() and int(value) < len(names):
            return names[int(value)]
        if value in names:
            return value
    raise DataflowApiError("INVALID_ARGUMENT", f"Invalid value for {field}: {value!r}")


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _new_job_id(now: float) -> str:
    # Same shape as real ids: launch time (UTC here) then 19 random digits.
    return f"{time.strftime('%Y-%m-%d_%H_%M_%S', time.gmtime(now))}-{int.from_bytes(os.urandom(8), 'big') % 10**19:019d}"


@dataclasses.dataclass
class _Job:
    """One job; persisted with ``dataclasses.asdict`` and rendered to Job JSON on the way out."""

    id: str
    project_id: str
    location: str
    name: str
    type: str
    state: str
    state_time: float
    create_time: float
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    requested_state: str | None = None
    replace_job_id: str | None = None
    replaced_by_job_id: str | None = None
    client_request_id: str | None = None
    runtime_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    # What was launched (kind, template path, parameters, runtime environment) for replay.
    launch: dict[str, Any] = dataclasses.field(default_factory=dict)
    # [[due_epoch, state], ...] in order: transitions are applied lazily when a request looks.
    pending: list[list[Any]] = dataclasses.field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL_STATES

    def advance(self, now: float) -> None:
        """Apply every transition that is due, stamping each with its own due time."""
        while self.pending and self.pending[0][0] <= now:
            due, state = self.pending.pop(0)
            self.state, self.state_time = state, due

    def set_state(self, state: str, now: float, then: list[list[Any]] | None = None) -> None:
        self.state, self.state_time, self.pending = state, now, list(then or [])

    def render(self, *, full: bool, int_enums: bool) -> dict[str, Any]:
        """Return the Job as the REST API's camelCase JSON.

        Args:
            full: JOB_VIEW_ALL/DESCRIPTION (keeps ``environment.sdkPipelineOptions``) or summary.
            int_enums: Encode enums as numbers, as ``$alt=json;enum-encoding=int`` asks.
        """

        def enum(name: str, names: tuple[str, ...]) -> str | int:
            return names.index(name) if int_enums else name

        env = copy.deepcopy(self.environment)
        if not full:
            env.pop("sdkPipelineOptions", None)
        out: dict[str, Any] = {
            "id": self.id,
            "projectId": self.project_id,
            "name": self.name,
            "type": enum(self.type, JOB_TYPES),
            "environment": env,
            "currentState": enum(self.state, JOB_STATES),
            "currentStateTime": _iso(self.state_time),
            "createTime": _iso(self.create_time),
            "startTime": _iso(self.create_time),
            "location": self.location,
            "labels": dict(self.labels),
        }
        if self.requested_state:
            out["requestedState"] = enum(self.requested_state, JOB_STATES)
        for key, value in (
            ("replaceJobId", self.replace_job_id),
            ("replacedByJobId", self.replaced_by_job_id),
            ("clientRequestId", self.client_request_id),
        ):
            if value:
                out[key] = value
        if self.runtime_params:
            out["runtimeUpdatableParams"] = dict(self.runtime_params)
        return out


def _job_environment(launch_env: dict[str, Any], job_type: str) -> dict[str, Any]:
    """Map a template launch's runtime environment onto the Job's ``Environment`` message.

    Why: the client drops unknown fields, so launch-only names (``tempLocation``,
    ``maxWorkers``...) must land where a real Job carries them to be visible at all.
    """
    env: dict[str, Any] = {}
    renames = {
        "tempLocation": "tempStoragePrefix",
        "serviceAccountEmail": "serviceAccountEmail",
        "additionalExperiments": "experiments",
        "kmsKeyName": "serviceKmsKeyName",
        "workerRegion": "workerRegion",
        "workerZone": "workerZone",
        "streamingMode": "streamingMode",
        "flexrsGoal": "flexResourceSchedulingGoal",
    }
    for src, dst in renames.items():
        if src in launch_env:
            env[dst] = copy.deepcopy(launch_env[src])
    pool = {
        key: launch_env[key]
        for key in (
            "numWorkers",
            "machineType",
            "diskSizeGb",
            "zone",
            "network",
            "subnetwork",
            "ipConfiguration",
        )
        if key in launch_env
    }
    autoscaling = {}
    if "autoscalingAlgorithm" in launch_env:
        autoscaling["algorithm"] = launch_env["autoscalingAlgorithm"]
    if "maxWorkers" in launch_env:
        autoscaling["maxNumWorkers"] = launch_env["maxWorkers"]
    if autoscaling:
        pool["autoscalingSettings"] = autoscaling
    if pool:
        env["workerPools"] = [{"kind": "harness", **pool}]
    env["version"] = {"job_type": "FNAPI_STREAMING" if job_type == "JOB_TYPE_STREAMING" else "FNAPI_BATCH"}
    return env


class _Store:
    """All jobs and outages, behind one lock; persisted after every mutation when given a path."""

    def __init__(
        self,
        path: str | None,
        transition_delay: float,
        batch_duration: float | None,
        projects: Iterable[str] | None,
        clock: Callable[[], float],
    ) -> None:
        self._lock = threading.RLock()
        self._path = path
        self._delay = transition_delay
        self._batch_duration = batch_duration
        self._projects = frozenset(projects) if projects is not None else None
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._down: set[str] = set()
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            self._jobs = {rec["id"]: _Job(**rec) for rec in data.get("jobs", [])}
            self._down = set(data.get("downLocations", []))

    # -- persistence -------------------------------------------------------------------------

    def _save(self) -> None:
        if not self._path:
            return
        data = {
            "version": 1,
            "jobs": [dataclasses.asdict(job) for job in self._jobs.values()],
            "downLocations": sorted(self._down),
        }
        tmp = f"{self._path}.{os.getpid()}.tmp"
        # Temp file + os.replace: a crash mid-write leaves the previous state whole. No fsync: this
        # guards against torn files from a killed process, not against power loss.
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self._path)

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        for job in self._jobs.values():
            job.advance(now)
        return now

    def check(self, project: str, location: str | None, permission: str) -> None:
        """Refuse requests to a down location (503) or, if projects are configured, others (403)."""
        if location is not None:
            if not _LOCATION.match(location):
                raise DataflowApiError("INVALID_ARGUMENT", f"Invalid location: '{location}'.")
            with self._lock:
                if location in self._down:
                    raise DataflowApiError(
                        "UNAVAILABLE", f"The service is currently unavailable in location {location}."
                    )
        if self._projects is not None and project not in self._projects:
            raise DataflowApiError(
                "PERMISSION_DENIED",
                f"Permission '{permission}' denied on resource 'projects/{project}' (or it may not exist).",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "IAM_PERMISSION_DENIED",
                        "domain": "iam.googleapis.com",
                        "metadata": {"permission": permission, "resource": f"projects/{project}"},
                    }
                ],
            )

    def _find(self, project: str, location: str, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None or job.project_id != project or job.location != location:
            raise DataflowApiError(
                "NOT_FOUND", f"(job {job_id}) Requested job with id {job_id} not found in {location}."
            )
        return job

    def _active_named(self, project: str, location: str, name: str) -> _Job | None:
        for job in self._jobs.values():
            if (
                job.project_id == project
                and job.location == location
                and job.name == name
                and job.active
                and not job.replaced_by_job_id
            ):
                return job
        return None

    def _launch(
        self,
        project: str,
        location: str,
        name: str,
        job_type: str,
        *,
        environment: dict[str, Any],
        labels: dict[str, str],
        launch: dict[str, Any],
        first_state: str,
        update: bool = False,
        replace_job_id: str | None = None,
        client_request_id: str | None = None,
    ) -> _Job:
        """Create a job (optionally replacing a running streaming one) and schedule it to run."""
        if not name or not _JOB_NAME.match(name):
            raise DataflowApiError(
                "INVALID_ARGUMENT",
                f"Invalid job name '{name}': it must match [a-z]([-a-z0-9]{{0,1022}}[a-z0-9])?.",
            )
        now = self._now()
        existing = self._active_named(project, location, name)
        old: _Job | None = None
        if replace_job_id:
            old = self._find(project, location, replace_job_id)
        elif update:
            old = existing
            if old is None:
                raise DataflowApiError(
                    "FAILED_PRECONDITION",
                    f"Cannot update job '{name}': there is no running job with that name.",
                )
        elif existing is not None:
            if client_request_id and existing.client_request_id == client_request_id:
                return existing  # the same create retried: the real service answers the same job
            raise DataflowApiError(
                "ALREADY_EXISTS",
                f"There is already an active job named {name} with id: {existing.id}. If you want to "
                "submit a second job, try again by setting a different name.",
            )
        if old is not None and (
            not old.active or old.type != "JOB_TYPE_STREAMING" or old.state != "JOB_STATE_RUNNING"
        ):
            raise DataflowApiError(
                "FAILED_PRECONDITION",
                f"Cannot update job {old.id}: only a running streaming job can be updated "
                f"(it is {old.type} in {old.state}).",
            )
        job_id = _new_job_id(now)
        while job_id in self._jobs:
            job_id = _new_job_id(now)
        due = now + self._delay
        pending: list[list[Any]] = [[due, "JOB_STATE_RUNNING"]]
        if job_type == "JOB_TYPE_BATCH" and self._batch_duration is not None:
            pending.append([due + self._batch_duration, "JOB_STATE_DONE"])
        job = _Job(
            id=job_id,
            project_id=project,
            location=location,
            name=name,
            type=job_type,
            state=first_state,
            state_time=now,
            create_time=now,
            environment=environment,
            labels=labels,
            launch=launch,
            pending=pending,
            client_request_id=client_request_id,
        )
        if old is not None:
            # The old job hands over when the new one starts running.
            job.replace_job_id = old.id
            old.replaced_by_job_id = job.id
            old.pending = [[due, "JOB_STATE_UPDATED"]]
        self._jobs[job.id] = job
        self._save()
        return job

    # -- the API -----------------------------------------------------------------------------

    def list_jobs(
        self, project: str, location: str | None, filter_name: str, page_size: int, page_token: str
    ) -> tuple[list[_Job], str, list[str]]:
        """List a project's jobs in one location (or all, when ``location`` is None).

        Returns:
            The page of jobs, the next page token ("" at the end) and the down locations skipped.
        """
        if page_size < 0:
            raise DataflowApiError("INVALID_ARGUMENT", "page_size must not be negative.")
        size = min(page_size or _DEFAULT_PAGE_SIZE, _MAX_PAGE_SIZE)
        key = f"{project}|{location or '*'}|{filter_name}"
        offset = 0
        if page_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(page_token.encode()))
                offset, token_key = int(token["o"]), token["k"]
                if offset < 0:
                    raise ValueError(offset)
            except (ValueError, KeyError, TypeError) as exc:
                raise DataflowApiError("INVALID_ARGUMENT", "Invalid page token.") from exc
            if token_key != key:
                raise DataflowApiError("INVALID_ARGUMENT", "The page token does not belong to this request.")
        with self._lock:
            self._now()
            failed = sorted(self._down) if location is None else []
            jobs = [
                job
                for job in self._jobs.values()
                if job.project_id == project
                and (job.location == location if location else job.location not in self._down)
            ]
            active = sorted((j for j in jobs if j.active), key=lambda j: (-j.create_time, j.id))
            done = sorted((j for j in jobs if not j.active), key=lambda j: (-j.state_time, j.id))
            # The documented orders: ACTIVE by creation, TERMINATED by termination, ALL both in
            # turn, UNKNOWN (unset) everything by creation; newest first as the console shows.
            ordered = {
                "ACTIVE": active,
                "TERMINATED": done,
                "ALL": active + done,
                "UNKNOWN": sorted(jobs, key=lambda j: (-j.create_time, j.id)),
            }[filter_name]
            page = [copy.deepcopy(j) for j in ordered[offset : offset + size]]
            more = offset + size < len(ordered)
        next_token = ""
        if more:
            raw = json.dumps({"o": offset + size, "k": key}).encode()
            next_token = base64.urlsafe_b64encode(raw).decode()
        return page, next_token, failed

    def get_job(self, project: str, location: str, job_id: str) -> _Job:
        """Return a snapshot of one job."""
        with self._lock:
            self._now()
            return copy.deepcopy(self._find(project, location, job_id))

    def update_job(
        self, project: str, location: str, job_id: str, body: dict[str, Any], update_mask: str
    ) -> _Job:
        """Cancel or drain a job (``requestedState``) or change its runtime-updatable params."""
        requested = _enum(body.get("requestedState", 0), JOB_STATES, "requested_state")
        paths = [p for p in update_mask.split(",") if p]
        with self._lock:
            now = self._now()
            job = self._find(project, location, job_id)
            if paths:
                if requested != "JOB_STATE_UNKNOWN":
                    raise DataflowApiError(
                        "INVALID_ARGUMENT",
                        "Cannot update both the requested state and fields in update_mask.",
                    )
                self._update_params(job, paths, body.get("runtimeUpdatableParams") or {})
            elif requested == "JOB_STATE_CANCELLED":
                self._cancel(job, now)
            elif requested == "JOB_STATE_DRAINED":
                self._drain(job, now)
            elif requested == "JOB_STATE_UNKNOWN":
                raise DataflowApiError("INVALID_ARGUMENT", "No requested state or update mask given.")
            else:
                raise DataflowApiError(
                    "INVALID_ARGUMENT", f"Unsupported requested state {requested} for job {job_id}."
                )
            self._save()
            return copy.deepcopy(job)

    def _cancel(self, job: _Job, now: float) -> None:
        if not job.active:
            raise DataflowApiError(
                "FAILED_PRECONDITION",
                f"(job {job.id}) Could not cancel workflow; workflow is in terminal state: {job.state}.",
            )
        if job.state == "JOB_STATE_CANCELLING":
            return  # already on its way: asking twice is not an error
        job.requested_state = "JOB_STATE_CANCELLED"
        job.set_state("JOB_STATE_CANCELLING", now, [[now + self._delay, "JOB_STATE_CANCELLED"]])
        self._drop_handover(job)

    def _drain(self, job: _Job, now: float) -> None:
        if job.type != "JOB_TYPE_STREAMING":
            raise DataflowApiError(
                "FAILED_PRECONDITION", f"(job {job.id}) Drain is only supported for streaming jobs."
            )
        if not job.active or job.state == "JOB_STATE_CANCELLING":
            raise DataflowApiError(
                "FAILED_PRECONDITION",
                f"(job {job.id}) Could not drain workflow; workflow is in state {job.state}.",
            )
        if job.state == "JOB_STATE_DRAINING":
            return
        job.requested_state = "JOB_STATE_DRAINED"
        job.set_state("JOB_STATE_DRAINING", now, [[now + self._delay, "JOB_STATE_DRAINED"]])
        self._drop_handover(job)

    def _drop_handover(self, job: _Job) -> None:
        # Stopping a replacement before it runs leaves the job it was replacing running.
        old = self._jobs.get(job.replace_job_id or "")
        if old is not None and old.replaced_by_job_id == job.id and old.active:
            old.replaced_by_job_id, old.pending = None, []

    def _update_params(self, job: _Job, paths: list[str], params: dict[str, Any]) -> None:
        fields = []
        for path in paths:
            prefix, _, field = path.partition(".")
            if prefix != "runtimeUpdatableParams" or field not in RUNTIME_PARAMS:
                raise DataflowApiError("INVALID_ARGUMENT", f"Unsupported update mask path: {path}.")
            fields.append(field)
        if not job.active:
            raise DataflowApiError(
                "FAILED_PRECONDITION", f"(job {job.id}) The job is in terminal state {job.state}."
            )
        merged = dict(job.runtime_params)
        for field in fields:
            if field in params:
                merged[field] = params[field]
            else:
                merged.pop(field, None)
        low, high = merged.get("minNumWorkers"), merged.get("maxNumWorkers")
        if low is not None and high is not None and int(low) > int(high):
            raise DataflowApiError("INVALID_ARGUMENT", "min_num_workers must not exceed max_num_workers.")
        job.runtime_params = merged

    def create_job(self, project: str, location: str, body: dict[str, Any], replace_job_id: str) -> _Job:
        """Create a job from a Job message (what SDKs submit)."""
        job_type = _enum(body.get("type", 0), JOB_TYPES, "type")
        if job_type == "JOB_TYPE_UNKNOWN":
            job_type = "JOB_TYPE_BATCH"
        environment = copy.deepcopy(body.get("environment") or {})
        options = (environment.get("sdkPipelineOptions") or {}).get("options") or {}
        with self._lock:
            job = self._launch(
                project,
                location,
                str(body.get("name", "")),
                job_type,
                environment=environment,
                labels=dict(body.get("labels") or {}),
                launch={"kind": "job", "parameters": copy.deepcopy(options)},
                first_state="JOB_STATE_PENDING",
                replace_job_id=replace_job_id or None,
                client_request_id=body.get("clientRequestId") or None,
            )
            return copy.deepcopy(job)

    def launch_template(
        self,
        project: str,
        location: str,
        *,
        kind: str,
        template_path: str,
        name: str,
        parameters: dict[str, Any],
        launch_options: dict[str, Any],
        launch_env: dict[str, Any],
        update: bool,
        validate_only: bool,
        first_state: str,
    ) -> _Job | None:
        """Launch a flex or classic template; ``None`` for a validate-only (dry) run."""
        if not template_path:
            raise DataflowApiError(
                "INVALID_ARGUMENT", "A template location (GCS path or container spec) is required."
            )
        streaming = any(
            _truthy(src.get("streaming", False)) for src in (parameters, launch_options)
        ) or _truthy(launch_env.get("enableStreamingEngine", False))
        job_type = "JOB_TYPE_STREAMING" if streaming else "JOB_TYPE_BATCH"
        environment = _job_environment(launch_env, job_type)
        options = {str(k): v for k, v in parameters.items()}
        for key, value in (
            ("project", project),
            ("region", location),
            ("jobName", name),
            ("templateLocation", template_path),
        ):
            options.setdefault(key, value)
        environment["sdkPipelineOptions"] = {"options": options, "display_data": []}
        launch = {
            "kind": kind,
            "templatePath": template_path,
            "parameters": copy.deepcopy(parameters),
            "launchOptions": copy.deepcopy(launch_options),
            "environment": copy.deepcopy(launch_env),
        }
        labels = {str(k): str(v) for k, v in (launch_env.get("additionalUserLabels") or {}).items()}
        if validate_only:
            if not name or not _JOB_NAME.match(name):
                raise DataflowApiError("INVALID_ARGUMENT", f"Invalid job name '{name}'.")
            return None
        with self._lock:
            job = self._launch(
                project,
                location,
                name,
                job_type,
                environment=environment,
                labels=labels,
                launch=launch,
                first_state=first_state,
                update=update,
            )
            return copy.deepcopy(job)

    # -- scenario control --------------------------------------------------------------------

    def fail_job(self, project: str, location: str, job_id: str) -> _Job:
        with self._lock:
            now = self._now()
            job = self._find(project, location, job_id)
            if not job.active:
                raise DataflowApiError(
                    "FAILED_PRECONDITION", f"Job {job_id} is already terminal ({job.state})."
                )
            job.set_state("JOB_STATE_FAILED", now)
            self._drop_handover(job)
            self._save()
            return copy.deepcopy(job)

    def set_location_down(self, location: str, down: bool) -> list[str]:
        with self._lock:
            (self._down.add if down else self._down.discard)(location)
            self._save()
            return sorted(self._down)

    def seed_job(
        self,
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
    ) -> _Job:
        job_type = _enum(job_type, JOB_TYPES, "type")
        state = _enum(state, JOB_STATES, "state")
        if not _LOCATION.match(location):
            raise DataflowApiError("INVALID_ARGUMENT", f"Invalid location: '{location}'.")
        env = _job_environment(environment, job_type)
        options = {**parameters}
        for key, value in (("project", project), ("region", location), ("jobName", name)):
            options.setdefault(key, value)
        if container_spec_gcs_path:
            options.setdefault("templateLocation", container_spec_gcs_path)
        env["sdkPipelineOptions"] = {"options": options, "display_data": []}
        with self._lock:
            now = self._now()
            if not _JOB_NAME.match(name):
                raise DataflowApiError("INVALID_ARGUMENT", f"Invalid job name '{name}'.")
            if state not in TERMINAL_STATES and self._active_named(project, location, name):
                raise DataflowApiError("ALREADY_EXISTS", f"There is already an active job named {name}.")
            pending: list[list[Any]] = []
            if (
                state == "JOB_STATE_RUNNING"
                and job_type == "JOB_TYPE_BATCH"
                and self._batch_duration is not None
            ):
                pending.append([now + self._batch_duration, "JOB_STATE_DONE"])
            job = _Job(
                id=_new_job_id(now),
                project_id=project,
                location=location,
                name=name,
                type=job_type,
                state=state,
                state_time=now,
                create_time=now,
                environment=env,
                labels=dict(labels),
                launch={
                    "kind": "flex",
                    "templatePath": container_spec_gcs_path,
                    "parameters": copy.deepcopy(parameters),
                    "launchOptions": {},
                    "environment": copy.deepcopy(environment),
                },
                pending=pending,
            )
            self._jobs[job.id] = job
            self._save()
            return copy.deepcopy(job)

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._down.clear()
            self._save()

    def dump(self) -> dict[str, Any]:
        """Everything, for drills and debugging: full jobs plus their launch record and schedule."""
        with self._lock:
            self._now()
            jobs = []
            for job in sorted(self._jobs.values(), key=lambda j: (j.create_time, j.id)):
                out = job.render(full=True, int_enums=False)
                out["launch"] = copy.deepcopy(job.launch)
                out["pendingTransitions"] = [{"at": _iso(due), "state": st} for due, st in job.pending]
                jobs.append(out)
            return {"jobs": jobs, "downLocations": sorted(self._down)}


# -- HTTP ------------------------------------------------------------------------------------

_P = r"^/v1b3/projects/(?P<project>[^/]+)"
_L = r"/locations/(?P<location>[^/]+)"
_J = r"/jobs/(?P<job_id>[^/:]+)$"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("GET", _P + r"/jobs:aggregated$", "aggregated_list_jobs"),
        ("GET", _P + _L + r"/jobs$", "list_jobs"),
        ("GET", _P + r"/jobs$", "list_jobs"),
        ("POST", _P + _L + r"/jobs$", "create_job"),
        ("POST", _P + r"/jobs$", "create_job"),
        ("GET", _P + _L + _J, "get_job"),
        ("GET", _P + _J, "get_job"),
        ("PUT", _P + _L + _J, "update_job"),
        ("PUT", _P + _J, "update_job"),
        ("POST", _P + _L + r"/flexTemplates:launch$", "launch_flex_template"),
        ("POST", _P + _L + r"/templates:launch$", "launch_template"),
        ("POST", _P + r"/templates:launch$", "launch_template"),
    )
]
_PERMISSIONS = {
    "aggregated_list_jobs": "dataflow.jobs.list",
    "list_jobs": "dataflow.jobs.list",
    "create_job": "dataflow.jobs.create",
    "get_job": "dataflow.jobs.get",
    "update_job": "dataflow.jobs.update",
    "launch_flex_template": "dataflow.jobs.create",
    "launch_template": "dataflow.jobs.create",
}


def _api(
    store: _Store, method: str, path: str, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Route one v1b3 request to the store and render its answer."""
    for route_method, pattern, route_name in _ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            name = route_name
            break
    else:
        raise DataflowApiError("NOT_FOUND", f"Method not found: {method} {path}")
    args = {k: unquote(v) for k, v in match.groupdict().items()}
    project = args["project"]
    location = args.get("location") or (None if name == "aggregated_list_jobs" else DEFAULT_LOCATION)
    store.check(project, location, _PERMISSIONS[name])
    int_enums = "enum-encoding=int" in query.get("$alt", "")

    def render(job: _Job, view: str = "JOB_VIEW_SUMMARY") -> dict[str, Any]:
        return job.render(full=view in ("JOB_VIEW_ALL", "JOB_VIEW_DESCRIPTION"), int_enums=int_enums)

    def integer(key: str) -> int:
        try:
            return int(query.get(key) or 0)
        except ValueError as exc:
            raise DataflowApiError("INVALID_ARGUMENT", f"Invalid value for {key}: {query[key]!r}") from exc

    if name in ("list_jobs", "aggregated_list_jobs"):
        jobs, token, failed = store.list_jobs(
            project,
            location,
            _enum(query.get("filter", 0), LIST_FILTERS, "filter"),
            integer("pageSize"),
            query.get("pageToken", ""),
        )
        out: dict[str, Any] = {}
        if jobs:
            out["jobs"] = [render(job) for job in jobs]  # ListJobs always answers summaries
        if token:
            out["nextPageToken"] = token
        if failed:
            out["failedLocation"] = [{"name": loc} for loc in failed]
        return out
    assert location is not None
    view = _enum(query.get("view", 0), JOB_VIEWS, "view")
    if name == "get_job":
        return render(store.get_job(project, location, args["job_id"]), view)
    if name == "update_job":
        return render(
            store.update_job(project, location, args["job_id"], body, query.get("updateMask", "")), view
        )
    if name == "create_job":
        return render(store.create_job(project, location, body, query.get("replaceJobId", "")), view)
    if name == "launch_flex_template":
        param = body.get("launchParameter") or {}
        spec_path = param.get("containerSpecGcsPath") or ""
        if not spec_path and param.get("containerSpec"):
            spec_path = str(param["containerSpec"].get("image") or "inline-container-spec")
        job = store.launch_template(
            project,
            location,
            kind="flex",
            template_path=spec_path,
            name=str(param.get("jobName", "")),
            parameters=dict(param.get("parameters") or {}),
            launch_options=dict(param.get("launchOptions") or {}),
            launch_env=dict(param.get("environment") or {}),
            update=bool(param.get("update")),
            validate_only=bool(body.get("validateOnly")),
            first_state="JOB_STATE_QUEUED",
        )
        return {"job": render(job, "JOB_VIEW_ALL")} if job else {}
    # launch_template: the template path rides in the query, the launch parameters are the body.
    job = store.launch_template(
        project,
        location,
        kind="classic",
        template_path=query.get("gcsPath") or query.get("dynamicTemplate.gcsPath") or "",
        name=str(body.get("jobName", "")),
        parameters=dict(body.get("parameters") or {}),
        launch_options={},
        launch_env=dict(body.get("environment") or {}),
        update=bool(body.get("update")),
        validate_only=_truthy(query.get("validateOnly", "false")),
        first_state="JOB_STATE_PENDING",
    )
    return {"job": render(job, "JOB_VIEW_ALL")} if job else {}


def _control(store: _Store, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Serve the ``/_control/...`` drill routes."""

    def need(key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise DataflowApiError("INVALID_ARGUMENT", f"'{key}' (a non-empty string) is required.")
        return value

    route = (method, path.rstrip("/"))
    if route == ("GET", "/_control/health"):
        return {"ok": True}
    if route == ("GET", "/_control/state"):
        return store.dump()
    if route == ("POST", "/_control/fail-job"):
        job = store.fail_job(need("projectId"), need("location"), need("jobId"))
        return job.render(full=True, int_enums=False)
    if route == ("POST", "/_control/location-down"):
        return {"downLocations": store.set_location_down(need("location"), _truthy(body.get("down", True)))}
    if route == ("POST", "/_control/seed-job"):
        job = store.seed_job(
            need("projectId"),
            need("location"),
            need("name"),
            parameters=dict(body.get("parameters") or {}),
            job_type=body.get("type", "JOB_TYPE_STREAMING"),
            state=body.get("state", "JOB_STATE_RUNNING"),
            labels=dict(body.get("labels") or {}),
            environment=dict(body.get("environment") or {}),
            container_spec_gcs_path=str(body.get("containerSpecGcsPath") or ""),
        )
        return job.render(full=True, int_enums=False)
    if route == ("POST", "/_control/reset"):
        store.reset()
        return {}
    raise DataflowApiError("NOT_FOUND", f"No control route {method} {path}")


def _make_http_server(host: str, port: int, store: _Store, verbose: bool) -> Any:
    """Build the HTTP server; http.server is imported here so importing this module stays cheap."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's requests.Session expects
        server_version = "dataflow-sandbox/1"
        timeout = 60  # an idle keep-alive connection must not pin a thread forever

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            try:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError as exc:
                    raise DataflowApiError(
                        "INVALID_ARGUMENT", f"Invalid JSON payload received: {exc}"
                    ) from exc
                if not isinstance(body, dict):
                    raise DataflowApiError("INVALID_ARGUMENT", "The JSON payload must be an object.")
                if url.path.startswith("/_control/"):
                    status, payload = 200, _control(store, method, url.path, body)
                else:
                    status, payload = 200, _api(store, method, url.path, query, body)
            except DataflowApiError as exc:
                status, payload = exc.http_code, exc.to_json()
            except Exception as exc:  # a bug here must reach the client as a 500, not a hang
                self.log_error("internal error: %r", exc)
                err = DataflowApiError("INTERNAL", f"Internal error: {exc!r}")
                status, payload = err.http_code, err.to_json()
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            if verbose:
                super().log_message(format, *args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def __init__(self) -> None:
            self.connections: set[Any] = set()
            self.connections_lock = threading.Lock()
            super().__init__((host, port), Handler)

        def get_request(self) -> tuple[Any, Any]:
            sock, addr = super().get_request()
            with self.connections_lock:
                self.connections.add(sock)
            return sock, addr

        def shutdown_request(self, request: Any) -> None:
            with self.connections_lock:
                self.connections.discard(request)
            super().shutdown_request(request)

        def close_connections(self) -> None:
            # Keep-alive handler threads outlive shutdown(); close their sockets so a client's pooled
            # connection cannot keep talking to a stopped server's state.
            with self.connections_lock:
                conns = list(self.connections)
            for sock in conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Server()


class DataflowServer:
    """The local Dataflow REST server; use ``with DataflowServer() as server:`` or start/stop.

    Args:
        port: TCP port; 0 picks a free one (see ``endpoint`` after ``start``).
        state_dir: Directory for ``dataflow-state.json``; in-memory only when None.
        transition_delay: Seconds each transition (to RUNNING, CANCELLED, DRAINED) takes.
        host: Interface to bind.
        projects: When given, the only projects callers may use; others answer 403.
        batch_duration: When given, batch jobs finish (JOB_STATE_DONE) this long after running.
        verbose: Log each request to stderr.
        clock: Time source (epoch seconds), replaceable for tests.
    """

    def __init__(
        self,
        port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        transition_delay: float = 0.5,
        *,
        host: str = "127.0.0.1",
        projects: Iterable[str] | None = None,
        batch_duration: float | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        path = None
        if state_dir is not None:
            os.makedirs(state_dir, exist_ok=True)
            path = os.path.join(os.fspath(state_dir), STATE_FILE)
        self.state_path = path
        self._store = _Store(path, transition_delay, batch_duration, projects, clock)
        self._verbose = verbose
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The base URL to give ``ClientOptions(api_endpoint=...)``; valid after ``start``."""
        if self._httpd is None:
            raise RuntimeError("DataflowServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> DataflowServer:
        """Bind and serve on a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("DataflowServer already started")
        self._httpd = _make_http_server(self.host, self.port, self._store, self._verbose)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="dataflow-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DataflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scenario control (the same as the /_control routes) ---------------------------------

    def fail_job(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """Turn an active job JOB_STATE_FAILED now; returns the job JSON (enums as names).

        Raises:
            DataflowApiError: NOT_FOUND for an unknown job, FAILED_PRECONDITION if already terminal.
        """
        return self._store.fail_job(project, location, job_id).render(full=True, int_enums=False)

    def set_location_down(self, location: str, down: bool = True) -> list[str]:
        """Make every request to ``location`` answer 503 UNAVAILABLE (or restore it).

        Returns:
            The locations now down.
        """
        return self._store.set_location_down(location, down)

    def seed_job(
        self,
        project: str,
        location: str,
        name: str,
        parameters: dict[str, Any] | None = None,
        *,
        job_type: str = "JOB_TYPE_STREAMING",
        state: str = "JOB_STATE_RUNNING",
        labels: dict[str, str] | None = None,
        environment: dict[str, Any] | None = None,
        container_spec_gcs_path: str = "",
    ) -> dict[str, Any]:
        """Add a job already in ``state`` (running streaming by default); returns its JSON.

        Args:
            project: Project id.
            location: Region, e.g. ``"europe-west1"``.
            name: Job name (``[a-z]([-a-z0-9]*[a-z0-9])?``).
            parameters: Launch parameters, kept for replay.
            job_type: ``JOB_TYPE_STREAMING`` or ``JOB_TYPE_BATCH``.
            state: Any JobState name.
            labels: Job labels.
            environment: A flex-template runtime environment (``tempLocation``, ``maxWorkers``...).
            container_spec_gcs_path: The flex template it was "launched" from.
        """
        return self._store.seed_job(
            project,
            location,
            name,
            parameters=dict(parameters or {}),
            job_type=job_type,
            state=state,
            labels=dict(labels or {}),
            environment=dict(environment or {}),
            container_spec_gcs_path=container_spec_gcs_path,
        ).render(full=True, int_enums=False)

    def reset(self) -> None:
        """Forget every job and restore every location."""
        self._store.reset()

    def state(self) -> dict[str, Any]:
        """Return every job (full view, with its launch record and pending transitions) and outages."""
        return self._store.dump()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints ``listening URL`` once ready."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.dataflow_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--transition-delay", type=float, default=0.5)
    parser.add_argument("--batch-duration", type=float, default=None)
    parser.add_argument("--project", action="append", dest="projects", help="allowed project (repeatable)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = DataflowServer(
        args.port,
        args.state_dir,
        args.transition_delay,
        host=args.host,
        projects=args.projects,
        batch_duration=args.batch_duration,
        verbose=args.verbose,
    ).start()
    print(f"listening {server.endpoint}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
