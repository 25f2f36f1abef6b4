"""``pubsub.prune_snapshots``: delete old snapshots (by id prefix or topic), keeping the newest.

A snapshot's age is read as :func:`~runbook.actions.pubsub.snapshots.snapshot_created` says.
"""

from __future__ import annotations

from pydantic import Field

from runbook.actions.params import Duration, Retention
from runbook.actions.pubsub.session import CALL_TIMEOUT, NAME_RE, Session, iso, short
from runbook.actions.pubsub.snapshots import PREFIX_RE, matching, target_of
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class PruneSnapshotsParams(Retention):
    older_than: Duration = Field(
        "3d", description="Delete snapshots taken longer ago than this (e.g. 3d, 12h)."
    )
    prefix: str | None = Field(None, pattern=PREFIX_RE, description="Only snapshot ids starting with this.")
    topic: str | None = Field(None, pattern=NAME_RE, description="Only snapshots of this topic.")


class PruneSnapshotsOutputs(ActionOutputs):
    deleted: list[str] = Field(
        description="Snapshot ids deleted (with dry_run: ids that would be), oldest first."
    )
    kept: list[str]
    """Snapshot ids kept, oldest first."""
    dry_run: bool
    """true when nothing was deleted on purpose."""


def _describe(p: PruneSnapshotsParams) -> str:
    where = f"{p.prefix}*" if p.prefix else "every snapshot"
    topic = f" of topic {p.topic}" if p.topic else ""
    return f"pubsub.delete_snapshot({where}{topic} {p.describe()})"


@action("pubsub.prune_snapshots", Effect.DESTRUCTIVE,
        "Delete Pub/Sub snapshots older than a duration (by id prefix or topic), keeping the newest.",
        target=target_of, describe=_describe)
def prune_snapshots(ctx: StepContext, params: PruneSnapshotsParams) -> PruneSnapshotsOutputs:
    s = Session.open(ctx)
    # Newest first, and among snapshots taken in the same second the last name counts as newer.
    found = matching(s, params.prefix, params.topic)[::-1]
    doomed, _keep = params.split(found, taken=lambda item: item[0])
    verb = "would delete" if params.dry_run else "deleted"
    deleted: list[str] = []
    for created, snap in reversed(doomed):  # oldest first
        if ctx.cancelled.is_set():
            raise ActionError(
                f"Pruning snapshots was stopped by the operator after {len(deleted)} deletions."
            )
        if not params.dry_run:
            with s.api(f"delete snapshot {short(snap.name)}"):
                s.clients.subscriber.delete_snapshot(
                    request={"snapshot": snap.name}, retry=s.retry, timeout=CALL_TIMEOUT
                )
        deleted.append(short(snap.name))
        ctx.log(f"{verb} snapshot {short(snap.name)} (taken ~{iso(created)})")
    kept = [short(snap.name) for _c, snap in reversed(found) if short(snap.name) not in deleted]
    ctx.log(f"{verb} {len(deleted)}, kept {len(kept)}")
    return PruneSnapshotsOutputs(deleted=deleted, kept=kept, dry_run=params.dry_run)
