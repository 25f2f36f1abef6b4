"""Bigtable actions: managed backups, restores, pruning, row counts, verification, logical copies.

The seed's Bigtable procedures, run for real through google-cloud-bigtable:

* ``bigtable.backup`` — ``gcloud bigtable backups create <table>_backup_<YYYYmmdd_HHMMSS>
  --retention-period 30d`` (UTC in the name), waiting for the long-running operation;
* ``bigtable.list_backups`` / ``bigtable.prune_backups`` — listing and the "> 30 days" cleanup
  (never the newest backup);
* ``bigtable.restore`` — ``gcloud bigtable instances tables restore``, refusing to overwrite an
  existing table unless ``replace: true``;
* ``bigtable.row_count`` / ``bigtable.verify_rows`` — integrity checks after a restore;
* ``bigtable.export_table`` / ``bigtable.import_table`` — a logical copy (every row, cell and
  timestamp, with a sha256 sidecar) that can be loaded into an instance in another region: the
  cross-region path when managed backups cannot leave their instance's region.

Instance, cluster and table default to the gcp store's ``bigtable_instance``,
``bigtable_cluster`` and ``bigtable_table`` (each may be per region: ``bigtable_instance_<region>``).
Destructive actions (restore, prune, import) need the table spelled out in the step so the
operator's typed confirmation names it.

Modules: ``location`` (where a step works, error translation), ``reading`` (scans, progress),
``admin`` (backups of a table, table existence, long operations), ``backup`` (backup, list),
``restore``, ``prune``, ``checks`` (row count, verify rows), ``export``, ``importing``.
"""

from __future__ import annotations

from runbook.actions.bigtable.backup import backup, list_backups
from runbook.actions.bigtable.checks import row_count, verify_rows
from runbook.actions.bigtable.export import EXPORT_FORMAT, export_table
from runbook.actions.bigtable.importing import import_table
from runbook.actions.bigtable.prune import prune_backups
from runbook.actions.bigtable.restore import restore

SPECS = [
    backup,
    list_backups,
    restore,
    prune_backups,
    row_count,
    verify_rows,
    export_table,
    import_table,
]

__all__ = ["EXPORT_FORMAT", "SPECS"]
