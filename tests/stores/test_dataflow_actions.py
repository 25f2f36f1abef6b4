"""dataflow.* actions against the real local Dataflow server, through the real REST clients (no mocks)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions.registry import registry
from runbook.actions.spec import Effect, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.sandbox.dataflow import DataflowServer
from runbook.stores import dataflow as dfs
from runbook.stores.pool import ClientPool

POOL = ClientPool()  # clients these tests make directly (actions get their own through StepContext)

pytestmark = pytest.mark.timeout(60)

PROJECT = "runbook-sandbox"
US = "us-central1"
EU = "europe-west1"
TEMPLATE = "gs://runbook-sandbox-templates/ecommerce-streaming.json"
PARAMS = {
    "inputSubscription": "projects/runbook-sandbox/subscriptions/ecommerce-events-dataflow",
    "outputDataset": "ecommerce",
    "streaming": "true",
}
FAST = {"poll_interval": 0.02, "timeout": "10s"}


@pytest.fixture
def server() -> Iterator[DataflowServer]:
    with DataflowServer(transition_delay=0.05) as srv:
        yield srv


def make_env(server: DataflowServer, **extra: Any) -> Environment:
    gcp = {
        "project": PROJECT,
        "region": US,
        "secondary_region": EU,
        "dataflow_endpoint": server.endpoint,
        "dataflow_job_name": "ecommerce-streaming",
        "template": TEMPLATE,
        **extra,
    }
    return Environment(name="sandbox", sandbox=True, stores={"gcp": gcp})


class Run:
    def __init__(self, env: Environment, workdir: Path) -> None:
        self.lines: list[str] = []
        self.ctx = StepContext(
            incident_id="t", step_id="s", mode="live", environment=env, workdir=workdir, log=self.lines.append
        )

    def __call__(self, action_name: str, /, **params: Any) -> dict[str, Any]:
        action = registry()[action_name]
        return action.run(self.ctx, action.Params(**params))


def seed_streaming(server: DataflowServer, name: str = "ecommerce-streaming", location: str = US) -> str:
    return server.seed_job(
        PROJECT,
        location,
        name,
        parameters=PARAMS,
        labels={"team": "data-eng", "goog-dataflow-provided-template-type": "flex"},
        environment={"tempLocation": "gs://tmp/dataflow", "maxWorkers": 5, "machineType": "n1-standard-2"},
        container_spec_gcs_path=TEMPLATE,
    )["id"]


def test_registered_effects_and_params() -> None:
    effects = {n: registry()[n].effect for n in registry() if n.startswith("dataflow.")}
    assert effects == {
        "dataflow.list_jobs": Effect.READ_ONLY,
        "dataflow.describe_job": Effect.READ_ONLY,
        "dataflow.cancel": Effect.DESTRUCTIVE,
        "dataflow.drain": Effect.MUTATING,
        "dataflow.launch": Effect.MUTATING,
        "dataflow.wait_for_state": Effect.READ_ONLY,
    }
    cancel = registry()["dataflow.cancel"]
    p = cancel.Params(job="ecommerce-streaming")
    assert cancel.target(p) == "ecommerce-streaming"
    assert "requested_state=JOB_STATE_CANCELLED" in cancel.describe(p)
    wait = registry()["dataflow.wait_for_state"]
    assert wait.Params(states=["job_state_running", "drained"]).states == ["RUNNING", "DRAINED"]
    with pytest.raises(ValidationError, match="unknown job state SPRINTING"):
        wait.Params(states=["sprinting"])
    with pytest.raises(ValidationError):
        registry()["dataflow.list_jobs"].Params(state="broken")


def test_clients_are_cached(server: DataflowServer) -> None:
    env = make_env(server)
    a, _ = dfs.clients(env, pool=POOL)
    b, _ = dfs.clients(env, "primary", pool=POOL)
    c, _ = dfs.clients(env, "secondary", pool=POOL)
    assert a is b and a is not c and c.region == EU
    assert a.flex is a.flex


def test_failover_from_state_file(server: DataflowServer, tmp_path: Path) -> None:
    env = make_env(server)
    run = Run(env, tmp_path)
    job_id = seed_streaming(server)
    server.seed_job(PROJECT, US, "nightly-batch", job_type="JOB_TYPE_BATCH")

    # Pipeline state backup, by job name (the gcp store's default job).
    saved = run("dataflow.describe_job", directory=str(tmp_path / "pipeline"))
    assert (saved["job_id"], saved["name"], saved["state"], saved["type"]) == (
        job_id,
        "ecommerce-streaming",
        "RUNNING",
        "STREAMING",
    )
    assert saved["parameters"] == PARAMS and saved["template"] == TEMPLATE
    state = json.loads(Path(saved["path"]).read_text())
    assert Path(saved["path"]).name.startswith("pipeline_state_ecommerce-streaming_")
    assert state["id"] == job_id and state["currentState"] == "JOB_STATE_RUNNING"  # gcloud's JSON shape
    assert (
        state["environment"]["sdkPipelineOptions"]["options"]["inputSubscription"]
        == PARAMS["inputSubscription"]
    )
    assert state["runbook"]["region"] == US and state["runbook"]["labels"] == {"team": "data-eng"}
    assert state["runbook"]["environment"]["max_workers"] == 5

    # The job fails; list_jobs finds it.
    server.fail_job(PROJECT, US, job_id)
    listed = run("dataflow.list_jobs", state="failed")
    assert listed["first_failed_id"] == job_id and listed["count"] == 1
    assert listed["failed"] == [
        {"id": job_id, "name": "ecommerce-streaming", "state": "FAILED", "type": "STREAMING", "location": US}
    ]
    everything = run("dataflow.list_jobs", state="all")
    assert {j["name"] for j in everything["jobs"]} == {"ecommerce-streaming", "nightly-batch"}
    assert run("dataflow.list_jobs", state="active")["failed"] == []

    with pytest.raises(ActionError) as err:
        run("dataflow.wait_for_state", job=job_id, **FAST)
    assert str(err.value) == f"Job ecommerce-streaming ({job_id}) is FAILED, not RUNNING."

    # The replacement, from the state file, in the secondary region.
    launched = run("dataflow.launch", state_file=saved["path"], region="secondary")
    assert launched["region"] == EU and launched["name"] == "ecommerce-streaming"
    assert launched["state"] == "QUEUED"
    assert any("the saved job ran in us-central1" in line for line in run.lines)
    ready = run("dataflow.wait_for_state", job=launched["job_id"], region="secondary", **FAST)
    assert ready == {"state": "RUNNING", "job_id": launched["job_id"]}
    again = run(
        "dataflow.describe_job", job="ecommerce-streaming", region="secondary", path=str(tmp_path / "eu.json")
    )
    assert again["parameters"] == PARAMS and again["type"] == "STREAMING"
    eu_job = json.loads((tmp_path / "eu.json").read_text())
    assert eu_job["labels"] == {"team": "data-eng"}
    assert eu_job["environment"]["tempStoragePrefix"] == "gs://tmp/dataflow"

    # Restart in the primary region too, with a parameter changed; then cancel it by name.
    restarted = run("dataflow.launch", state_file=saved["path"], parameters={"outputDataset": "ecommerce_dr"})
    assert restarted["region"] == US and restarted["job_id"] != job_id
    assert run("dataflow.wait_for_state", job="ecommerce-streaming", **FAST)["job_id"] == restarted["job_id"]
    # An in-place update (update: true) replaces the running job of that name.
    updated = run("dataflow.launch", state_file=saved["path"], update=True)
    assert run("dataflow.wait_for_state", job=updated["job_id"], **FAST)["state"] == "RUNNING"
    replaced = run("dataflow.wait_for_state", job=restarted["job_id"], states=["updated"], **FAST)
    assert replaced["state"] == "UPDATED"
    cancelled = run("dataflow.cancel", job="ecommerce-streaming", poll_interval=0.02)
    assert cancelled == {"job_id": updated["job_id"], "state": "CANCELLED"}
    assert run("dataflow.cancel", job=updated["job_id"])["state"] == "CANCELLED"  # already stopped: no error
    assert any("is already CANCELLED: nothing to cancel" in line for line in run.lines)


def test_drain_streaming_and_refuse_batch(server: DataflowServer, tmp_path: Path) -> None:
    run = Run(make_env(server), tmp_path)
    stream = seed_streaming(server, "stream")
    batch = server.seed_job(PROJECT, US, "nightly-batch", job_type="JOB_TYPE_BATCH")["id"]
    with pytest.raises(ActionError) as err:
        run("dataflow.drain", job="nightly-batch")
    assert str(err.value) == (
        f"Job nightly-batch ({batch}) is a batch job: only streaming jobs can be drained; "
        "use dataflow.cancel to stop it."
    )
    assert run("dataflow.drain", job=stream, poll_interval=0.02) == {"job_id": stream, "state": "DRAINED"}
    with pytest.raises(
        ActionError, match=r"^No Dataflow job named ghost in us-central1 \(project runbook-sandbox\)\.$"
    ):
        run("dataflow.cancel", job="ghost")
    with pytest.raises(
        ActionError, match=r"^Dataflow: not found while trying to describe job 2020-01-01_00_00_00-1"
    ):
        run("dataflow.describe_job", job="2020-01-01_00_00_00-1")


def test_location_down_and_launch_errors(server: DataflowServer, tmp_path: Path) -> None:
    run = Run(make_env(server, rpc_timeout=1), tmp_path)
    seed_streaming(server)
    server.set_location_down(US)
    with pytest.raises(StoreUnavailable) as err:
        run("dataflow.list_jobs", state="failed")
    message = str(err.value)
    assert message.startswith("Dataflow is not reachable while trying to list jobs in us-central1: ")
    assert "The service is currently unavailable in location us-central1" in message and "\n" not in message
    # The secondary region still answers: a replacement can start there.
    out = run("dataflow.launch", name="ecommerce-streaming", region="secondary", parameters=PARAMS)
    assert out["region"] == EU
    server.set_location_down(US, down=False)

    classic = run("dataflow.launch", name="classic-job", template_kind="classic", parameters={"day": "1"})
    assert classic["state"] == "PENDING" and classic["region"] == US

    # A second job with the same name in the same region is refused, in one sentence.
    run("dataflow.launch", name="dup-job", parameters=PARAMS)
    with pytest.raises(
        ActionError, match=r"^Dataflow: already exists while trying to launch job dup-job in us-central1"
    ):
        run("dataflow.launch", name="dup-job", parameters=PARAMS)
    with pytest.raises(
        ActionError, match=r"^Dataflow refused to launch job Bad_Name in us-central1: Invalid job name"
    ):
        run("dataflow.launch", name="Bad_Name")
    with pytest.raises(ActionError, match="Invalid runtime environment for a flex template launch"):
        run("dataflow.launch", name="x", environment={"no_such_field": 1})
    with pytest.raises(ActionError, match=r"^State file not found: "):
        run("dataflow.launch", state_file=str(tmp_path / "missing.json"))

    # The server is gone altogether: one sentence, not a traceback.
    server.stop()
    with pytest.raises(
        StoreUnavailable,
        match=r"^Dataflow is not reachable while trying to list jobs in us-central1: is the sandbox up",
    ):
        run("dataflow.list_jobs")


def test_wait_gives_up_or_stops_in_one_sentence(server: DataflowServer, tmp_path: Path) -> None:
    run = Run(make_env(server), tmp_path)
    job_id = seed_streaming(server)
    label = f"ecommerce-streaming ({job_id})"
    with pytest.raises(ActionError) as err:
        run("dataflow.wait_for_state", job=job_id, states=["done"], timeout="1s", poll_interval=0.05)
    assert re.fullmatch(rf"Job {re.escape(label)} is still RUNNING after 1\.\ds, not DONE\.", str(err.value))
    assert run.lines.count(f"{label}: RUNNING") == 1  # logged when the state changes, not at every poll

    # The operator stops the step while it waits: it ends within one poll interval.
    stopper = threading.Timer(0.3, run.ctx.cancelled.set)
    stopper.start()
    try:
        with pytest.raises(ActionError) as err:
            run("dataflow.wait_for_state", job=job_id, states=["done"], timeout="30s", poll_interval=0.05)
    finally:
        stopper.cancel()
    assert str(err.value) == f"Stopped by the operator while waiting for job {label} (RUNNING)."
