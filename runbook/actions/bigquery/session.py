"""One step's BigQuery connection: the client, the project, names, queries, and error translation.

Every client call of an action goes through :meth:`Session.api`, which turns a client error into
one sentence naming BigQuery, what was being done and what to check (:func:`gcp.translate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from runbook.actions.bigquery.params import DatasetParams
from runbook.actions.spec import StepContext
from runbook.actions.support.poll import WaitCancelled, wait_until
from runbook.core.errors import ActionError
from runbook.stores import bigquery as bqstore
from runbook.stores import gcp

POLL_SLICE = 2.0  # longest pause between two looks at a running job
COUNT_CHUNK = 100  # tables per UNION ALL count query


@dataclass
class Session:
    """The client, settings and project one step works with, plus error translation."""

    ctx: StepContext
    gs: gcp.GcpSettings
    client: Any
    project: str
    region: str | None = None

    @classmethod
    def open(cls, ctx: StepContext, project: str | None, region: str | None = None) -> Session:
        gs = gcp.settings(ctx.environment)
        client = bqstore.client(ctx.environment, region, pool=ctx.services.clients)
        return cls(ctx, gs, client, project or gs.project, region)

    @classmethod
    def for_dataset(
        cls, ctx: StepContext, params: DatasetParams, region: str | None = None
    ) -> tuple[Session, str]:
        """The step's session and the dataset it names (else the gcp store's ``dataset``)."""
        s = cls.open(ctx, params.project, region)
        return s, s.dataset(params.dataset)

    @property
    def retry(self) -> Any:
        return bqstore.retry()

    def dataset(self, name: str | None) -> str:
        if name:
            return name
        found = self.gs.raw.get("dataset")
        if not found:
            env = self.ctx.environment.name
            raise ActionError(
                f"No dataset given: set `dataset:` in the step or dataset in [environments.{env}.gcp]."
            )
        return str(found)

    def ref(self, dataset: str, table: str | None = None) -> str:
        return f"{self.project}.{dataset}" + (f".{table}" if table else "")

    def sql(self, dataset: str, table: str) -> str:
        # Quoted part by part: bqemulator rejects `p.d.t` as a CTAS target with FOR SYSTEM_TIME.
        return f"`{self.project}`.`{dataset}`.`{table}`"

    def api(self, what: str) -> AbstractContextManager[None]:
        """Turn any client error inside the block into one sentence (gcp.translate)."""
        env, region, pool = self.ctx.environment, self.region, self.ctx.services.clients
        return gcp.api_errors(bqstore.STORE, what, self.gs, lambda: bqstore.forget(env, region, pool=pool))

    def get_dataset(self, name: str, what: str) -> Any:
        with self.api(what):
            return self.client.get_dataset(self.ref(name), retry=self.retry)

    def create_dataset(
        self, name: str, location: Any, what: str, exists_ok: bool = False, **props: Any
    ) -> Any:
        """Create dataset ``name`` in ``location``; ``props`` sets its other properties (labels…)."""
        from google.cloud import bigquery

        fresh = bigquery.Dataset(self.ref(name))
        fresh.location = location
        for key, value in props.items():
            setattr(fresh, key, value)
        with self.api(what):
            return self.client.create_dataset(fresh, exists_ok=exists_ok, retry=self.retry)

    def check_cancelled(self, what: str) -> None:
        """Stop between phases once the operator (or the step's timeout) stopped the step."""
        if self.ctx.cancelled.is_set():
            raise ActionError(f"Stopped by the operator before it could {what}.")

    def wait(self, job: Any, what: str) -> Any:
        """Wait for a copy job; a stopped step stops waiting and cancels the job.

        Each look is one ``jobs.get`` (bounded by the client's retry, never cut short here);
        the pause between looks grows to POLL_SLICE.
        """
        with self.api(what):
            try:
                wait_until(
                    lambda: job.done(retry=self.retry),
                    bool,
                    timeout=None,
                    every=0.1,
                    max_every=POLL_SLICE,
                    cancelled=self.ctx.cancelled,
                )
            except WaitCancelled:
                self._cancel(job)
                raise ActionError(
                    f"BigQuery job {job.job_id} ({what}) was stopped by the operator."
                ) from None
            return job.result(retry=self.retry)

    def _cancel(self, job: Any) -> None:
        try:
            job.cancel(retry=self.retry, timeout=10)
        except Exception:  # noqa: BLE001, S110 - best effort; the stop is what matters
            pass

    def query(self, sql: str, what: str, params: list[Any] | None = None) -> tuple[Any, list[Any]]:
        """Run a query to completion: (job, rows).

        ``result()`` is called exactly as a direct caller would (no timeout): for queries a
        timeout would also bound each jobs.getQueryResults long-poll and each page of rows.
        Actions check for a stop between queries instead.
        """
        config = None
        if params:
            from google.cloud import bigquery

            config = bigquery.QueryJobConfig(query_parameters=params)
        with self.api(what):
            job = self.client.query(sql, job_config=config, retry=self.retry)
            return job, list(job.result(retry=self.retry))

    def tables(self, dataset: str) -> list[str]:
        """Plain tables of a dataset (views, snapshots, clones and external tables left out)."""
        with self.api(f"list the tables of {dataset}"):
            items = list(self.client.list_tables(self.ref(dataset), retry=self.retry))
        names = []
        for item in items:
            if item.table_type == "TABLE":
                names.append(item.table_id)
            else:
                self.ctx.log(f"skipping {dataset}.{item.table_id} ({item.table_type})")
        return sorted(names)

    def tables_or_all(self, dataset: str, tables: list[str] | None) -> list[str]:
        """The listed tables, or every plain table of ``dataset``."""
        return list(tables) if tables else self.tables(dataset)

    def counts(self, dataset: str, tables: list[str]) -> dict[str, int]:
        """Exact ``COUNT(*)`` per table, one query per COUNT_CHUNK tables."""
        out: dict[str, int] = {}
        for chunk in _chunks(tables, COUNT_CHUNK):
            if len(chunk) == 1:
                sql = f"SELECT COUNT(*) AS n FROM {self.sql(dataset, chunk[0])}"
            else:
                sql = " UNION ALL ".join(
                    f"SELECT {i} AS i, COUNT(*) AS n FROM {self.sql(dataset, t)}" for i, t in enumerate(chunk)
                )
            what = f"count the rows of {dataset}." + (
                chunk[0] if len(chunk) == 1 else f"{{{len(chunk)} tables}}"
            )
            _job, rows = self.query(sql, what)
            for row in rows:
                out[chunk[int(row["i"]) if len(chunk) > 1 else 0]] = int(row["n"])
        return {t: out[t] for t in tables if t in out}

    def copy(self, source: str | list[str], dest: str, what: str, **config: Any) -> Any:
        """Start a copy job (not waited for)."""
        from google.cloud import bigquery

        with self.api(what):
            return self.client.copy_table(
                source, dest, job_config=bigquery.CopyJobConfig(**config), retry=self.retry
            )

    def log_rows(self, dataset: str, rows: dict[str, int]) -> None:
        for t, n in rows.items():
            self.ctx.log(f"{dataset}.{t}: {n:,} rows")


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
