"""The Dataflow stand-in's state: every job and outage behind one lock, persisted atomically.

Transitions are applied lazily: a job carries its scheduled ``[due, state]`` steps and each request
first applies the ones that are due (:meth:`JobStore.now`), so no timer thread is needed and a
restarted server still makes the transitions scheduled before it stopped.

Launching and seeding jobs live in :mod:`runbook.sandbox.dataflow.launch`; the requests that read
or change existing jobs are here.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from runbook.sandbox.dataflow.model import (
    JOB_STATES,
    RUNTIME_PARAMS,
    DataflowApiError,
    Job,
    check_location,
    iso,
    parse_enum,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


class JobStore:
    """All jobs and outages, behind one lock; persisted after every mutation when given a path.

    Args:
        path: The state file (``dataflow-state.json``); in memory only when None.
        transition_delay: Seconds each transition (to RUNNING, CANCELLED, DRAINED) takes.
        batch_duration: When given, batch jobs finish (JOB_STATE_DONE) this long after running.
        projects: When given, the only projects callers may use.
        clock: Time source (epoch seconds).
    """

    def __init__(
        self,
        path: str | None,
        transition_delay: float,
        batch_duration: float | None,
        projects: Iterable[str] | None,
        clock: Callable[[], float],
    ) -> None:
        self.lock = threading.RLock()
        self.delay = transition_delay
        self.batch_duration = batch_duration
        self.jobs: dict[str, Job] = {}
        self._path = path
        self._projects = frozenset(projects) if projects is not None else None
        self._clock = clock
        self._down: set[str] = set()
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            self.jobs = {rec["id"]: Job(**rec) for rec in data.get("jobs", [])}
            self._down = set(data.get("downLocations", []))

    # -- persistence and time ----------------------------------------------------------------

    def save(self) -> None:
        """Write the state file (call with the lock held, after a mutation)."""
        if not self._path:
            return
        data = {
            "version": 1,
            "jobs": [dataclasses.asdict(job) for job in self.jobs.values()],
            "downLocations": sorted(self._down),
        }
        tmp = f"{self._path}.{os.getpid()}.tmp"
        # Temp file + os.replace: a crash mid-write leaves the previous state whole. No fsync: this
        # guards against torn files from a killed process, not against power loss.
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self._path)

    def now(self) -> float:
        """The clock's time, after applying every transition due by then (call with the lock held)."""
        now = self._clock()
        for job in self.jobs.values():
            job.advance(now)
        return now

    # -- lookups -----------------------------------------------------------------------------

    def check(self, project: str, location: str | None, permission: str) -> None:
        """Refuse requests to a down location (503) or, if projects are configured, others (403)."""
        if location is not None:
            check_location(location)
            with self.lock:
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

    def find(self, project: str, location: str, job_id: str) -> Job:
        """The job itself (not a copy); NOT_FOUND unless it is in that project and location."""
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project or job.location != location:
            raise DataflowApiError(
                "NOT_FOUND", f"(job {job_id}) Requested job with id {job_id} not found in {location}."
            )
        return job

    def active_named(self, project: str, location: str, name: str) -> Job | None:
        """The active job with this name that no update is replacing, if any."""
        for job in self.jobs.values():
            if (
                job.project_id == project
                and job.location == location
                and job.name == name
                and job.active
                and not job.replaced_by_job_id
            ):
                return job
        return None

    # -- the API -----------------------------------------------------------------------------

    def list_jobs(
        self, project: str, location: str | None, filter_name: str, page_size: int, page_token: str
    ) -> tuple[list[Job], str, list[str]]:
        """List a project's jobs in one location (or all, when ``location`` is None).

        Returns:
            The page of jobs, the next page token ("" at the end) and the down locations skipped.
        """
        if page_size < 0:
            raise DataflowApiError("INVALID_ARGUMENT", "page_size must not be negative.")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        key = f"{project}|{location or '*'}|{filter_name}"
        offset = _page_offset(page_token, key)
        with self.lock:
            self.now()
            failed = sorted(self._down) if location is None else []
            jobs = [
                job
                for job in self.jobs.values()
                if job.project_id == project
                and (job.location == location if location else job.location not in self._down)
            ]
            ordered = _ordered(jobs, filter_name)
            page = [copy.deepcopy(j) for j in ordered[offset : offset + size]]
            more = offset + size < len(ordered)
        next_token = ""
        if more:
            raw = json.dumps({"o": offset + size, "k": key}).encode()
            next_token = base64.urlsafe_b64encode(raw).decode()
        return page, next_token, failed

    def get_job(self, project: str, location: str, job_id: str) -> Job:
        """Return a snapshot of one job."""
        with self.lock:
            self.now()
            return copy.deepcopy(self.find(project, location, job_id))

    def update_job(
        self, project: str, location: str, job_id: str, body: dict[str, Any], update_mask: str
    ) -> Job:
        """Cancel or drain a job (``requestedState``) or change its runtime-updatable params."""
        requested = parse_enum(body.get("requestedState", 0), JOB_STATES, "requested_state")
        paths = [p for p in update_mask.split(",") if p]
        with self.lock:
            now = self.now()
            job = self.find(project, location, job_id)
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
            self.save()
            return copy.deepcopy(job)

    def _cancel(self, job: Job, now: float) -> None:
        if not job.active:
            raise DataflowApiError(
                "FAILED_PRECONDITION",
                f"(job {job.id}) Could not cancel workflow; workflow is in terminal state: {job.state}.",
            )
        if job.state == "JOB_STATE_CANCELLING":
            return  # already on its way: asking twice is not an error
        job.requested_state = "JOB_STATE_CANCELLED"
        job.set_state("JOB_STATE_CANCELLING", now, [[now + self.delay, "JOB_STATE_CANCELLED"]])
        self.drop_handover(job)

    def _drain(self, job: Job, now: float) -> None:
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
        job.set_state("JOB_STATE_DRAINING", now, [[now + self.delay, "JOB_STATE_DRAINED"]])
        self.drop_handover(job)

    def drop_handover(self, job: Job) -> None:
        """Stopping a replacement before it runs leaves the job it was replacing running."""
        old = self.jobs.get(job.replace_job_id or "")
        if old is not None and old.replaced_by_job_id == job.id and old.active:
            old.replaced_by_job_id, old.pending = None, []

    @staticmethod
    def _update_params(job: Job, paths: list[str], params: dict[str, Any]) -> None:
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

    # -- scenario control --------------------------------------------------------------------

    def fail_job(self, project: str, location: str, job_id: str) -> Job:
        """Turn an active job JOB_STATE_FAILED now."""
        with self.lock:
            now = self.now()
            job = self.find(project, location, job_id)
            if not job.active:
                raise DataflowApiError(
                    "FAILED_PRECONDITION", f"Job {job_id} is already terminal ({job.state})."
                )
            job.set_state("JOB_STATE_FAILED", now)
            self.drop_handover(job)
            self.save()
            return copy.deepcopy(job)

    def set_location_down(self, location: str, down: bool) -> list[str]:
        """Mark ``location`` down (or up again); returns the locations now down."""
        with self.lock:
            (self._down.add if down else self._down.discard)(location)
            self.save()
            return sorted(self._down)

    def reset(self) -> None:
        """Forget every job and restore every location."""
        with self.lock:
            self.jobs.clear()
            self._down.clear()
            self.save()

    def dump(self) -> dict[str, Any]:
        """Everything, for drills and debugging: full jobs plus their launch record and schedule."""
        with self.lock:
            self.now()
            jobs = []
            for job in sorted(self.jobs.values(), key=lambda j: (j.create_time, j.id)):
                out = job.render(full=True, int_enums=False)
                out["launch"] = copy.deepcopy(job.launch)
                out["pendingTransitions"] = [{"at": iso(due), "state": st} for due, st in job.pending]
                jobs.append(out)
            return {"jobs": jobs, "downLocations": sorted(self._down)}


def _page_offset(page_token: str, key: str) -> int:
    """Where a page token says to continue; refused when it belongs to another query."""
    if not page_token:
        return 0
    try:
        token = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        offset, token_key = int(token["o"]), token["k"]
        if offset < 0:
            raise ValueError(offset)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataflowApiError("INVALID_ARGUMENT", "Invalid page token.") from exc
    if token_key != key:
        raise DataflowApiError("INVALID_ARGUMENT", "The page token does not belong to this request.")
    return offset


def _ordered(jobs: list[Job], filter_name: str) -> list[Job]:
    """The documented orders: ACTIVE by creation, TERMINATED by termination, ALL both in turn,
    UNKNOWN (unset) everything by creation; newest first as the console shows."""
    active = sorted((j for j in jobs if j.active), key=lambda j: (-j.create_time, j.id))
    done = sorted((j for j in jobs if not j.active), key=lambda j: (-j.state_time, j.id))
    return {
        "ACTIVE": active,
        "TERMINATED": done,
        "ALL": active + done,
        "UNKNOWN": sorted(jobs, key=lambda j: (-j.create_time, j.id)),
    }[filter_name]
