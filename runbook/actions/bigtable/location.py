"""Where a Bigtable step works (project, region, instance, table) and how its errors read.

Instance, cluster and table default to the gcp store's ``bigtable_instance``,
``bigtable_cluster`` and ``bigtable_table`` (each may be per region: ``bigtable_instance_<region>``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

from pydantic import Field

from runbook.actions.spec import ActionParams, StepContext
from runbook.core.errors import ActionError
from runbook.stores import bigtable as bts
from runbook.stores import gcp

STORE = bts.STORE
ID_PATTERN = r"^[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}$"


class LocationParams(ActionParams):
    """Where: instance and region (defaults from the gcp store)."""

    instance: str | None = Field(None, description="Bigtable instance (default: gcp bigtable_instance).")
    region: str | None = Field(
        None, description='"primary" (default), "secondary" or a region name; selects per-region settings.'
    )


class Where:
    """Resolved location of one step: clients, names, and the unreachable-store budget."""

    def __init__(self, ctx: StepContext, instance: str | None, region: str | None) -> None:
        self.h, self.gs = bts.handle(ctx.environment, region, pool=ctx.services.clients)
        self.region = self.h.region
        inst = instance or self.gs.get("bigtable_instance", self.region)
        if not inst:
            raise ActionError(
                "No Bigtable instance given: set instance in the step or bigtable_instance in the gcp store."
            )
        self.instance = str(inst)
        self.budget = gcp.rpc_timeout(self.gs, ctx.timeout)
        self.retry = bts.admin_retry(self.budget)

    @classmethod
    def for_table(cls, ctx: StepContext, params: LocationParams, table: str | None) -> tuple[Where, str]:
        """The step's location and the table it names (else the gcp store's ``bigtable_table``)."""
        w = cls(ctx, params.instance, params.region)
        return w, w.table_id(table)

    @property
    def rpc(self) -> dict[str, Any]:
        """An admin call's ``retry`` and ``timeout``: retried while unreachable, within the step's budget."""
        return {"retry": self.retry, "timeout": self.budget}

    def table_id(self, table: str | None) -> str:
        got = table or self.gs.get("bigtable_table", self.region)
        if not got:
            raise ActionError(
                "No Bigtable table given: set table in the step or bigtable_table in the gcp store."
            )
        return str(got)

    def cluster(self, cluster: str | None) -> str | None:
        got = cluster or self.gs.get("bigtable_cluster", self.region)
        return str(got) if got else None

    def table_path(self, table: str) -> str:
        return self.h.table_path(self.instance, table)

    def where(self) -> str:
        return f"instance {self.instance} ({self.region})"

    def guard(self, what: str) -> Guard:
        """``with w.guard("what"):`` turns the store's errors into one sentence."""
        return Guard(self.gs, what)


class Guard:
    """Turns client errors inside the block into one-sentence ActionErrors."""

    def __init__(self, gs: gcp.GcpSettings | None, what: str) -> None:
        self.gs, self.what = gs, what

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or isinstance(exc, ActionError) or not _is_store_error(exc):
            return False  # anything else is a bug here: keep its traceback for --debug
        if isinstance(exc, InterruptedError):
            raise ActionError(f"Stopped by the operator while trying to {self.what}.") from exc
        raise gcp.translate(bts.unwrap(exc), STORE, self.what, self.gs) from exc


def _is_store_error(exc: BaseException) -> bool:
    """Errors that come from the store or the connection to it (never from bugs in this package)."""
    import grpc
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return isinstance(
        exc, GoogleAPIError | GoogleAuthError | grpc.RpcError | ExceptionGroup | InterruptedError
    )


def show(value: str | None, setting: str) -> str:
    """A param for describe(): its value, or where the default will come from."""
    return value if value else f"<gcp.{setting}>"


def key_text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


def backup_id(name: str) -> str:
    """``projects/…/backups/<id>`` → ``<id>``."""
    return name.rsplit("/", 1)[-1]
