"""Dataflow actions: find failed jobs, save a job's state, cancel, drain, relaunch, wait.

The seed's pipeline procedures, run for real through google-cloud-dataflow-client:

* ``dataflow.list_jobs`` — ``gcloud dataflow jobs list --filter "state=Failed"`` (:mod:`.jobs`);
* ``dataflow.describe_job`` — the "pipeline state backup" to a state file (:mod:`.statefile`);
* ``dataflow.launch`` — restart a failed job or launch a replacement in another region from a
  flex (or classic) template, with the parameters from a saved state file (:mod:`.launch`);
* ``dataflow.cancel`` / ``dataflow.drain`` / ``dataflow.wait_for_state`` (:mod:`.control`).
"""

from __future__ import annotations

from runbook.actions.dataflow.control import cancel, drain, wait_for_state
from runbook.actions.dataflow.jobs import list_jobs
from runbook.actions.dataflow.launch import launch
from runbook.actions.dataflow.statefile import describe_job, relaunch_spec

SPECS = [list_jobs, describe_job, cancel, drain, launch, wait_for_state]

__all__ = ["SPECS", "relaunch_spec"]
