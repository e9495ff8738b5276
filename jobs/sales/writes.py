"""Writing many rows to Dataverse: bulk messages where the table has them, `$batch`
otherwise, and the per-record answers a sync needs.

- Creates use `UpsertMultiple` with ids reserved beforehand, so repeating a chunk whose
  answer was lost (or after a crash) finds the rows instead of making second ones. A
  chunk refused as a whole (one bad record: standard tables write all or none) is
  written again record by record in one `$batch` with continue-on-error, so the bad
  record fails alone. Tables without the message go straight to `$batch`.
- Updates go in `$batch` requests, each with the row's ETag in `If-Match`: the bulk
  messages take no per-record ETag, and a row changed in Dataverse since the last
  sync must stay an update conflict, not be overwritten.
- Bulk messages answer without ETags; `read_back` asks for the rows the integration
  user modified since the service's clock before the write (one request per 5,000).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from domain.sales.payload import odata_datetime
from jobs.dataverse.batch import BatchOperation
from jobs.dataverse.client import (
    MAX_PER_REQUEST,
    Answer,
    DataverseClient,
    DataverseError,
    NotSupported,
    Written,
    parse_datetime,
    primary_key,
)

# The ETag of a row written by a bulk message whose version was not read back: an
# update sent with it is refused (412), and the conflict check decides.
UNKNOWN_ETAG = 'W/"unknown"'
TRANSIENT = {0, 429, 500, 502, 503, 504}
T = TypeVar("T")


def chunks(items: list[T], size: int = MAX_PER_REQUEST) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Write:
    """A row's write: what was written (etag None: to be read back), or its error."""

    written: Written | None = None
    error: DataverseError | None = None


def patch(
    client: DataverseClient,
    entity_set: str,
    row_id: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> BatchOperation:
    return BatchOperation(
        "PATCH",
        f"{client.api}{entity_set}({row_id})?$select=modifiedon",
        body,
        {"Prefer": "return=representation", **headers},
    )


def written_of(row_id: str, answer: Answer) -> Write:
    """A PATCH answer (return=representation) as what was written, or its error."""
    if answer.error is not None:
        return Write(error=answer.error)
    try:
        modified = parse_datetime(answer.data.get("modifiedon"))
    except (TypeError, ValueError):
        modified = None
    etag = answer.data.get("@odata.etag")
    return Write(Written(row_id, etag if isinstance(etag, str) else None, modified))


def _each(
    client: DataverseClient, entity_set: str, verb: str, ops: list[tuple[str, BatchOperation]]
) -> dict[str, Answer]:
    """One request per row in one $batch (continue-on-error): each row's own answer; a
    batch refused as a whole is every row's error."""
    names = [f"{verb} {entity_set}({i})" for i, _ in ops]
    try:
        answers = client.batch([op for _, op in ops], f"{verb} {len(ops)} {entity_set}", names)
    except DataverseError as exc:
        return {i: Answer(exc.status, {}, exc) for i, _ in ops}
    return {i: a for (i, _), a in zip(ops, answers, strict=True)}


def _upsert(
    client: DataverseClient,
    entity_set: str,
    chunk: list[tuple[str, dict[str, Any]]],
    verb: str,
    headers: dict[str, str],
) -> dict[str, Answer] | None:
    """UpsertMultiple of a chunk; None when it wrote them all. A table without the
    message, or a chunk refused as a whole (one bad record), goes record by record; a
    throttled or unreachable service fails the chunk."""
    try:
        key = primary_key(entity_set)
        client.bulk(entity_set, "UpsertMultiple", [{key: i, **body} for i, body in chunk])
        return None
    except NotSupported:
        pass
    except DataverseError as exc:
        if exc.status in TRANSIENT:
            return {i: Answer(exc.status, {}, exc) for i, _ in chunk}
    return _each(
        client, entity_set, verb, [(i, patch(client, entity_set, i, b, headers)) for i, b in chunk]
    )


def created_of(row_id: str, answer: Answer) -> Write:
    if answer.status == 412:  # an earlier attempt created it: read it back
        return Write(Written(row_id, None, None))
    return written_of(row_id, answer)


def create_all(
    client: DataverseClient, entity_set: str, records: dict[str, dict[str, Any]]
) -> dict[str, Write]:
    """Creates rows with the ids given (row id -> payload)."""
    out: dict[str, Write] = {}
    for chunk in chunks(list(records.items())):
        answers = _upsert(client, entity_set, chunk, "creating", {"If-None-Match": "*"})
        if answers is None:
            out |= {i: Write(Written(i, None, None)) for i, _ in chunk}
        else:
            out |= {i: created_of(i, a) for i, a in answers.items()}
    return out


def create_each(
    client: DataverseClient, entity_set: str, chunk: list[tuple[str, dict[str, Any]]]
) -> dict[str, Write]:
    """Creates a chunk record by record in one $batch (what a table without the bulk
    messages gets; the benchmark compares it with UpsertMultiple)."""
    ops = [(i, patch(client, entity_set, i, b, {"If-None-Match": "*"})) for i, b in chunk]
    return {i: created_of(i, a) for i, a in _each(client, entity_set, "creating", ops).items()}


def upsert_all(
    client: DataverseClient, entity_set: str, records: dict[str, dict[str, Any]]
) -> dict[str, DataverseError | None]:
    """Creates or updates rows the integration alone keeps (price-list lines): no
    concurrency check; a bad record fails alone."""
    out: dict[str, DataverseError | None] = {}
    for chunk in chunks(list(records.items())):
        answers = _upsert(client, entity_set, chunk, "writing", {})
        out |= (
            {i: None for i, _ in chunk}
            if answers is None
            else {i: a.error for i, a in answers.items()}
        )
    return out


def update_all(
    client: DataverseClient, entity_set: str, records: dict[str, tuple[dict[str, Any], str | None]]
) -> dict[str, Answer]:
    """Updates rows as last seen (row id -> (payload, ETag; None: whatever version));
    412: changed since, 404: gone."""
    out: dict[str, Answer] = {}
    for chunk in chunks(list(records.items())):
        ops = [
            (i, patch(client, entity_set, i, body, {"If-Match": etag or "*"}))
            for i, (body, etag) in chunk
        ]
        out |= _each(client, entity_set, "updating", ops)
    return out


def delete_all(
    client: DataverseClient, entity_set: str, row_ids: list[str]
) -> dict[str, DataverseError | None]:
    """Deletes rows; one already gone counts as deleted."""
    out: dict[str, DataverseError | None] = {}
    for chunk in chunks(row_ids):
        ops = [(i, BatchOperation("DELETE", f"{client.api}{entity_set}({i})")) for i in chunk]
        answers = _each(client, entity_set, "deleting", ops)
        out |= {i: None if a.status == 404 else a.error for i, a in answers.items()}
    return out


def read_back(
    client: DataverseClient, entity_set: str, user: str, since: datetime, row_ids: set[str]
) -> dict[str, Written]:
    """The versions of rows the integration user wrote since `since` (the service's
    clock), for those of `row_ids` no one changed after us."""
    if not row_ids:
        return {}
    key = primary_key(entity_set)
    found: dict[str, Written] = {}
    rows = client.query(
        entity_set,
        [key, "modifiedon"],
        f"_modifiedby_value eq {user} and modifiedon ge {odata_datetime(since)}",
        key=key,
        page_size=5000,
    )
    for row in rows:
        row_id = str(row.get(key, "")).lower()
        if row_id in row_ids:
            etag = row.get("@odata.etag")
            found[row_id] = Written(
                row_id,
                etag if isinstance(etag, str) else None,
                parse_datetime(row.get("modifiedon")),
            )
    return found


def clock_before_write(client: DataverseClient, local_now: datetime) -> datetime:
    """A lower bound of the service's clock for a write about to be sent."""
    base = client.server_time or (local_now - timedelta(minutes=10))
    return base - timedelta(seconds=2)
