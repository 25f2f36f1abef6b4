"""``bigquery.generate_events``: synthetic events for recovery drills ("generate 1,000 events")."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from runbook.actions.bigquery.params import TABLE_RE, DatasetParams, show_table
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.actions.support.poll import WaitCancelled, WaitTimeout, wait_until
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import iso_z, stamp, utc_now

EVENT_SCHEMA = [("event_id", "STRING"), ("type", "STRING"), ("product_id", "STRING"), ("ts", "TIMESTAMP")]
INSERT_BATCH = 500
NEW_TABLE_WAIT = 60.0  # seconds a just-created table may take to accept streaming inserts


class GenerateEventsParams(DatasetParams):
    table: str = Field(pattern=TABLE_RE)
    """Table to insert into (created with the event schema if missing)."""
    count: int = Field(1000, ge=1, le=1_000_000)
    id_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_:.-]{0,64}$")
    """Event id prefix (default G<YYYYmmddHHMMSS>-)."""
    seed: int | None = Field(None, description="Random seed for reproducible events.")


class GenerateEventsOutputs(ActionOutputs):
    rows: int
    """Rows inserted."""
    first_event_id: str
    """First event id."""
    last_event_id: str
    """Last event id."""
    table: str
    """Full table id."""


@action(
    "bigquery.generate_events",
    Effect.MUTATING,
    "Insert N synthetic events into a table (recovery drills: 'generate 1,000 events').",
    target=show_table,
    describe=lambda p: (
        f"bigquery.insert_rows_json({show_table(p)}, {p.count} generated events, {INSERT_BATCH} per request)"
    ),
)
def generate_events(ctx: StepContext, params: GenerateEventsParams) -> GenerateEventsOutputs:
    from google.cloud import bigquery

    s, ds = Session.for_dataset(ctx, params)
    ref = s.ref(ds, params.table)
    now = utc_now()
    prefix = params.id_prefix if params.id_prefix is not None else f"G{stamp(now, sep='')}-"
    rng = random.Random(params.seed)
    with s.api(f"create table {ds}.{params.table}"):
        schema = [bigquery.SchemaField(n, t) for n, t in EVENT_SCHEMA]
        s.client.create_table(bigquery.Table(ref, schema=schema), exists_ok=True, retry=s.retry)
    ids = [f"{prefix}{i:06d}" for i in range(params.count)]
    inserted = 0
    for start in range(0, len(ids), INSERT_BATCH):
        if ctx.cancelled.is_set():
            raise ActionError(f"Generating events was stopped by the operator after {inserted} rows.")
        batch = ids[start : start + INSERT_BATCH]
        rows = [_event(rng, eid, now + timedelta(milliseconds=start + i)) for i, eid in enumerate(batch)]
        errors = _insert(s, ref, rows, batch, f"insert events into {ds}.{params.table}")
        if errors:
            first = errors[0].get("errors", [{}])[0].get("message", str(errors[0]))
            raise ActionError(
                f"BigQuery rejected {len(errors)} generated rows for {ds}.{params.table}: {first}."
            )
        inserted += len(batch)
        ctx.log(f"inserted {inserted:,}/{params.count:,} events into {ds}.{params.table}")
    return GenerateEventsOutputs(rows=inserted, first_event_id=ids[0], last_event_id=ids[-1], table=ref)


def _event(rng: random.Random, event_id: str, ts: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": rng.choice(["view", "add_to_cart", "purchase"]),
        "product_id": f"P{rng.randint(1, 200):04d}",
        "ts": iso_z(ts, micro=True),
    }


def _insert(s: Session, ref: str, rows: list[dict[str, Any]], row_ids: list[str], what: str) -> list[Any]:
    """insert_rows_json, waiting up to NEW_TABLE_WAIT for a just-created table to accept streaming inserts."""
    from google.api_core.exceptions import NotFound

    def attempt() -> list[Any] | NotFound:
        try:
            return list(s.client.insert_rows_json(ref, rows, row_ids=row_ids, retry=s.retry))
        except NotFound as exc:
            return exc

    with s.api(what):
        try:
            result = wait_until(
                attempt,
                lambda r: not isinstance(r, NotFound),
                timeout=NEW_TABLE_WAIT,
                every=1.0,
                cancelled=s.ctx.cancelled,
            )
        except WaitTimeout as exc:
            raise exc.last from None  # the table never appeared: BigQuery's own NotFound, in one sentence
        except WaitCancelled:
            raise ActionError(f"Stopped by the operator while waiting to {what}.") from None
        if isinstance(result, NotFound):  # pragma: no cover - wait_until returns only what done() accepts
            raise result
    return result
