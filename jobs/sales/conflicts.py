"""An admin's answer to a recorded update conflict: which side's version wins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from domain.sales.integration import Coupling, PendingRecord, RecordSyncState, SyncResult
from domain.sales.models import LOCAL_MODELS, table
from jobs.sales.mapping import load_mapping

C, P, S = table(Coupling), table(PendingRecord), table(RecordSyncState)


class ConflictError(ValueError):
    pass


def resolve(session: Session, mapping_name: str, local_id: str, keep: str, now: datetime) -> str:
    """`keep="local"`: the next run sends the local version over the Dataverse one.
    `keep="dataverse"`: the local version is not sent; a mapping that reads from
    Dataverse takes the Dataverse version on its next run."""
    if keep not in ("local", "dataverse"):
        raise ConflictError("--keep is local or dataverse")
    conn = session.connection()
    try:
        mapping = load_mapping(conn, mapping_name)
    except LookupError as exc:
        raise ConflictError(str(exc)) from None
    local_table = mapping.row.local_table
    coupling = conn.execute(
        select(C).where(
            C.c.local_table == local_table,
            C.c.local_id == local_id,
            C.c.dataverse_table == mapping.row.dataverse_table,
        )
    ).one_or_none()
    if coupling is None or coupling.last_result != SyncResult.CONFLICT:
        raise ConflictError(
            f"{local_table} {local_id!r} has no recorded conflict in {mapping_name}"
        )
    # Forget the ETag: the next write uses If-Match: * and the next read is not "unchanged".
    conn.execute(
        update(C)
        .where(C.c.id == coupling.id)
        .values(dataverse_etag=None, last_result=SyncResult.SUCCESS, last_synced_at=now)
    )
    conn.execute(delete(P).where(P.c.mapping_name == mapping_name, P.c.local_id == local_id))
    if keep == "local":
        conn.execute(
            insert(P).values(
                mapping_name=mapping_name,
                local_id=local_id,
                result=SyncResult.CONFLICT,
                reason="conflict resolved by an admin: send the local version",
                since=now,
            )
        )
        return f"{local_table} {local_id} will be sent to Dataverse by the next run"
    t = table(LOCAL_MODELS[local_table])
    key = t.primary_key.columns.values()[0]
    modified = conn.execute(
        select(t.c[mapping.modified_field]).where(key == local_id)
    ).scalar_one_or_none()
    conn.execute(delete(S).where(S.c.mapping_name == mapping_name, S.c.local_id == local_id))
    conn.execute(
        insert(S).values(mapping_name=mapping_name, local_id=local_id, last_local_modified=modified)
    )
    return f"{local_table} {local_id}: the Dataverse version is kept"
