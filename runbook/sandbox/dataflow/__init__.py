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

Job model: see :mod:`runbook.sandbox.dataflow.launch` (how a launch becomes a job) and
:mod:`runbook.sandbox.dataflow.store` (transitions, cancel, drain, updates).

Errors use Google's JSON shape. Note that the REST transport maps them by HTTP status alone:
400 (INVALID_ARGUMENT and FAILED_PRECONDITION alike) raises ``BadRequest``, 403 ``Forbidden``,
409 ``Conflict``; read ``exc.response.json()["error"]["status"]`` for the gRPC-style status.

Control routes (JSON in and out, enums as names): ``GET /_control/health``, ``GET /_control/state``,
``POST /_control/fail-job`` ``{"projectId", "location", "jobId"}``,
``POST /_control/location-down`` ``{"location", "down": true|false}``,
``POST /_control/seed-job`` ``{"projectId", "location", "name", "parameters"?, "type"?, "state"?,
"labels"?, "environment"?, "containerSpecGcsPath"?}``, ``POST /_control/reset``.

Run as a process: ``python -m runbook.sandbox.dataflow --port 0 --state-dir DIR`` prints
``listening http://127.0.0.1:PORT`` and serves until SIGTERM.

The package: ``model`` (enums, the API error, a job), ``store`` (state and the requests on existing
jobs), ``launch`` (new jobs), ``routes`` (the Starlette app), ``server`` (:class:`DataflowServer`
and ``main``). Starlette and uvicorn are imported when a server starts, not with this package.
"""

from runbook.sandbox.dataflow.model import STATE_FILE, DataflowApiError
from runbook.sandbox.dataflow.server import DataflowServer, main

__all__ = ["STATE_FILE", "DataflowApiError", "DataflowServer", "main"]
