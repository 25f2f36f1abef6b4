"""``postgres.stop_cluster``: stop a local server (e.g. the temporary PITR one) and prove none of it remains."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.poll import WaitTimeout, wait_until
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.procs import processes_with_cwd

from .cluster import pg_ctl_stop, postmaster_alive
from .common import settings_or_defaults

_GONE_WITHIN = 5.0  # seconds for the last backends to exit after pg_ctl stop returned


class StopClusterParams(ActionParams):
    data_dir: str
    """Data directory of the server to stop (e.g. the pitr_restore output)."""
    mode: str = Field("fast", pattern="^(smart|fast|immediate)$", description="pg_ctl stop mode.")
    timeout: float = Field(60, gt=0, description="Seconds to wait for it to stop.")
    allow_main: bool = Field(False, description="Allow stopping the store's main data_dir.")


class StopClusterOutputs(ActionOutputs):
    stopped: bool
    """true when a running server was stopped."""
    data_dir: str
    """The data directory."""


def _describe(params: StopClusterParams) -> str:
    return shlex.join(["pg_ctl", "-D", os.path.abspath(params.data_dir), "-m", params.mode, "-w", "-t",
                       str(int(params.timeout)), "stop"])


def _wait_gone(data: Path) -> None:
    """Until no ``postgres`` process works in ``data`` any more (backends can outlive pg_ctl stop briefly)."""
    try:
        wait_until(lambda: processes_with_cwd(data, exe_name="postgres"), lambda left: not left,
                   timeout=_GONE_WITHIN, every=0.05)
    except WaitTimeout as exc:
        raise ActionError(f"PostgreSQL processes {exc.last} of {data} are still running after pg_ctl stop.") from None


@action("postgres.stop_cluster", Effect.MUTATING,
        "Stop a local PostgreSQL server (e.g. the temporary PITR server) and check none of it remains.",
        target=lambda p: os.path.abspath(p.data_dir), describe=_describe)
def stop_cluster(ctx: StepContext, params: StopClusterParams) -> StopClusterOutputs:
    st = settings_or_defaults(ctx)
    data = Path(params.data_dir).absolute()
    if not (data / "PG_VERSION").is_file():
        raise ActionError(f"{data} is not a PostgreSQL data directory (no PG_VERSION).")
    if st.data_dir and os.path.realpath(st.data_dir) == os.path.realpath(data) and not params.allow_main:
        raise ActionError(f"{data} is the environment's main PostgreSQL data directory: "
                          "set allow_main: true to stop it.")
    if not postmaster_alive(data):
        ctx.log(f"no server is running in {data}")
        stopped = False
    else:
        pg_ctl_stop(ctx, st, data, params.mode, params.timeout)
        stopped = True
    _wait_gone(data)
    if stopped:
        ctx.log(f"stopped the server in {data}; no process of it remains")
    return StopClusterOutputs(stopped=stopped, data_dir=str(data))
