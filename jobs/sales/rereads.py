"""Rows read from Dataverse that failed to come in (`integration_pending_rows`): which
wait for a mapping, and reading them again by id, a chunk of rows a request, so a run
retries them without reading the whole table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, select

from domain.sales.integration import PendingRow
from domain.sales.models import table
from domain.sales.outcome import Outcome
from jobs.dataverse.client import DataverseClient, primary_key
from jobs.sales.books import Result
from jobs.sales.mapping import Mapping

PR = table(PendingRow)
CHUNK = 50  # rows named in one $filter


def waiting(db: Engine, mapping: Mapping) -> dict[str, str]:
    """The rows that wait to be read again, with why they failed (row id, lower case ->
    reason); no statement when the mapping has none."""
    if not mapping.rows_waiting:
        return {}
    with db.connect() as conn:
        found = conn.execute(
            select(PR.c.dataverse_id, PR.c.reason).where(PR.c.mapping_name == mapping.name)
        )
        return {str(r.dataverse_id).lower(): str(r.reason) for r in found}


def no_news(results: list[Result], waiting: dict[str, str]) -> None:
    """Rows read that failed wait to be read again; one that failed before for the same
    reason failed again: no news (no activity, no new warning)."""
    for r in results:
        if r.outcome == Outcome.FAILED and r.dataverse_id:
            r.reread = True
            if waiting.get(r.dataverse_id.lower()) == r.reason:
                r.outcome = Outcome.FAILED_AGAIN


def read_again(
    client: DataverseClient,
    entity_set: str,
    attrs: list[str],
    row_ids: list[str],
    also: str = "",
) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    """Per chunk of ids: (the rows still there and matching `also`, the ids that are not)."""
    key = primary_key(entity_set)
    for start in range(0, len(row_ids), CHUNK):
        chunk = row_ids[start : start + CHUNK]
        wanted = "(" + " or ".join(f"{key} eq {row_id}" for row_id in chunk) + ")"
        flt = f"{wanted} and {also}" if also else wanted
        rows = list(client.query(entity_set, attrs, flt, key=key))
        found = {str(r.get(key) or "").lower() for r in rows}
        yield rows, [i for i in chunk if i.lower() not in found]
