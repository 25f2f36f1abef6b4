"""The parameters the BigQuery actions share: project, dataset, table lists and the name rules."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from runbook.actions.spec import ActionParams
from runbook.core.timestamps import parse_utc

PROJECT_RE = r"^[a-z][a-z0-9.:-]{2,127}$"
DATASET_RE = r"^[A-Za-z0-9_]{1,1024}$"
# Stricter than BigQuery (which allows Unicode and spaces): names are quoted into SQL.
TABLE_RE = r"^[A-Za-z0-9_-]{1,1024}$"
COLUMN_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,299}$"


def _timestamp(v: str) -> str:
    parse_utc(v)
    return v


Timestamp = Annotated[str, AfterValidator(_timestamp)]
"""A moment as written (ISO 8601; UTC if no offset), checked when the step is validated."""


def store_default(what: str) -> str:
    return f"Default: the gcp store's {what}."


class ProjectParams(ActionParams):
    project: str | None = Field(None, pattern=PROJECT_RE, description=store_default("project"))


class DatasetParams(ProjectParams):
    dataset: str | None = Field(None, pattern=DATASET_RE, description=store_default("dataset"))


def _check_tables(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    if not v:
        raise ValueError("tables must not be empty; leave it out for every table")
    for name in v:
        if not re.match(TABLE_RE, name):
            raise ValueError(f"{name!r} is not a table name (letters, digits, _ and -)")
    if len(set(v)) != len(v):
        raise ValueError("tables lists a table twice")
    return v


TableList = Annotated[list[str] | None, AfterValidator(_check_tables)]
"""``tables:``: None for every table, else a non-empty list of distinct table names."""


class TablesParams(DatasetParams):
    tables: TableList = None
    """Only these tables (default: every table of the dataset)."""


def show_dataset(dataset: str | None) -> str:
    """The dataset for describe(): its value, or where the default will come from."""
    return dataset or "{env.gcp.dataset}"


def which_tables(tables: list[str] | None) -> str:
    return ", ".join(tables) if tables else "every table"


def show_table(p: Any) -> str:
    """``<dataset>.<table>`` of a step on one table, for describe() and targets."""
    return f"{show_dataset(p.dataset)}.{p.table}"


def copy_call(source: str, dest: str, **options: str | None) -> str:
    """describe() of one copy job: ``bigquery.copy_table(source → dest, option=value…)``.

    Options set to None are left out.
    """
    shown = "".join(f", {k}={v}" for k, v in options.items() if v is not None)
    return f"bigquery.copy_table({source} → {dest}{shown})"


def describe_copies(source: str, dest: str, tables: list[str] | None, **options: str) -> str:
    """describe() of copying tables one by one from dataset ``source`` to ``dest``."""
    return f"{copy_call(f'{source}.<table>', f'{dest}.<table>', **options)} for {which_tables(tables)}"
