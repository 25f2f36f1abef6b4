"""Which datasets are backups of a dataset, and when each was taken; ``bigquery.list_backups``.

A backup is ``<dataset>_backup_<YYYYmmdd_HHMMSS>`` (the seed's script; no labels) or a dataset
labelled by ``bigquery.backup_dataset`` for this source. bqemulator cannot set creation times and
does not apply ``list_datasets(filter=labels…)``: backups are matched client-side and aged by the
timestamp in their name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from runbook.actions.bigquery.params import DatasetParams, show_dataset
from runbook.actions.bigquery.session import Session
from runbook.actions.params import Duration, seconds
from runbook.actions.spec import ActionOutputs, StepContext, action
from runbook.core.durations import format_duration
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import find_stamp, iso_z, utc_now

BACKUP_RE = re.compile(r"^(?P<source>[A-Za-z0-9_]+)_backup_(?P<stamp>\d{8}_\d{6})$")
LABEL_BACKUP = "runbook-backup"
LABEL_SOURCE = "runbook-source"
LABEL_CREATED = "runbook-created"


def source_label(dataset: str) -> str:
    """The ``runbook-source`` label value of a dataset (labels are lower case, at most 63 chars)."""
    return dataset.lower()[:63]


@dataclass(frozen=True)
class Backup:
    name: str
    created: datetime
    labelled: bool


def find_backups(s: Session, dataset: str) -> list[Backup]:
    """Backup datasets of ``dataset``, oldest first.

    Age comes from the name's timestamp (the moment the backup was taken, also right for copied
    backups and on bqemulator, where creation times cannot be set); a labelled backup without
    one falls back to its ``runbook-created`` label, then to the dataset's creation time.
    """
    with s.api(f"list the datasets of project {s.project}"):
        items = list(s.client.list_datasets(s.project, include_all=True, retry=s.retry))
    found = []
    for item in items:
        labels = item.labels or {}
        labelled = labels.get(LABEL_BACKUP) == "true" and labels.get(LABEL_SOURCE) == source_label(dataset)
        m = BACKUP_RE.match(item.dataset_id)
        created = find_stamp(m["stamp"]) if m and m["source"] == dataset else None
        if created is None and labelled:
            created = find_stamp(labels.get(LABEL_CREATED, "")) or _creation_time(s, item.dataset_id)
        if created is not None:
            found.append(Backup(item.dataset_id, created, labelled))
    return sorted(found, key=lambda b: (b.created, b.name))


def _creation_time(s: Session, name: str) -> datetime:
    created: datetime = s.get_dataset(name, f"read backup dataset {name}").created
    return created


# --- bigquery.list_backups -----------------------------------------------------------------


class ListBackupsParams(DatasetParams):
    max_age: Duration | None = Field(None, description="Fail if the newest backup is older (e.g. 26h).")
    required: bool = Field(True, description="Fail when there is no backup at all.")


class ListBackupsOutputs(ActionOutputs):
    names: list[str]
    """Backup datasets, oldest first."""
    latest: str
    """The newest backup ('' if none)."""
    latest_created: str
    """When the newest was taken (UTC)."""
    created: dict[str, str]
    """Backup → when it was taken (UTC)."""
    age_seconds: float | None
    """Age of the newest backup."""
    count: int
    """How many backups."""


def _describe_list(p: ListBackupsParams) -> str:
    ds = show_dataset(p.dataset)
    return (
        f"bigquery.list_datasets(project) matching {ds}_backup_<YYYYmmdd_HHMMSS> or label {LABEL_SOURCE}={ds}"
    )


@action("bigquery.list_backups", Effect.READ_ONLY,
        "List a dataset's backup datasets (<dataset>_backup_* or labelled) with their times.",
        target=lambda p: f"{show_dataset(p.dataset)}_backup_*", describe=_describe_list)
def list_backups(ctx: StepContext, params: ListBackupsParams) -> ListBackupsOutputs:
    s, ds = Session.for_dataset(ctx, params)
    backups = find_backups(s, ds)
    now = utc_now()
    for b in backups:
        ctx.log(f"{b.name}  {iso_z(b.created)}  ({format_duration((now - b.created).total_seconds())} old)")
    if not backups:
        ctx.log(f"no backups of {ds}")
        if params.required:
            raise ActionError(f"No backups of dataset {ds} found in project {s.project}.")
        return ListBackupsOutputs(
            names=[], latest="", latest_created="", created={}, age_seconds=None, count=0
        )
    latest = backups[-1]
    age = max(0.0, (now - latest.created).total_seconds())
    if params.max_age is not None and age > seconds(params.max_age):
        raise ActionError(
            f"The newest backup of {ds}, {latest.name}, is {format_duration(age)} old, "
            f"older than {params.max_age}."
        )
    return ListBackupsOutputs(
        names=[b.name for b in backups],
        latest=latest.name,
        latest_created=iso_z(latest.created),
        created={b.name: iso_z(b.created) for b in backups},
        age_seconds=round(age, 1),
        count=len(backups),
    )
