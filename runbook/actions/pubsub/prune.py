"""``pubsub.prune_snapshots``: delete old snapshots (by id prefix or topic), keeping the newest.

A snapshot's age is read as :func:`~runbook.actions.pubsub.snapshots.snapshot_created` says.
"""

from __future__ import annotations

from runbook.actions.params import Duration, Retention
from runbook.actions.pubsub.params import SnapshotFilter, target_of
from runbook.actions.pubsub.session import CALL_TIMEOUT, Session, iso, short
from runbook.actions.pubsub.snapshots import matching
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.support.pruning import delete_each
from runbook.core.effect import Effect


class PruneSnapshotsParams(SnapshotFilter, Retention):
    older_than: Duration = "3d"
    """Delete snapshots taken longer ago than this (e.g. 3d, 12h)."""


class PruneSnapshotsOutputs(ActionOutputs):
    deleted: list[str]
    """Snapshot ids deleted (with dry_run: ids that would be), oldest first."""
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
    oldest_first = doomed[::-1]
    gone = delete_each(ctx, oldest_first, dry_run=params.dry_run,
                       label=lambda item: f"snapshot {short(item[1].name)} (taken ~{iso(item[0])})",
                       delete=lambda item: _delete_snapshot(s, item[1].name),
                       stopped=lambda n: f"Pruning snapshots was stopped by the operator after {n} deletions.")
    deleted = [short(snap.name) for _c, snap in (oldest_first if params.dry_run else gone)]
    kept = [short(snap.name) for _c, snap in reversed(found) if short(snap.name) not in deleted]
    verb = "would delete" if params.dry_run else "deleted"
    ctx.log(f"{verb} {len(deleted)}, kept {len(kept)}")
    return PruneSnapshotsOutputs(deleted=deleted, kept=kept, dry_run=params.dry_run)


def _delete_snapshot(s: Session, name: str) -> None:
    with s.api(f"delete snapshot {short(name)}"):
        s.clients.subscriber.delete_snapshot(request={"snapshot": name}, retry=s.retry, timeout=CALL_TIMEOUT)
