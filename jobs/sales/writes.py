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
class Outcome:
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


def _written(row_id: str, answer: Answer) -> Outcome:
    if answer.error is not None:
        return Outcome(error=answer.error)
    try:
        modified = parse_datetime(answer.data.get("modifiedon"))
    except (TypeError, ValueError):
        modified = None
    etag = answer.data.get("@odata.etag")
    return Outcome(Written(row_id, etag if isinstance(etag, str) else None, modified))


def create_all(
    client: DataverseClient, entity_set: str, records: dict[str, dict[str, Any]]
) -> dict[str, Outcome]:
    """Creates rows with the ids given (row id -> payload)."""
    key = primary_key(entity_set)
    out: dict[str, Outcome] = {}
    for chunk in chunks(list(records.items())):
        try:
            client.bulk(entity_set, "UpsertMultiple", [{key: i, **body} for i, body in chunk])
        except NotSupported:
            out |= create_each(client, entity_set, chunk)
        except DataverseError as exc:
            if exc.status in TRANSIENT:  # throttled or down beyond the retry policy
                out |= {i: Outcome(error=exc) for i, _ in chunk}
            else:  # one bad record refuses the chunk: find it
                out |= create_each(client, entity_set, chunk)
        else:
            out |= {i: Outcome(Written(i, None, None)) for i, _ in chunk}
    return out


def create_each(
    client: DataverseClient, entity_set: str, chunk: list[tuple[str, dict[str, Any]]]
) -> dict[str, Outcome]:
    ops = [patch(client, entity_set, i, body, {"If-None-Match": "*"}) for i, body in chunk]
    try:
        answers = client.batch(
            list(ops),
            f"creating {len(ops)} {entity_set}",
            [f"creating {entity_set}({i})" for i, _ in chunk],
        )
    except DataverseError as exc:
        return {i: Outcome(error=exc) for i, _ in chunk}
    out = {}
    for (row_id, _), answer in zip(chunk, answers, strict=True):
        if answer.status == 412:  # an earlier attempt created it: read it back
            out[row_id] = Outcome(Written(row_id, None, None))
        else:
            out[row_id] = _written(row_id, answer)
    return out


def upsert_all(
    client: DataverseClient, entity_set: str, records: dict[str, dict[str, Any]]
) -> dict[str, DataverseError | None]:
    """Creates or updates rows the integration alone keeps (price-list lines): no
    concurrency check; a bad record fails alone."""
    key = primary_key(entity_set)
    out: dict[str, DataverseError | None] = {}
    for chunk in chunks(list(records.items())):
        try:
            client.bulk(entity_set, "UpsertMultiple", [{key: i, **body} for i, body in chunk])
            out |= {i: None for i, _ in chunk}
            continue
        except NotSupported:
            pass
        except DataverseError as exc:
            if exc.status in TRANSIENT:
                out |= {i: exc for i, _ in chunk}
                continue
        ops = [patch(client, entity_set, i, body, {}) for i, body in chunk]
        try:
            answers = client.batch(
                list(ops),
                f"writing {len(ops)} {entity_set}",
                [f"writing {entity_set}({i})" for i, _ in chunk],
            )
        except DataverseError as exc:
            out |= {i: exc for i, _ in chunk}
            continue
        out |= {i: a.error for (i, _), a in zip(chunk, answers, strict=True)}
    return out


def update_all(
    client: DataverseClient, entity_set: str, records: dict[str, tuple[dict[str, Any], str | None]]
) -> dict[str, Answer]:
    """Updates rows as last seen (row id -> (payload, ETag; None: whatever version));
    412: changed since, 404: gone."""
    out: dict[str, Answer] = {}
    for chunk in chunks(list(records.items())):
        ops = [
            patch(client, entity_set, i, body, {"If-Match": etag or "*"})
            for i, (body, etag) in chunk
        ]
        try:
            answers = client.batch(
                list(ops),
                f"updating {len(ops)} {entity_set}",
                [f"updating {entity_set}({i})" for i, _ in chunk],
            )
        except DataverseError as exc:
            out |= {i: Answer(exc.status, {}, exc) for i, _ in chunk}
            continue
        out |= {i: a for (i, _), a in zip(chunk, answers, strict=True)}
    return out


def written_of(row_id: str, answer: Answer) -> Outcome:
    return _written(row_id, answer)


def delete_all(
    client: DataverseClient, entity_set: str, row_ids: list[str]
) -> dict[str, DataverseError | None]:
    """Deletes rows; one already gone counts as deleted."""
    out: dict[str, DataverseError | None] = {}
    for chunk in chunks(row_ids):
        ops = [BatchOperation("DELETE", f"{client.api}{entity_set}({i})") for i in chunk]
        try:
            answers = client.batch(list(ops), f"deleting {len(ops)} {entity_set}")
        except DataverseError as exc:
            out |= {i: exc for i in chunk}
            continue
        out |= {
            i: None if a.status == 404 else a.error for i, a in zip(chunk, answers, strict=True)
        }
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
