"""The Dataflow stand-in's HTTP surface: the v1b3 REST routes and the ``/_control`` drill routes.

Every answer is JSON. A request's body is read and parsed before anything else (bad JSON is a 400
whatever the path), then the route runs; :class:`DataflowApiError` becomes Google's error shape and
any other exception a 500 INTERNAL, never a hang. Paths that match no route, or a route with
another method, answer 404 ``Method not found`` as the real service does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from runbook.sandbox.dataflow import launch
from runbook.sandbox.dataflow.model import (
    DEFAULT_LOCATION,
    JOB_VIEWS,
    LIST_FILTERS,
    DataflowApiError,
    Job,
    parse_enum,
    truthy,
)
from runbook.sandbox.dataflow.store import JobStore
from runbook.sandbox.webserver import exact_response

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

SERVER_NAME = "dataflow-sandbox/1 Python/" + sys.version.split()[0]  # as http.server wrote it
CONTENT_TYPE = "application/json; charset=UTF-8"
METHODS = ["GET", "POST", "PUT", "DELETE"]


@dataclass
class ApiCall:
    """One v1b3 request, as the handlers read it."""

    project: str
    location: str | None
    job_id: str
    query: dict[str, str]
    body: dict[str, Any]
    view: str = "JOB_VIEW_SUMMARY"
    int_enums: bool = field(init=False)

    def __post_init__(self) -> None:
        self.int_enums = "enum-encoding=int" in self.query.get("$alt", "")

    @property
    def where(self) -> str:
        """The location, on routes that always have one (all but the aggregated list)."""
        assert self.location is not None
        return self.location

    def render(self, job: Job, view: str | None = None) -> dict[str, Any]:
        full = (view or self.view) in ("JOB_VIEW_ALL", "JOB_VIEW_DESCRIPTION")
        return job.render(full=full, int_enums=self.int_enums)

    def integer(self, key: str) -> int:
        try:
            return int(self.query.get(key) or 0)
        except ValueError as exc:
            raise DataflowApiError(
                "INVALID_ARGUMENT", f"Invalid value for {key}: {self.query[key]!r}"
            ) from exc


# -- v1b3 handlers ---------------------------------------------------------------------------


def list_jobs(store: JobStore, call: ApiCall) -> dict[str, Any]:
    jobs, token, failed = store.list_jobs(
        call.project,
        call.location,
        parse_enum(call.query.get("filter", 0), LIST_FILTERS, "filter"),
        call.integer("pageSize"),
        call.query.get("pageToken", ""),
    )
    out: dict[str, Any] = {}
    if jobs:
        out["jobs"] = [call.render(job, "JOB_VIEW_SUMMARY") for job in jobs]  # always summaries
    if token:
        out["nextPageToken"] = token
    if failed:
        out["failedLocation"] = [{"name": loc} for loc in failed]
    return out


def get_job(store: JobStore, call: ApiCall) -> dict[str, Any]:
    return call.render(store.get_job(call.project, call.where, call.job_id))


def update_job(store: JobStore, call: ApiCall) -> dict[str, Any]:
    job = store.update_job(call.project, call.where, call.job_id, call.body, call.query.get("updateMask", ""))
    return call.render(job)


def create_job(store: JobStore, call: ApiCall) -> dict[str, Any]:
    job = launch.create_job(store, call.project, call.where, call.body, call.query.get("replaceJobId", ""))
    return call.render(job)


def launch_flex_template(store: JobStore, call: ApiCall) -> dict[str, Any]:
    param = call.body.get("launchParameter") or {}
    spec_path = param.get("containerSpecGcsPath") or ""
    if not spec_path and param.get("containerSpec"):
        spec_path = str(param["containerSpec"].get("image") or "inline-container-spec")
    request = launch.TemplateLaunch(
        kind="flex",
        template_path=spec_path,
        name=str(param.get("jobName", "")),
        parameters=dict(param.get("parameters") or {}),
        launch_options=dict(param.get("launchOptions") or {}),
        launch_env=dict(param.get("environment") or {}),
        update=bool(param.get("update")),
        validate_only=bool(call.body.get("validateOnly")),
    )
    job = launch.launch_template(store, call.project, call.where, request)
    return {"job": call.render(job, "JOB_VIEW_ALL")} if job else {}


def launch_classic_template(store: JobStore, call: ApiCall) -> dict[str, Any]:
    # The template path rides in the query, the launch parameters are the body.
    query, body = call.query, call.body
    request = launch.TemplateLaunch(
        kind="classic",
        template_path=query.get("gcsPath") or query.get("dynamicTemplate.gcsPath") or "",
        name=str(body.get("jobName", "")),
        parameters=dict(body.get("parameters") or {}),
        launch_options={},
        launch_env=dict(body.get("environment") or {}),
        update=bool(body.get("update")),
        validate_only=truthy(query.get("validateOnly", "false")),
    )
    job = launch.launch_template(store, call.project, call.where, request)
    return {"job": call.render(job, "JOB_VIEW_ALL")} if job else {}


Handler = Callable[[JobStore, ApiCall], dict[str, Any]]


@dataclass(frozen=True)
class ApiRoute:
    """One v1b3 method: its handler, the IAM permission it needs, and how its location defaults."""

    handler: Handler
    permission: str
    aggregated: bool = False  # across locations: no location, no default

    @property
    def lists(self) -> bool:
        return self.handler is list_jobs


_P = "/v1b3/projects/{project}"
_L = "/locations/{location}"
_LIST = ApiRoute(list_jobs, "dataflow.jobs.list")
_CREATE = ApiRoute(create_job, "dataflow.jobs.create")
_GET = ApiRoute(get_job, "dataflow.jobs.get")
_UPDATE = ApiRoute(update_job, "dataflow.jobs.update")
_CLASSIC = ApiRoute(launch_classic_template, "dataflow.jobs.create")
# path -> {HTTP method: route}; the routes without /locations/{l} mean us-central1.
API_ROUTES: dict[str, dict[str, ApiRoute]] = {
    _P + "/jobs:aggregated": {"GET": ApiRoute(list_jobs, "dataflow.jobs.list", aggregated=True)},
    _P + _L + "/jobs": {"GET": _LIST, "POST": _CREATE},
    _P + "/jobs": {"GET": _LIST, "POST": _CREATE},
    _P + _L + "/jobs/{job_id}": {"GET": _GET, "PUT": _UPDATE},
    _P + "/jobs/{job_id}": {"GET": _GET, "PUT": _UPDATE},
    _P + _L + "/flexTemplates:launch": {"POST": ApiRoute(launch_flex_template, "dataflow.jobs.create")},
    _P + _L + "/templates:launch": {"POST": _CLASSIC},
    _P + "/templates:launch": {"POST": _CLASSIC},
}


def serve_api(
    store: JobStore, route: ApiRoute, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Check access, read the view, run the handler."""
    project = params["project"]
    location = params.get("location") or (None if route.aggregated else DEFAULT_LOCATION)
    store.check(project, location, route.permission)
    call = ApiCall(project, location, params.get("job_id", ""), query, body)
    if not route.lists:
        call.view = parse_enum(query.get("view", 0), JOB_VIEWS, "view")
    return route.handler(store, call)


# -- /_control -------------------------------------------------------------------------------


def _need(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise DataflowApiError("INVALID_ARGUMENT", f"'{key}' (a non-empty string) is required.")
    return value


def _seed_job(store: JobStore, body: dict[str, Any]) -> dict[str, Any]:
    job = launch.seed_job(
        store,
        _need(body, "projectId"),
        _need(body, "location"),
        _need(body, "name"),
        parameters=dict(body.get("parameters") or {}),
        job_type=body.get("type", "JOB_TYPE_STREAMING"),
        state=body.get("state", "JOB_STATE_RUNNING"),
        labels=dict(body.get("labels") or {}),
        environment=dict(body.get("environment") or {}),
        container_spec_gcs_path=str(body.get("containerSpecGcsPath") or ""),
    )
    return job.render(full=True, int_enums=False)


def _fail_job(store: JobStore, body: dict[str, Any]) -> dict[str, Any]:
    job = store.fail_job(_need(body, "projectId"), _need(body, "location"), _need(body, "jobId"))
    return job.render(full=True, int_enums=False)


def _location_down(store: JobStore, body: dict[str, Any]) -> dict[str, Any]:
    return {"downLocations": store.set_location_down(_need(body, "location"), truthy(body.get("down", True)))}


def _reset(store: JobStore, body: dict[str, Any]) -> dict[str, Any]:
    store.reset()
    return {}


CONTROL_ROUTES: dict[tuple[str, str], Callable[[JobStore, dict[str, Any]], dict[str, Any]]] = {
    ("GET", "/_control/health"): lambda store, body: {"ok": True},
    ("GET", "/_control/state"): lambda store, body: store.dump(),
    ("POST", "/_control/fail-job"): _fail_job,
    ("POST", "/_control/location-down"): _location_down,
    ("POST", "/_control/seed-job"): _seed_job,
    ("POST", "/_control/reset"): _reset,
}


def serve_control(store: JobStore, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Serve the ``/_control/...`` drill routes (a trailing slash is allowed)."""
    handler = CONTROL_ROUTES.get((method, path.rstrip("/")))
    if handler is None:
        raise DataflowApiError("NOT_FOUND", f"No control route {method} {path}")
    return handler(store, body)


# -- the application -------------------------------------------------------------------------


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise DataflowApiError("INVALID_ARGUMENT", f"Invalid JSON payload received: {exc}") from exc
    if not isinstance(body, dict):
        raise DataflowApiError("INVALID_ARGUMENT", "The JSON payload must be an object.")
    return body


@dataclass
class Incoming:
    """What every route reads from a request: method, raw path, path parameters, query, body."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]


def _log(verbose: bool, request: Request, message: str) -> None:
    """``http.server``'s request line on stderr, when ``--verbose``."""
    if verbose:
        client = request.client.host if request.client else "-"
        stamp = time.strftime("%d/%b/%Y %H:%M:%S")
        sys.stderr.write(f"{client} - - [{stamp}] {message}\n")


def build_app(store: JobStore, *, verbose: bool = False) -> Starlette:
    """The Starlette application serving ``store``."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    def endpoint(serve: Callable[[Incoming], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            raw = await request.body()
            path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
            query_string = request.scope.get("query_string", b"").decode("latin-1")
            query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
            try:
                incoming = Incoming(request.method, path, dict(request.path_params), query, _parse_body(raw))
                status, payload = 200, serve(incoming)
            except DataflowApiError as exc:
                status, payload = exc.http_code, exc.to_json()
            except Exception as exc:  # a bug here must reach the client as a 500, not a hang
                _log(verbose, request, f"internal error: {exc!r}")
                err = DataflowApiError("INTERNAL", f"Internal error: {exc!r}")
                status, payload = err.http_code, err.to_json()
            _log(verbose, request, f'"{request.method} {path}" {status} -')
            return exact_response(status, json.dumps(payload).encode(), CONTENT_TYPE, server=SERVER_NAME)

        return handle

    def api(methods: dict[str, ApiRoute]) -> Callable[[Incoming], dict[str, Any]]:
        def serve(req: Incoming) -> dict[str, Any]:
            route = methods.get(req.method)  # HEAD, which Starlette adds to GET routes, is not one
            if route is None or ":" in req.params.get("job_id", ""):  # job ids never hold a colon
                return not_found(req)
            return serve_api(store, route, req.params, req.query, req.body)

        return serve

    def control(req: Incoming) -> dict[str, Any]:
        return serve_control(store, req.method, req.path, req.body)

    def not_found(req: Incoming) -> dict[str, Any]:
        raise DataflowApiError("NOT_FOUND", f"Method not found: {req.method} {req.path}")

    routes = [
        Route(path, endpoint(api(by_method)), methods=list(by_method))
        for path, by_method in API_ROUTES.items()
    ]
    routes.append(Route("/_control/{rest:path}", endpoint(control), methods=METHODS))
    routes.append(Route("/{rest:path}", endpoint(not_found), methods=METHODS))
    return Starlette(routes=routes)
