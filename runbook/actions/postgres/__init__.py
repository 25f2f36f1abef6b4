"""PostgreSQL actions: dumps, verified restores, selective restores, row counts, lockdown, PITR.

The seed's database procedures (backup script, full restore, selective table restore, test restore
to staging with a row-count comparison, point-in-time recovery, the corruption scenario), made
safe to run at 3 a.m. One module per concern:

* :mod:`.names` — how database/table/role names are checked and quoted; :mod:`.common` — the
  store's settings, running PostgreSQL programs, connecting, resolving and counting tables.
* :mod:`.archive` — a dump's checksum file and table of contents; :mod:`.dumps` — ``dump``,
  ``verify_dump``; :mod:`.prune` — ``prune_dumps``.
* :mod:`.full_restore` — the full restore; :mod:`.selective_restore` — the selective, atomic one
  (``pg_restore | psql --single-transaction``).
* :mod:`.counts` — ``row_counts``, ``compare_counts``; :mod:`.privileges` —
  ``terminate_connections``, ``revoke_connect``, ``grant_connect``; :mod:`.integrity` —
  ``check_integrity``, ``reindex``.
* Point-in-time recovery: :mod:`.base_backups`, :mod:`.cluster` (the temporary server's files,
  configuration, start/stop and log), :mod:`.pitr` — ``pitr_restore``, :mod:`.stop` — ``stop_cluster``.
"""

from __future__ import annotations

from .base_backups import base_backup
from .counts import compare_counts, row_counts
from .dumps import dump, verify_dump
from .full_restore import restore
from .integrity import check_integrity, reindex
from .pitr import pitr_restore
from .privileges import grant_connect, revoke_connect, terminate_connections
from .prune import prune_dumps
from .selective_restore import restore_tables
from .stop import stop_cluster

SPECS = [
    dump,
    verify_dump,
    restore,
    restore_tables,
    row_counts,
    compare_counts,
    terminate_connections,
    revoke_connect,
    grant_connect,
    prune_dumps,
    check_integrity,
    reindex,
    base_backup,
    pitr_restore,
    stop_cluster,
]
