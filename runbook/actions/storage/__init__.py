"""File storage: rsync snapshots with hard links, checksum manifests, restores, pruning and checks.

The seed's storage backup (``rsync -a --delete --link-dest=BACKUPS/latest ROOT/ BACKUPS/backup_DATE/``
then repoint ``latest``), its full, tenant and dataset restores, and its verification, made safe
to run at 3 a.m.:

* :mod:`.snapshot` (with :mod:`.copy` and :mod:`.digests`): a snapshot is copied into
  ``.incomplete-NAME`` and renamed once rsync succeeded and its manifest is written.
* :mod:`.manifest`: every snapshot holds ``.runbook-manifest.xxh128`` (the default: the whole-file
  checksum rsync computes while it copies, so it costs no extra read) or ``.runbook-manifest.sha256``
  (``checksums: sha256``: each copied file read once more while rsync copies the next ones).
  Digests of unchanged (hard-linked) files are reused from the previous snapshot's manifest.
  Verification and restores read whichever manifest a snapshot has.
* :mod:`.rsync`: rsync's per-file records, stats and notices; :mod:`.background`: what runs
  beside rsync. :mod:`.layout`: ids, names (UTC), ``latest``, the lock.
* :mod:`.verify`, :mod:`.restore`, :mod:`.prune`, :mod:`.checks`, :mod:`.listing`: the other actions.
"""

from __future__ import annotations

from runbook.actions.storage.checks import check_recent, check_size
from runbook.actions.storage.listing import list_snapshots
from runbook.actions.storage.manifest import MANIFEST, MANIFESTS, read_manifest
from runbook.actions.storage.prune import prune_snapshots
from runbook.actions.storage.restore import restore_dataset, restore_full, restore_tenant
from runbook.actions.storage.snapshot import take_snapshot
from runbook.actions.storage.verify import verify_snapshot

__all__ = ["MANIFEST", "MANIFESTS", "SPECS", "read_manifest"]

SPECS = [
    take_snapshot,
    verify_snapshot,
    restore_full,
    restore_tenant,
    restore_dataset,
    prune_snapshots,
    check_recent,
    check_size,
    list_snapshots,
]
