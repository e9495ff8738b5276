"""What changed in a Dataverse table since the last run, for the mappings that pick
their rows themselves (the order and quote intake, order notes): change tracking first
(`Prefer: odata.track-changes`, the delta link kept on the mapping), the `modifiedon`
watermark when the table does not track changes, one full read when the delta link is
refused (an expired token). What the next read starts from is saved only once the rows
are handled, so a crash reads them again instead of losing them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, update

from domain.sales.integration import IntegrationTableMapping
from domain.sales.models import table
from domain.sales.payload import since_filter
from jobs.dataverse.client import (
    DataverseClient,
    DeltaRefused,
    NotTracked,
    is_deleted,
    parse_datetime,
    primary_key,
)
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")
M = table(IntegrationTableMapping)


@dataclass
class Read:
    rows: list[dict[str, Any]]  # changed or new, as read
    deleted: list[str] = field(default_factory=list)  # row ids
    resume: dict[str, Any] = field(default_factory=dict)  # the mapping's next starting point


def read_changes(client: DataverseClient, mapping: Mapping, attrs: list[str]) -> Read:
    link = mapping.row.dataverse_delta_link
    if link != "":  # "": the table does not track changes
        try:
            return _tracked(client, mapping, attrs, link)
        except DeltaRefused as exc:
            log.warning("sales.delta_link_refused", mapping=mapping.name, reason=str(exc),
                        action="reading every row again")  # fmt: skip
            return _tracked(client, mapping, attrs, None)
        except NotTracked:
            log.info("sales.change_tracking_off", mapping=mapping.name, using="modifiedon")
    return _by_watermark(client, mapping, attrs)


def save(db: Engine, mapping: Mapping, read: Read) -> None:
    """Where the next read starts; call once the rows are handled."""
    if read.resume:
        with db.begin() as conn:
            conn.execute(update(M).where(M.c.name == mapping.name).values(**read.resume))


def _tracked(client: DataverseClient, mapping: Mapping, attrs: list[str], link: str | None) -> Read:
    changes = client.changes(mapping.entity_set, attrs, link)
    rows = list(changes.rows)
    read = Read(
        [r for r in rows if not is_deleted(r)],
        [str(r.get("id", "")) for r in rows if is_deleted(r)],
    )
    if changes.delta_link is not None and (link is None or rows):
        read.resume = {"dataverse_delta_link": changes.delta_link}
    return read


def _by_watermark(client: DataverseClient, mapping: Mapping, attrs: list[str]) -> Read:
    key = primary_key(mapping.entity_set)
    since = since_filter(mapping.row.dataverse_watermark)
    rows = list(client.query(mapping.entity_set, attrs, since, key=key))
    stamps = [d for d in (parse_datetime(r.get("modifiedon")) for r in rows) if d is not None]
    resume: dict[str, Any] = {"dataverse_delta_link": ""}
    if stamps:
        resume["dataverse_watermark"] = max(stamps)
    return Read(rows, resume=resume)
