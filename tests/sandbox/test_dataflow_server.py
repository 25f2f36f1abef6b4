"""The local Dataflow server, driven end to end by the real dataflow_v1beta3 REST clients."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dataflow_v1beta3 as df

from runbook.sandbox.dataflow import STATE_FILE, DataflowApiError, DataflowServer

PROJECT = "drill-project"
US = "us-central1"
EU = "europe-west1"
DELAY = 0.05
REPO = Path(__file__).resolve().parents[2]
State = df.JobState


def _kw(endpoint: str) -> dict[str, Any]:
    return {
        "transport": "rest",
        "credentials": AnonymousCredentials(),
        "client_options": ClientOptions(api_endpoint=endpoint),
    }


def jobs_client(endpoint: str) -> df.JobsV1Beta3Client:
    return df.JobsV1Beta3Client(**_kw(endpoint))


def flex_client(endpoint: str) -> df.FlexTemplatesServiceClient:
    return df.FlexTemplatesServiceClient(**_kw(endpoint))


@pytest.fixture
def server() -> Iterator[DataflowServer]:
    with DataflowServer(transition_delay=DELAY) as srv:
        yield srv


def launch(
    endpoint: str,
    name: str,
    *,
    location: str = US,
    parameters: dict[str, str] | None = None,
    update: bool = False,
    project: str = PROJECT,
) -> df.Job:
    request = df.LaunchFlexTemplateRequest(
        project_id=project,
        location=location,
        launch_parameter=df.LaunchFlexTemplateParameter(
            job_name=name,
            container_spec_gcs_path="gs://templates/ingest/spec.json",
            parameters=parameters if parameters is not None else {"input": "sub-a", "streaming": "true"},
            environment=df.FlexTemplateRuntimeEnvironment(
                max_workers=4, temp_location="gs://tmp/x", additional_user_labels={"team": "sre"}
            ),
            update=update,
        ),
    )
    return flex_client(endpoint).launch_flex_template(request=request).job


def get(
    endpoint: str, job_id: str, location: str = US, view: df.JobView = df.JobView.JOB_VIEW_SUMMARY
) -> df.Job:
    return jobs_client(endpoint).get_job(
        request=df.GetJobRequest(project_id=PROJECT, location=location, job_id=job_id, view=view)
    )


def wait_state(endpoint: str, job_id: str, state: State, location: str = US, timeout: float = 5.0) -> df.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = get(endpoint, job_id, location)
        if job.current_state == state or time.monotonic() > deadline:
            assert job.current_state == state, f"{job_id} stuck in {job.current_state.name}"
            return job
        time.sleep(0.01)


def request_state(endpoint: str, job_id: str, state: State, location: str = US) -> df.Job:
    return jobs_client(endpoint).update_job(
        request=df.UpdateJobRequest(
            project_id=PROJECT, location=location, job_id=job_id, job=df.Job(requested_state=state)
        )
    )


def list_ids(
    endpoint: str, filter_: df.ListJobsRequest.Filter, location: str | None = US, page_size: int = 0
) -> list[str]:
    client = jobs_client(endpoint)
    if location is None:
        pager = client.aggregated_list_jobs(
            request=df.ListJobsRequest(project_id=PROJECT, filter=filter_, page_size=page_size)
        )
    else:
        pager = client.list_jobs(
            request=df.ListJobsRequest(
                project_id=PROJECT, location=location, filter=filter_, page_size=page_size
            )
        )
    return [job.id for job in pager]


def control(endpoint: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{endpoint}/_control/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def error_status(exc: gexc.GoogleAPICallError) -> str:
    return exc.response.json()["error"]["status"]


def test_launch_flex_template_appears_and_becomes_running(server: DataflowServer) -> None:
    job = launch(server.endpoint, "ingest-orders", location=EU)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d_\d\d_\d\d-\d{19}", job.id)
    assert job.current_state == State.JOB_STATE_QUEUED
    assert (job.name, job.location, job.project_id) == ("ingest-orders", EU, PROJECT)
    assert job.type_ == df.JobType.JOB_TYPE_STREAMING
    assert list_ids(server.endpoint, df.ListJobsRequest.Filter.ACTIVE, EU) == [job.id]
    assert list_ids(server.endpoint, df.ListJobsRequest.Filter.ACTIVE, US) == []

    running = wait_state(server.endpoint, job.id, State.JOB_STATE_RUNNING, EU)
    assert running.current_state_time.timestamp() > running.create_time.timestamp()
    assert dict(running.labels) == {"team": "sre"}
    assert running.environment.temp_storage_prefix == "gs://tmp/x"
    assert running.environment.worker_pools[0].autoscaling_settings.max_num_workers == 4
    # Launch parameters come back in the full view only (list and summary views omit them).
    assert not running.environment.sdk_pipeline_options
    full = get(server.endpoint, job.id, EU, df.JobView.JOB_VIEW_ALL)
    options = dict(full.environment.sdk_pipeline_options["options"])
    assert options["input"] == "sub-a"
    assert options["templateLocation"] == "gs://templates/ingest/spec.json"
    launched = [j for j in server.state()["jobs"] if j["id"] == job.id][0]["launch"]
    assert launched["parameters"] == {"input": "sub-a", "streaming": "true"}


def test_batch_launch_and_classic_template(server: DataflowServer) -> None:
    batch = launch(server.endpoint, "nightly-export", parameters={"date": "2024-01-01"})
    assert batch.type_ == df.JobType.JOB_TYPE_BATCH
    templates = df.TemplatesServiceClient(**_kw(server.endpoint))
    resp = templates.launch_template(
        request=df.LaunchTemplateRequest(
            project_id=PROJECT,
            location=EU,
            gcs_path="gs://dataflow-templates/latest/PubSub_to_BigQuery",
            launch_parameters=df.LaunchTemplateParameters(job_name="classic-job", parameters={"k": "v"}),
        )
    )
    assert resp.job.current_state == State.JOB_STATE_PENDING
    wait_state(server.endpoint, resp.job.id, State.JOB_STATE_RUNNING, EU)
    dry = templates.launch_template(
        request=df.LaunchTemplateRequest(
            project_id=PROJECT,
            location=EU,
            gcs_path="gs://t/x",
            validate_only=True,
            launch_parameters=df.LaunchTemplateParameters(job_name="dry-run"),
        )
    )
    assert not dry.job.id
    assert len(list_ids(server.endpoint, df.ListJobsRequest.Filter.ALL, None)) == 2


def test_create_job_pending_to_running(server: DataflowServer) -> None:
    client = jobs_client(server.endpoint)
    body = df.Job(
        name="sdk-submitted",
        type_=df.JobType.JOB_TYPE_STREAMING,
        labels={"env": "drill"},
        client_request_id="req-1",
        environment=df.Environment(
            temp_storage_prefix="gs://tmp/sdk", sdk_pipeline_options={"options": {"inputTopic": "t"}}
        ),
    )
    created = client.create_job(request=df.CreateJobRequest(project_id=PROJECT, location=EU, job=body))
    assert created.current_state == State.JOB_STATE_PENDING
    # The same client_request_id is a retried create: the same job comes back, not a conflict.
    again = client.create_job(request=df.CreateJobRequest(project_id=PROJECT, location=EU, job=body))
    assert again.id == created.id
    running = wait_state(server.endpoint, created.id, State.JOB_STATE_RUNNING, EU)
    assert (running.type_, dict(running.labels)) == (df.JobType.JOB_TYPE_STREAMING, {"env": "drill"})
    full = get(server.endpoint, created.id, EU, df.JobView.JOB_VIEW_ALL)
    assert full.environment.sdk_pipeline_options["options"]["inputTopic"] == "t"


def test_list_filters_and_pagination(server: DataflowServer) -> None:
    active = {server.seed_job(PROJECT, US, f"stream-{i}", {"i": str(i)})["id"] for i in range(5)}
    done = {
        server.seed_job(PROJECT, US, "old-batch", job_type="JOB_TYPE_BATCH", state="JOB_STATE_DONE")["id"],
        server.seed_job(PROJECT, US, "old-stream", state="JOB_STATE_CANCELLED")["id"],
    }
    server.seed_job("other-project", US, "stream-0")
    server.seed_job(PROJECT, EU, "eu-stream")

    client = jobs_client(server.endpoint)
    pager = client.list_jobs(
        request=df.ListJobsRequest(
            project_id=PROJECT, location=US, filter=df.ListJobsRequest.Filter.ACTIVE, page_size=2
        )
    )
    pages = [[job.id for job in page.jobs] for page in pager.pages]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert {i for p in pages for i in p} == active
    assert set(list_ids(server.endpoint, df.ListJobsRequest.Filter.TERMINATED, page_size=1)) == done
    all_ids = list_ids(server.endpoint, df.ListJobsRequest.Filter.ALL, page_size=3)
    assert len(all_ids) == 7 and set(all_ids) == active | done
    assert set(all_ids[:5]) == active  # ALL lists the active jobs first
    assert len(list_ids(server.endpoint, df.ListJobsRequest.Filter.ALL, None)) == 8  # + europe-west1
    # A token from one query is refused by another.
    token = client.list_jobs(
        request=df.ListJobsRequest(project_id=PROJECT, location=US, page_size=2)
    ).next_page_token
    with pytest.raises(gexc.BadRequest):
        client.list_jobs(
            request=df.ListJobsRequest(
                project_id=PROJECT, location=US, filter=df.ListJobsRequest.Filter.ACTIVE, page_token=token
            )
        )


def test_get_job_not_found(server: DataflowServer) -> None:
    with pytest.raises(gexc.NotFound):
        get(server.endpoint, "2024-01-01_00_00_00-123")
    eu_job = server.seed_job(PROJECT, EU, "eu-only")["id"]
    with pytest.raises(gexc.NotFound):
        get(server.endpoint, eu_job, US)  # right id, wrong location
    assert get(server.endpoint, eu_job, EU).name == "eu-only"


def test_cancel_reaches_cancelled(server: DataflowServer) -> None:
    job = launch(server.endpoint, "to-cancel")
    running = wait_state(server.endpoint, job.id, State.JOB_STATE_RUNNING)
    answer = request_state(server.endpoint, job.id, State.JOB_STATE_CANCELLED)
    assert answer.current_state == State.JOB_STATE_CANCELLING
    assert answer.requested_state == State.JOB_STATE_CANCELLED
    cancelled = wait_state(server.endpoint, job.id, State.JOB_STATE_CANCELLED)
    assert cancelled.current_state_time.timestamp() > running.current_state_time.timestamp()
    assert list_ids(server.endpoint, df.ListJobsRequest.Filter.TERMINATED) == [job.id]
    assert list_ids(server.endpoint, df.ListJobsRequest.Filter.ACTIVE) == []
    with pytest.raises(gexc.BadRequest) as err:
        request_state(server.endpoint, job.id, State.JOB_STATE_CANCELLED)
    assert error_status(err.value) == "FAILED_PRECONDITION"


def test_drain_streaming_reaches_drained(server: DataflowServer) -> None:
    job_id = server.seed_job(PROJECT, EU, "stream-drain", {"subscription": "s"})["id"]
    answer = request_state(server.endpoint, job_id, State.JOB_STATE_DRAINED, EU)
    assert answer.current_state == State.JOB_STATE_DRAINING
    wait_state(server.endpoint, job_id, State.JOB_STATE_DRAINED, EU)


def test_drain_batch_job_is_refused(server: DataflowServer) -> None:
    job_id = server.seed_job(PROJECT, US, "batch-job", job_type="JOB_TYPE_BATCH")["id"]
    with pytest.raises(gexc.BadRequest) as err:
        request_state(server.endpoint, job_id, State.JOB_STATE_DRAINED)
    # The REST transport picks the exception by HTTP status alone: a 400 FAILED_PRECONDITION is a
    # plain BadRequest, never the FailedPrecondition subclass. The status is in the body.
    assert not isinstance(err.value, gexc.FailedPrecondition)
    assert error_status(err.value) == "FAILED_PRECONDITION"
    assert get(server.endpoint, job_id).current_state == State.JOB_STATE_RUNNING


def test_invalid_launches_are_rejected(server: DataflowServer) -> None:
    with pytest.raises(gexc.BadRequest) as err:
        launch(server.endpoint, "Bad_Name")
    assert error_status(err.value) == "INVALID_ARGUMENT"
    with pytest.raises(gexc.BadRequest):
        flex_client(server.endpoint).launch_flex_template(
            request=df.LaunchFlexTemplateRequest(
                project_id=PROJECT, location=US, launch_parameter=df.LaunchFlexTemplateParameter(job_name="x")
            )
        )
    launch(server.endpoint, "dup")
    with pytest.raises(gexc.Conflict) as err:
        launch(server.endpoint, "dup")
    assert error_status(err.value) == "ALREADY_EXISTS"


def test_update_launch_replaces_running_streaming_job(server: DataflowServer) -> None:
    old = server.seed_job(PROJECT, US, "ingest", {"input": "a"})["id"]
    new = launch(server.endpoint, "ingest", parameters={"input": "b", "streaming": "true"}, update=True)
    assert new.replace_job_id == old
    wait_state(server.endpoint, new.id, State.JOB_STATE_RUNNING)
    replaced = wait_state(server.endpoint, old, State.JOB_STATE_UPDATED)
    assert replaced.replaced_by_job_id == new.id


def test_runtime_params_update_mask(server: DataflowServer) -> None:
    job_id = server.seed_job(PROJECT, US, "scalable")["id"]
    job = jobs_client(server.endpoint).update_job(
        request=df.UpdateJobRequest(
            project_id=PROJECT,
            location=US,
            job_id=job_id,
            job=df.Job(runtime_updatable_params=df.RuntimeUpdatableParams(max_num_workers=9)),
            update_mask={"paths": ["runtime_updatable_params.max_num_workers"]},
        )
    )
    assert job.runtime_updatable_params.max_num_workers == 9
    assert job.current_state == State.JOB_STATE_RUNNING


class ManualClock:
    """The server's clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_fail_job_through_control() -> None:
    clock = ManualClock()
    with DataflowServer(transition_delay=DELAY, clock=clock) as server:
        over_http = launch(server.endpoint, "will-fail").id
        seeded = control(
            server.endpoint, "seed-job", {"projectId": PROJECT, "location": US, "name": "also-fails"}
        )
        assert (seeded["currentState"], seeded["type"]) == ("JOB_STATE_RUNNING", "JOB_TYPE_STREAMING")
        by_api = seeded["id"]
        answer = control(
            server.endpoint, "fail-job", {"projectId": PROJECT, "location": US, "jobId": over_http}
        )
        assert answer["currentState"] == "JOB_STATE_FAILED"
        server.fail_job(PROJECT, US, by_api)
        failed = list(
            jobs_client(server.endpoint).list_jobs(
                request=df.ListJobsRequest(
                    project_id=PROJECT, location=US, filter=df.ListJobsRequest.Filter.TERMINATED
                )
            )
        )
        assert {j.id: j.current_state for j in failed} == {
            over_http: State.JOB_STATE_FAILED,
            by_api: State.JOB_STATE_FAILED,
        }
        clock.now += DELAY * 3  # past the QUEUED -> RUNNING that was due: it must not resurrect it
        assert get(server.endpoint, over_http).current_state == State.JOB_STATE_FAILED
        with pytest.raises(DataflowApiError) as err:
            server.fail_job(PROJECT, US, by_api)
        assert err.value.status == "FAILED_PRECONDITION"


def test_location_down_and_restore(server: DataflowServer) -> None:
    eu_job = server.seed_job(PROJECT, EU, "eu-stream")["id"]
    us_job = server.seed_job(PROJECT, US, "us-stream")["id"]
    assert control(server.endpoint, "location-down", {"location": EU, "down": True}) == {
        "downLocations": [EU]
    }
    with pytest.raises(gexc.ServiceUnavailable):
        list_ids(server.endpoint, df.ListJobsRequest.Filter.ACTIVE, EU)
    with pytest.raises(gexc.ServiceUnavailable):
        get(server.endpoint, eu_job, EU)
    with pytest.raises(gexc.ServiceUnavailable):
        launch(server.endpoint, "failover", location=EU)
    assert get(server.endpoint, us_job).current_state == State.JOB_STATE_RUNNING
    page = jobs_client(server.endpoint).aggregated_list_jobs(request=df.ListJobsRequest(project_id=PROJECT))
    assert [j.id for j in page] == [us_job]
    assert [f.name for f in page.failed_location] == [EU]

    server.set_location_down(EU, down=False)
    assert get(server.endpoint, eu_job, EU).current_state == State.JOB_STATE_RUNNING
    assert set(list_ids(server.endpoint, df.ListJobsRequest.Filter.ACTIVE, None)) == {eu_job, us_job}


def test_unknown_project_is_forbidden() -> None:
    with DataflowServer(transition_delay=DELAY, projects=[PROJECT]) as srv:
        assert list_ids(srv.endpoint, df.ListJobsRequest.Filter.ALL) == []
        with pytest.raises(gexc.Forbidden) as err:
            jobs_client(srv.endpoint).list_jobs(
                request=df.ListJobsRequest(project_id="intruder", location=US)
            )
        assert error_status(err.value) == "PERMISSION_DENIED"
        assert err.value.reason == "IAM_PERMISSION_DENIED"


def test_state_survives_restart(tmp_path: Path) -> None:
    with DataflowServer(state_dir=tmp_path, transition_delay=DELAY) as first:
        keep = launch(
            first.endpoint, "keeper", location=EU, parameters={"input": "x", "streaming": "true"}
        ).id
        stop = first.seed_job(PROJECT, US, "stopper")["id"]
        request_state(first.endpoint, stop, State.JOB_STATE_CANCELLED)
        first.set_location_down("asia-east1")
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert {j["id"] for j in saved["jobs"]} == {keep, stop}
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temp file left behind

    with DataflowServer(state_dir=tmp_path, transition_delay=DELAY) as second:
        # Transitions scheduled before the restart still happen, stamped with their due time.
        wait_state(second.endpoint, keep, State.JOB_STATE_RUNNING, EU)
        wait_state(second.endpoint, stop, State.JOB_STATE_CANCELLED)
        options = get(second.endpoint, keep, EU, df.JobView.JOB_VIEW_ALL).environment.sdk_pipeline_options
        assert options["options"]["input"] == "x"
        assert second.state()["downLocations"] == ["asia-east1"]


def test_module_import_is_cheap() -> None:
    code = (
        "import sys, runbook.sandbox.dataflow; "
        "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_subprocess_serves_until_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the line must be flushed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runbook.sandbox.dataflow",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
            "--transition-delay",
            str(DELAY),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no 'listening' line within 10 s (not flushed?)"
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        endpoint = match.group(1)
        job = launch(endpoint, "from-subprocess")
        wait_state(endpoint, job.id, State.JOB_STATE_RUNNING)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert [j["name"] for j in saved["jobs"]] == ["from-subprocess"]
