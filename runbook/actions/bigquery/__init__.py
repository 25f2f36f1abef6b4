"""BigQuery actions: backups, snapshots, restores, time travel, counts and verification.

These are the seed's BigQuery procedures run for real through google-cloud-bigquery: the nightly
timestamped backup dataset (``<dataset>_backup_<YYYYmmdd_HHMMSS>``, UTC, every table copied),
table snapshots with a retention, restores from either, time-travel restores, the 90-day cleanup,
the cross-region copy for a regional failover, and the validation steps (row counts, sampled rows).

One code path for production and the sandbox (bqemulator); only the endpoint and credentials
differ (see :mod:`runbook.stores.bigquery`). Things bqemulator does differently, and how the
actions cope without a second code path:

* Table expiration is not stored (neither from ``CopyJobConfig.destination_expiration_time`` nor
  ``update_table``): ``snapshot_table`` reports the expiration it requested.
* Copy jobs carry no ``statistics.copy.copiedRows``: row counts then come from ``COUNT(*)``.
  ``Table.num_rows`` is not used at all: it is stale after DML on the emulator and excludes the
  streaming buffer on BigQuery.
* Query jobs ignore ``QueryJobConfig.destination``, and ``CREATE TABLE `p.d.t` AS SELECT … FOR
  SYSTEM_TIME AS OF`` fails; ``CREATE TABLE … LIKE`` + ``INSERT … SELECT … FOR SYSTEM_TIME AS OF``
  + a ``WRITE_TRUNCATE`` copy works on both (see :mod:`.snapshots`). Table decorators
  (``t@<ms>``) are not supported by the emulator.
* Dataset creation times cannot be set, and ``list_datasets(filter=labels…)`` is not applied:
  backups are matched client-side and aged by the timestamp in their name (:mod:`.catalog`).
* Locations are labels only, so a cross-region copy is exercised as a plain copy (:mod:`.region`).

Modules: ``session`` (client, queries, error translation), ``copying`` (copy jobs), ``catalog``
(what is a backup; list_backups), ``backup``, ``snapshots`` (snapshot, time travel), ``restore``,
``prune``, ``region``, ``checks`` (counts, sampled rows), ``seeding`` (drill events).
"""

from __future__ import annotations

from runbook.actions.bigquery.backup import backup_dataset
from runbook.actions.bigquery.catalog import list_backups
from runbook.actions.bigquery.checks import compare_counts, row_counts, verify_rows
from runbook.actions.bigquery.prune import prune_backups
from runbook.actions.bigquery.region import copy_dataset_region
from runbook.actions.bigquery.restore import restore_dataset, restore_table
from runbook.actions.bigquery.seeding import generate_events
from runbook.actions.bigquery.snapshots import snapshot_table, time_travel_restore

SPECS = [
    backup_dataset,
    snapshot_table,
    restore_table,
    restore_dataset,
    time_travel_restore,
    row_counts,
    compare_counts,
    list_backups,
    prune_backups,
    copy_dataset_region,
    verify_rows,
    generate_events,
]

__all__ = ["SPECS"]
