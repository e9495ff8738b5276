"""Reading and writing couplings: which Dataverse row a local record is linked to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from domain.sales.integration import Coupling, SyncResult
from domain.sales.models import table

C = table(Coupling)


def find(conn: Connection, local_table: str, local_id: str, entity_set: str) -> Any | None:
    return conn.execute(
        select(C).where(
            C.c.local_table == local_table,
            C.c.local_id == local_id,
            C.c.dataverse_table == entity_set,
        )
    ).one_or_none()


def find_many(
    conn: Connection, local_table: str, local_ids: list[str], entity_set: str
) -> list[Any]:
    return list(
        conn.execute(
            select(C).where(
                C.c.local_table == local_table,
                C.c.local_id.in_(local_ids),
                C.c.dataverse_table == entity_set,
            )
        )
    )


def find_by_dataverse(conn: Connection, entity_set: str, dataverse_id: str) -> Any | None:
    return conn.execute(
        select(C).where(C.c.dataverse_table == entity_set, C.c.dataverse_id == dataverse_id)
    ).one_or_none()


def by_dataverse(conn: Connection, wanted: dict[str, set[str]]) -> dict[tuple[str, str], Any]:
    """The couplings of these Dataverse rows (entity set -> row ids), by (set, id): one
    read for a whole chunk's references."""
    found: dict[tuple[str, str], Any] = {}
    for entity_set, ids in wanted.items():
        ids = {i for i in ids if i}
        if ids:
            rows = conn.execute(
                select(C).where(C.c.dataverse_table == entity_set, C.c.dataverse_id.in_(ids))
            )
            found |= {(entity_set, str(r.dataverse_id)): r for r in rows}
    return found


def dataverse_id(conn: Connection, local_table: str, local_id: str, entity_set: str) -> str | None:
    """The coupled row's id, only when the coupling is complete (not mid-create)."""
    row = find(conn, local_table, local_id, entity_set)
    if row is None or row.last_result == SyncResult.CREATING:
        return None
    return str(row.dataverse_id)


def reserve(
    conn: Connection, local_table: str, local_id: str, entity_set: str, row_id: str, now: datetime
) -> None:
    """Records the id a create will use before the create is sent, so a crash between
    the two repeats the same create instead of making a second row."""
    conn.execute(
        insert(C).values(
            local_table=local_table,
            local_id=local_id,
            dataverse_table=entity_set,
            dataverse_id=row_id,
            last_result=SyncResult.CREATING,
            last_synced_at=now,
        )
    )


def couple(
    conn: Connection,
    local_table: str,
    local_id: str,
    entity_set: str,
    row_id: str,
    etag: str | None,
    now: datetime,
) -> None:
    existing = find(conn, local_table, local_id, entity_set)
    if existing is None:
        conn.execute(
            insert(C).values(
                local_table=local_table,
                local_id=local_id,
                dataverse_table=entity_set,
                dataverse_id=row_id,
                dataverse_etag=etag,
                last_result=SyncResult.SUCCESS,
                last_synced_at=now,
            )
        )
    else:
        mark(conn, existing.id, SyncResult.SUCCESS, now, etag=etag, row_id=row_id)


def mark(
    conn: Connection,
    coupling_id: int,
    result: SyncResult,
    now: datetime,
    *,
    etag: str | None = None,
    row_id: str | None = None,
) -> None:
    values: dict[str, Any] = {"last_result": result, "last_synced_at": now}
    if etag is not None:
        values["dataverse_etag"] = etag
    if row_id is not None:
        values["dataverse_id"] = row_id
    conn.execute(update(C).where(C.c.id == coupling_id).values(**values))


def uncouple(conn: Connection, coupling_id: int) -> None:
    conn.execute(delete(C).where(C.c.id == coupling_id))
