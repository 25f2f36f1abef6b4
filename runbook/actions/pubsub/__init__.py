"""Pub/Sub actions: snapshots and seek (replay the window a failed job lost), drill events, drains.

The seed keeps Pub/Sub messages for 7 days; when a Dataflow job fails after consuming (acking)
messages it never wrote out, the recovery is: snapshot the subscription before the risky change
(or seek to the time the job broke), restart the job, and seek the subscription back so exactly
the lost window is delivered again. ``publish_events`` and ``drain_count`` make that provable in
a drill: the event ids drained after a seek are exactly the ones the failed job swallowed.

One code path for production and the sandbox (Google's emulator; see
:mod:`runbook.stores.pubsub`). The emulator is in memory: after a restart topics and
subscriptions must be created again. Modules: :mod:`.snapshots` (create, list, a snapshot's age),
:mod:`.seek`, :mod:`.events` (publish, drain and count), :mod:`.prune`; :mod:`.session` is what
they share.
"""

from __future__ import annotations

from runbook.actions.pubsub.events import drain_count, publish_events
from runbook.actions.pubsub.prune import prune_snapshots
from runbook.actions.pubsub.seek import seek
from runbook.actions.pubsub.snapshots import create_snapshot, list_snapshots, snapshot_created

SPECS = [create_snapshot, seek, list_snapshots, prune_snapshots, publish_events, drain_count]

__all__ = ["SPECS", "snapshot_created"]
