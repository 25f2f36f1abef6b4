"""The Dataflow stand-in's server object and command line (``python -m runbook.sandbox.dataflow``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from runbook.sandbox.dataflow import launch
from runbook.sandbox.dataflow.model import STATE_FILE
from runbook.sandbox.dataflow.store import JobStore
from runbook.sandbox.webserver import BackgroundServer, StandIn, serve_until_signalled


class DataflowServer(StandIn):
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
        self._store = JobStore(path, transition_delay, batch_duration, projects, clock)
        self._verbose = verbose
        self._http: BackgroundServer | None = None

    @property
    def endpoint(self) -> str:
        """The base URL to give ``ClientOptions(api_endpoint=...)``; valid after ``start``."""
        return self.base_url

    def start(self) -> DataflowServer:
        """Bind and serve on a background thread; returns self.

        Raises:
            OSError: The port cannot be bound.
        """
        if self._http is not None:
            raise RuntimeError("DataflowServer already started")
        from runbook.sandbox.dataflow.routes import build_app

        app = build_app(self._store, verbose=self._verbose)
        self.port = self._serve(app, self.port, name="dataflow-sandbox")
        return self

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
        return launch.seed_job(
            self._store,
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

    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.dataflow", description="A local Dataflow (v1b3 REST) server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--transition-delay", type=float, default=0.5)
    parser.add_argument("--batch-duration", type=float, default=None)
    parser.add_argument("--project", action="append", dest="projects", help="allowed project (repeatable)")
    parser.add_argument("--verbose", action="store_true")
    server = DataflowServer(**vars(parser.parse_args(argv)))  # each option is named as the argument it sets
    return serve_until_signalled(lambda: server.start().endpoint, server.stop)


if __name__ == "__main__":
    sys.exit(main())
