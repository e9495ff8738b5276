"""What changed in a Dataverse table since the last run, for the mappings that pick
their rows themselves (the order and quote intake, order notes): change tracking first
(`Prefer: odata.track-changes`, the delta link kept on the mapping), the `modifiedon`
watermark when the table does not track changes, one full read when the delta link is
refused (an expired token). What the next read starts from is saved only once the rows
are handled, so a crash reads them again instead of losing them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update

from domain.sales.integration import IntegrationTableMapping
from domain.sales.models import table
from domain.sales.payload import since_filter
from jobs.dataverse.client import (
    DataverseClient,
    DeltaRefused,
    NotTracked,
    parse_datetime,
    primary_key,
)
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")
M = table(IntegrationTableMapping)


@dataclass
class Read:
    """The rows as they come, page by page (deleted rows as `$deletedEntity` markers, see
    `is_deleted`); `resume` is filled once they are all read."""

    rows: Iterator[dict[str, Any]]
    resume: dict[str, Any] = field(default_factory=dict)  # the mapping's next starting point


def read_changes(
    client: DataverseClient, mapping: Mapping, attrs: list[str], also: str = ""
) -> Read:
    """`also`: a `$filter` for a read by watermark (change tracking takes none: the
    caller filters what it reads)."""
    read = Read(iter(()))
    read.rows = _rows(client, mapping, attrs, also, read)
    return read


def save(db: Engine, mapping: Mapping, read: Read) -> None:
    """Where the next read starts; call once the rows are handled."""
    if read.resume:
        with db.begin() as conn:
            conn.execute(update(M).where(M.c.name == mapping.name).values(**read.resume))


def _rows(
    client: DataverseClient, mapping: Mapping, attrs: list[str], also: str, read: Read
) -> Iterator[dict[str, Any]]:
    link = mapping.row.dataverse_delta_link
    if link != "":  # "": the table does not track changes
        try:
            yield from _tracked(client, mapping, attrs, link, read)
            return
        except DeltaRefused as exc:  # refused on its first request, before any row
            log.warning("sales.delta_link_refused", mapping=mapping.name, reason=str(exc),
                        action="reading every row again")  # fmt: skip
            yield from _tracked(client, mapping, attrs, None, read)
            return
        except NotTracked:
            log.info("sales.change_tracking_off", mapping=mapping.name, using="modifiedon")
    yield from _by_watermark(client, mapping, attrs, also, read)


def _tracked(
    client: DataverseClient, mapping: Mapping, attrs: list[str], link: str | None, read: Read
) -> Iterator[dict[str, Any]]:
    changes = client.changes(mapping.entity_set, attrs, link)
    count = 0
    for row in changes.rows:
        count += 1
        yield row
    if changes.delta_link is not None and (link is None or count):  # else the link serves
        read.resume = {"dataverse_delta_link": changes.delta_link}


def _by_watermark(
    client: DataverseClient, mapping: Mapping, attrs: list[str], also: str, read: Read
) -> Iterator[dict[str, Any]]:
    key = primary_key(mapping.entity_set)
    clauses = [c for c in (also, since_filter(mapping.row.dataverse_watermark)) if c]
    newest: datetime | None = None
    for row in client.query(mapping.entity_set, attrs, " and ".join(clauses), key=key):
        modified = parse_datetime(row.get("modifiedon"))
        if modified is not None and (newest is None or modified > newest):
            newest = modified
        yield row
    read.resume = {"dataverse_delta_link": ""}
    if newest is not None:
        read.resume["dataverse_watermark"] = newest
