"""Admin calls several actions share: backups of a table, a table's existence, long operations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from runbook.actions.bigtable.location import STORE, Where
from runbook.actions.spec import StepContext
from runbook.actions.support.poll import WaitCancelled, WaitTimeout, wait_until
from runbook.core.durations import format_duration
from runbook.core.errors import ActionError

PROGRESS_EVERY = 5.0  # seconds between "waiting for the operation" lines


class Backup(NamedTuple):
    """One backup, as listing needs it."""

    name: str
    start: datetime
    expire: datetime
    size: int


def _epoch(ts: Any) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)


def find_backups(w: Where, table: str, cluster: str | None) -> list[Backup]:
    """Backups of ``table`` (every cluster unless one is given), newest first."""
    parent = w.h.cluster_path(w.instance, cluster or "-")
    source = w.table_path(table)
    pager = w.h.admin.list_backups(request={"parent": parent, "filter": f'source_table:"{source}"'}, **w.rpc)
    found = []
    for page in pager.pages:
        # The raw protobuf messages: proto-plus wrappers cost more than the RPC for short lists.
        for b in type(page).pb(page).backups:
            # The filter is a "contains" match (product_stats also matches product_stats_v2).
            if b.source_table == source:
                found.append(Backup(b.name, _epoch(b.start_time), _epoch(b.expire_time), b.size_bytes))
    found.sort(key=lambda b: (b.start, b.name), reverse=True)
    return found


def list_backups_of(w: Where, table: str, cluster: str | None) -> list[Backup]:
    """:func:`find_backups` as a step of its own: the store's errors in one sentence."""
    with w.guard(f"list the backups of table {table}"):
        return find_backups(w, table, cluster)


def table_exists(w: Where, table: str) -> bool:
    from google.api_core import exceptions
    from google.cloud.bigtable_admin_v2 import types

    request = {"name": w.table_path(table), "view": types.Table.View.NAME_ONLY}
    try:
        w.h.admin.get_table(request=request, **w.rpc)
    except exceptions.NotFound:
        return False
    return True


def make_room(ctx: StepContext, w: Where, table: str, replace: bool, verb: str) -> None:
    """Before writing a new ``table``: refuse an existing one, or delete it with ``replace: true``."""
    if not table_exists(w, table):
        return
    if not replace:
        raise ActionError(
            f"Table {table} already exists in {w.where()}: {verb} into a new table name, "
            f"or set replace: true to delete it first."
        )
    ctx.log(f"deleting existing table {table} in {w.where()} (replace: true)")
    w.h.admin.delete_table(name=w.table_path(table), **w.rpc)


def wait_operation(ctx: StepContext, w: Where, op: Any, what: str, timeout: float) -> Any:
    """Poll a long-running operation until done, the timeout, or the operator stops the step.

    Either way the operation itself goes on in Bigtable: the messages say so.
    """
    said = [0.0]

    def progress(done: bool, waited: float) -> None:
        if not done and waited - said[0] >= PROGRESS_EVERY:
            ctx.log(f"waiting for the operation to {what} ({format_duration(waited)})")
            said[0] = waited

    try:
        wait_until(lambda: op.done(retry=w.retry), bool, timeout=timeout, every=0.1, max_every=2.0,
                   cancelled=ctx.cancelled, on_poll=progress)
    except WaitTimeout as exc:
        raise ActionError(
            f"{STORE} is still working on the operation to {what} after {format_duration(exc.waited)}: "
            f"it continues in the background; check it with `gcloud bigtable operations list`."
        ) from None
    except WaitCancelled:
        raise ActionError(
            f"Stopped waiting for the operation to {what}: it continues in the background."
        ) from None
    return op.result(retry=w.retry)
