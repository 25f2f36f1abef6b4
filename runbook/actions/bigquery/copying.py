"""Copy jobs between datasets, and the rows they copied."""

from __future__ import annotations

from typing import Any

from runbook.actions.bigquery.session import Session
from runbook.core.errors import ActionError


def copied_rows(job: Any) -> int | None:
    """Rows a finished copy job copied (BigQuery reports it; bqemulator does not)."""
    value = (job._properties.get("statistics") or {}).get("copy", {}).get("copiedRows")
    return int(value) if value is not None else None


def rows_after_copies(s: Session, dataset: str, jobs: dict[str, Any]) -> dict[str, int]:
    """Rows per destination table: from the jobs' statistics, else one COUNT(*) query.

    ``Table.num_rows`` is not used: it is stale after DML on the emulator and excludes the
    streaming buffer on BigQuery.
    """
    rows = {t: copied_rows(j) for t, j in jobs.items()}
    missing = [t for t, n in rows.items() if n is None]
    if missing:
        rows.update(s.counts(dataset, missing))
    return {t: int(n) for t, n in rows.items() if n is not None}


def copy_all(s: Session, src_ds: str, dst_ds: str, tables: list[str], **config: Any) -> dict[str, Any]:
    """Copy tables (jobs started together, then waited for in order); table → finished job."""
    jobs: dict[str, Any] = {}
    for t in tables:
        if s.ctx.cancelled.is_set():
            raise ActionError(
                f"Copying {src_ds} to {dst_ds} was stopped by the operator after {len(jobs)} tables."
            )
        s.ctx.log(f"copy {src_ds}.{t} → {dst_ds}.{t}")
        jobs[t] = s.copy(s.ref(src_ds, t), s.ref(dst_ds, t), f"copy {src_ds}.{t} to {dst_ds}.{t}", **config)
    for t, job in jobs.items():
        s.wait(job, f"copy {src_ds}.{t} to {dst_ds}.{t}")
    return jobs


def copy_tables(
    s: Session, src_ds: str, dst_ds: str, tables: list[str], write_disposition: str
) -> dict[str, int]:
    """Copy tables, log and return the rows per copied table."""
    jobs = copy_all(s, src_ds, dst_ds, tables, write_disposition=write_disposition)
    rows = rows_after_copies(s, dst_ds, jobs)
    s.log_rows(dst_ds, rows)
    return rows


def dataset_exists(s: Session, dataset: str) -> bool:
    from google.api_core.exceptions import NotFound

    with s.api(f"read dataset {dataset}"):
        try:
            s.client.get_dataset(s.ref(dataset), retry=s.retry)
        except NotFound:
            return False
    return True
