"""``bigquery.copy_dataset_region``: the cross-region copy for a regional failover.

On real BigQuery, copy jobs may copy a table into a dataset in another location (quota: 100
cross-region copies per destination table and 2,000 per project per day); ``WRITE_APPEND`` is not
supported across regions, so the copy truncates. The Data Transfer Service (dataset copy) is the
alternative for scheduled copies; it is not needed here. bqemulator keeps locations as labels
only, so there a cross-region copy is exercised as a plain copy.
"""

from __future__ import annotations

from pydantic import Field

from runbook.actions.bigquery.copying import copy_tables
from runbook.actions.bigquery.params import (
    DATASET_RE,
    DatasetParams,
    TableList,
    describe_copies,
    show_dataset,
)
from runbook.actions.bigquery.session import Session
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.stores import bigquery as bqstore
from runbook.stores import gcp


class CopyRegionParams(DatasetParams):
    region: str = Field("secondary", pattern=r"^[a-z0-9-]+$")
    """secondary (default), primary, or a region name."""
    target_dataset: str | None = Field(None, pattern=DATASET_RE)
    """Default: <dataset>_<region with _>."""
    tables: TableList = None
    """Only these tables (default: every table of the dataset)."""


class CopyRegionOutputs(ActionOutputs):
    target_dataset: str
    """The copy."""
    location: str
    """Its location."""
    tables: list[str]
    """Tables copied."""
    rows: dict[str, int]
    """Rows per table in the copy."""
    total: int
    """Rows in all tables."""


def _default_target(dataset: str, region: str) -> str:
    return f"{dataset}_{region.replace('-', '_')}"


def _target(p: CopyRegionParams) -> str:
    return p.target_dataset or _default_target(show_dataset(p.dataset), f"<{p.region} region>")


def _describe(p: CopyRegionParams) -> str:
    ds, dest = show_dataset(p.dataset), _target(p)
    copies = describe_copies(ds, dest, p.tables, write_disposition="WRITE_TRUNCATE")
    return f"bigquery.create_dataset({dest}, location=<{p.region} region's location>) + {copies}"


@action("bigquery.copy_dataset_region", Effect.MUTATING,
        "Copy a dataset's tables into a dataset in another region (failover copy).",
        target=_target, describe=_describe)
def copy_dataset_region(ctx: StepContext, params: CopyRegionParams) -> CopyRegionOutputs:
    """Copy a dataset into a dataset in another location, table by table.

    The target dataset is created with the region's BigQuery location (``bigquery_location_<region>``
    in the gcp store, else the region name); each table is copied with a copy job, which BigQuery
    runs across locations (``WRITE_TRUNCATE``: cross-region copies cannot append).
    """
    region = gcp.settings(ctx.environment).region_or_default(params.region)
    s, ds = Session.for_dataset(ctx, params, region)
    loc = bqstore.location(s.gs, region)
    dest = params.target_dataset or _default_target(ds, region)
    if dest == ds:
        raise ActionError(f"The target dataset {dest} is the source dataset: give another target_dataset.")
    tables = s.tables_or_all(ds, params.tables)
    if not tables:
        raise ActionError(f"Dataset {ds} has no tables to copy.")
    _create_in(s, dest, loc, copy_of=ds)
    ctx.log(f"copying {len(tables)} tables of {ds} to {dest} in {loc}")
    rows = copy_tables(s, ds, dest, tables, write_disposition="WRITE_TRUNCATE")
    return CopyRegionOutputs(
        target_dataset=dest, location=loc, tables=tables, rows=rows, total=sum(rows.values())
    )


def _create_in(s: Session, dest: str, loc: str, copy_of: str) -> None:
    """Create ``dest`` in ``loc`` unless it exists there; refuse one in another location."""
    labels = {"runbook-copy-of": copy_of.lower()[:63]}
    got = s.create_dataset(dest, loc, f"create dataset {dest} in {loc}", exists_ok=True, labels=labels)
    if (got.location or "").lower() != loc.lower():
        raise ActionError(
            f"Dataset {dest} already exists in {got.location}, not in {loc}: choose another target_dataset."
        )
