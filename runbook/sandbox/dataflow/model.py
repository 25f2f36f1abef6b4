"""The Dataflow stand-in's job model: enum names, the API error, one job and how it renders.

Enums are kept as their names; the REST client sends and wants ints (``$alt=json;enum-encoding=int``),
curl and the control routes use names: :func:`parse_enum` accepts both, :meth:`Job.render` writes
either.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

from runbook.core.timestamps import iso_z

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
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")
LOCATION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")


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


def iso(ts: float) -> str:
    """Epoch seconds as the API's timestamps: ``2025-11-23T10:30:00.000000Z``."""
    return iso_z(datetime.fromtimestamp(ts, UTC), micro=True)


def parse_enum(value: Any, names: tuple[str, ...], field: str) -> str:
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


def check_job_name(name: str, message: str) -> None:
    """Refuse a job name the service would refuse (INVALID_ARGUMENT with ``message``)."""
    if not name or not JOB_NAME.match(name):
        raise DataflowApiError("INVALID_ARGUMENT", message)


def check_location(location: str) -> None:
    """Refuse a location that is not shaped like a region (``europe-west1``)."""
    if not LOCATION.match(location):
        raise DataflowApiError("INVALID_ARGUMENT", f"Invalid location: '{location}'.")


def truthy(value: Any) -> bool:
    """A flag as the API and gcloud spell it (``true``, ``"1"``, ``"yes"``)."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def new_job_id(now: float) -> str:
    # Same shape as real ids: launch time (UTC here) then 19 random digits.
    digits = int.from_bytes(os.urandom(8), "big") % 10**19
    return f"{time.strftime('%Y-%m-%d_%H_%M_%S', time.gmtime(now))}-{digits:019d}"


@dataclasses.dataclass
class Job:
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
            "currentStateTime": iso(self.state_time),
            "createTime": iso(self.create_time),
            "startTime": iso(self.create_time),
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


def job_environment(launch_env: dict[str, Any], job_type: str) -> dict[str, Any]:
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
    pool: dict[str, Any] = {
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
