"""Errors people will meet with Google Cloud, each one sentence naming the store and what to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions.registry import registry
from runbook.actions.spec import StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.sandbox.dataflow import DataflowServer
from runbook.stores.gcp import GcpSettings, translate


def ctx(env: Environment, tmp_path: Path, lines: list[str]) -> StepContext:
    return StepContext(incident_id="t", step_id="s", mode="live", environment=env, workdir=tmp_path, log=lines.append)


def test_permission_denied_for_a_wrong_project_through_the_real_client(tmp_path: Path) -> None:
    with DataflowServer(projects=["shop-prod"]) as server:
        env = Environment(
            name="sandbox",
            sandbox=True,
            stores={"gcp": {"project": "shop-prdo", "region": "us-central1", "dataflow_endpoint": server.endpoint}},
        )
        action = registry()["dataflow.list_jobs"]
        with pytest.raises(ActionError) as err:
            action.run(ctx(env, tmp_path, []), action.Params())
        text = str(err.value)
        assert "Dataflow" in text and ("permission" in text.lower() or "IAM" in text) and "\n" not in text
        # The cause fixed (right project), the same step works.
        env.stores["gcp"]["project"] = "shop-prod"
        out = action.run(ctx(env, tmp_path, []), action.Params())
        assert out["count"] == 0


def test_missing_credentials_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default credentials file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on a Google VM: do not wait for the metadata server
    env = Environment(name="prod", stores={"gcp": {"project": "shop-prod", "region": "us-central1"}})
    action = registry()["bigquery.row_counts"]
    with pytest.raises(ActionError) as err:
        action.run(ctx(env, tmp_path, []), action.Params(dataset="ecommerce"))
    assert "credentials" in str(err.value) and "gcloud auth application-default login" in str(err.value)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ServiceUnavailable", "not reachable"),
        ("PermissionDenied", "IAM roles"),
        ("Unauthenticated", "gcloud auth application-default login"),
        ("NotFound", "check the names and the project"),
        ("TooManyRequests", "quota exceeded"),
        ("ResourceExhausted", "quota exceeded"),
        ("Forbidden", "IAM roles"),
    ],
)
def test_translation_of_google_api_errors(name: str, fragment: str) -> None:
    from google.api_core import exceptions

    exc = getattr(exceptions, name)("the service said no.")
    gs = GcpSettings(project="shop-prod", region="us-central1", secondary_region=None, raw={}, sandbox=False)
    out = translate(exc, "BigQuery", "count rows", gs)
    assert fragment in str(out) and "BigQuery" in str(out) and "\n" not in str(out)
    assert not str(out).endswith("..")
    if name == "ServiceUnavailable":
        assert isinstance(out, StoreUnavailable)
