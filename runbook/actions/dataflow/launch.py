"""``dataflow.launch``: restart a failed job, or launch a replacement in another region, from a
flex (or classic) template with the parameters of a saved state file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from runbook.actions.dataflow.jobs import REGION_HELP, STORE, Session, api_call, label, state_of
from runbook.actions.dataflow.statefile import read_spec
from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError

LAUNCH_TIMEOUT = 60.0  # seconds a launch call may take at least, whatever the step's rpc budget
_LAUNCH_CALLS = {"flex": "FlexTemplates.LaunchFlexTemplate", "classic": "Templates.LaunchTemplate"}


class LaunchParams(ActionParams):
    state_file: str | None = None
    """A dataflow.describe_job (or gcloud describe) JSON file."""
    name: str | None = None
    """Job name (default: the state file's, else gcp dataflow_job_name)."""
    template: str | None = None
    """gs:// template path (default: the state file's, else gcp template)."""
    template_kind: Literal["flex", "classic"] | None = None
    """Default: the state file's, else flex."""
    parameters: dict[str, str] = Field(default_factory=dict)
    """Merged over the state file's parameters."""
    environment: dict[str, Any] = Field(default_factory=dict)
    """Runtime environment fields (snake_case, e.g. max_workers, subnetwork), merged over the file's."""
    region: str | None = Field(None, description=REGION_HELP)
    update: bool = Field(False, description="Replace the running streaming job of the same name in place.")


class LaunchOutputs(ActionOutputs):
    job_id: str
    """The new job's id."""
    name: str
    """Job name."""
    region: str
    """Region it runs in."""
    state: str
    """State right after the launch (QUEUED/PENDING)."""


@dataclass(frozen=True)
class _Plan:
    """What is launched, resolved from the step, the state file and the gcp store (in that order)."""

    name: str
    template: str
    kind: str
    parameters: dict[str, str]
    environment: Any
    """The runtime environment, of the kind the template wants."""
    saved_region: str | None


def _plan(s: Session, params: LaunchParams) -> _Plan:
    spec = read_spec(params.state_file, s.region) if params.state_file else {}
    name = params.name or spec.get("name") or s.gs.get("dataflow_job_name", s.region)
    template = params.template or spec.get("templatePath") or s.gs.get("template", s.region)
    if not name:
        raise ActionError(
            "No job name: set name in the step, a state_file, or dataflow_job_name in the gcp store."
        )
    if not template:
        raise ActionError(
            "No template path: set template in the step, a state_file, or template in the gcp store."
        )
    kind = params.template_kind or spec.get("templateKind") or "flex"
    return _Plan(
        name=str(name),
        template=str(template),
        kind=kind,
        parameters={**(spec.get("parameters") or {}), **params.parameters},
        environment=_environment(kind, {**(spec.get("environment") or {}), **params.environment}),
        saved_region=spec.get("region"),
    )


def _environment(kind: str, runtime: dict[str, Any]) -> Any:
    from google.cloud import dataflow_v1beta3 as df

    env_type = df.FlexTemplateRuntimeEnvironment if kind == "flex" else df.RuntimeEnvironment
    try:
        return env_type(**runtime)
    except (ValueError, TypeError, KeyError) as exc:
        raise ActionError(f"Invalid runtime environment for a {kind} template launch: {exc}.") from None


def _send(s: Session, plan: _Plan, update: bool) -> Any:
    """The launch call itself (never retried: a launch that reached the service must not run twice)."""
    from google.cloud import dataflow_v1beta3 as df

    timeout = max(s.budget, LAUNCH_TIMEOUT)
    if plan.kind == "flex":
        flex = df.LaunchFlexTemplateParameter(
            job_name=plan.name,
            container_spec_gcs_path=plan.template,
            parameters=plan.parameters,
            environment=plan.environment,
            update=update,
        )
        request = df.LaunchFlexTemplateRequest(project_id=s.project, location=s.region, launch_parameter=flex)
        return s.c.flex.launch_flex_template(request=request, timeout=timeout).job
    classic = df.LaunchTemplateParameters(
        job_name=plan.name, parameters=plan.parameters, environment=plan.environment, update=update
    )
    request = df.LaunchTemplateRequest(
        project_id=s.project, location=s.region, gcs_path=plan.template, launch_parameters=classic
    )
    return s.c.templates.launch_template(request=request, timeout=timeout).job


def _target(p: LaunchParams) -> str:
    return p.name or (f"job from {p.state_file}" if p.state_file else "<gcp.dataflow_job_name>")


def _describe(p: LaunchParams) -> str:
    unset = "<from state file>"
    args = [
        f"job_name={p.name or unset}",
        f"template={p.template or unset}",
        f"parameters+={p.parameters or {}}",
    ]
    if p.update:
        args.append("update=true")
    if p.state_file:
        args.append(f"from {p.state_file}")
    return api_call(_LAUNCH_CALLS[p.template_kind or "flex"], p.region, *args)


@action("dataflow.launch", Effect.MUTATING,
        "Launch a Dataflow job from a flex or classic template, e.g. a replacement in another region.",
        target=_target, describe=_describe)
def launch(ctx: StepContext, params: LaunchParams) -> LaunchOutputs:
    s = Session(ctx, params.region)
    plan = _plan(s, params)
    moved = plan.saved_region and plan.saved_region != s.region
    ctx.log(
        f"launching {plan.name} from {plan.kind} template {plan.template} in {s.region}"
        + (f" (the saved job ran in {plan.saved_region})" if moved else "")
    )
    ctx.log(f"parameters: {json.dumps(plan.parameters, sort_keys=True)}")
    with s.guard(f"launch job {plan.name} in {s.region}"):
        job = _send(s, plan, params.update)
    if not job.id:
        raise ActionError(f"{STORE} accepted the launch of {plan.name} in {s.region} but returned no job id.")
    ctx.log(f"launched {label(job)} in {s.region}: {state_of(job)}")
    return LaunchOutputs(job_id=job.id, name=job.name or plan.name, region=s.region, state=state_of(job))
