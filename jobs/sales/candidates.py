"""Which local records a run pushes: those changed since the mapping's watermark (re-read
with a short overlap, so a transaction that committed late is not missed), those
pending from earlier runs (failed or skipped), and what a behaviour adds (expired
prices still coupled). Read set-based, with their couplings and sync states."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Select, String, and_, cast, or_, select

from domain.sales.integration import Coupling, PendingRecord, RecordSyncState
from domain.sales.models import table
from domain.sales.payload import WATERMARK_OVERLAP
from jobs.sales.mapping import Mapping

CHUNK = 1000
C, P, S = table(Coupling), table(PendingRecord), table(RecordSyncState)


@dataclass
class Candidate:
    row: Any
    local_id: str
    coupling: Any  # the coupling row, or None
    state: Any  # the sync state row, or None
    pending: bool
    retry_only: bool  # pending, and not changed since it last failed: a retry, no news


@dataclass
class Selection:
    rows: list[Any]
    watermark: datetime | None
    pending_since: dict[str, datetime]


def _filters(mapping: Mapping) -> list[Any]:
    t = mapping.local
    return [
        (t.c[name] != spec["ne"]) if isinstance(spec, dict) else (t.c[name] == spec)
        for name, spec in (mapping.row.local_filter or {}).items()
    ]


def select_rows(conn: Connection, mapping: Mapping, extra: Select[Any] | None) -> Selection:
    t, key = mapping.local, mapping.key
    modified = t.c[mapping.modified_field]
    pending_since = {
        str(r.local_id): r.since
        for r in conn.execute(
            select(P.c.local_id, P.c.since).where(P.c.mapping_name == mapping.name)
        )
    }
    changed = select(t).where(*_filters(mapping)).where(modified.is_not(None))
    if mapping.row.local_watermark is not None:
        # The overlap is re-read for rows committed late, but only rows whose change
        # this mapping has not synced yet come back: after a bulk import every row has
        # the same time, and an idle run must not read them all again.
        state = S.alias("state")
        changed = (
            changed.outerjoin(
                state,
                and_(state.c.mapping_name == mapping.name, state.c.local_id == cast(key, String)),
            )
            .where(modified >= mapping.row.local_watermark - WATERMARK_OVERLAP)
            .where(
                or_(
                    state.c.local_id.is_(None),
                    state.c.last_local_modified.is_distinct_from(modified),
                )
            )
        )
    rows = {mapping.local_id(r): r for r in conn.execute(changed.order_by(modified))}
    watermark = max((r._mapping[modified.name] for r in rows.values()), default=None)
    missing = [p for p in pending_since if p not in rows]
    python_type = key.type.python_type
    for start in range(0, len(missing), CHUNK):
        keys = [python_type(p) for p in missing[start : start + CHUNK]]
        for r in conn.execute(select(t).where(*_filters(mapping)).where(key.in_(keys))):
            rows[mapping.local_id(r)] = r
    if extra is not None:
        for r in conn.execute(extra):
            rows.setdefault(mapping.local_id(r), r)
    return Selection(list(rows.values()), watermark, pending_since)


def in_chunks(
    conn: Connection, mapping: Mapping, selection: Selection
) -> Iterator[list[Candidate]]:
    """The selection a chunk at a time, each with its couplings and states (two
    statements per chunk)."""
    modified_name = mapping.modified_field
    for start in range(0, len(selection.rows), CHUNK):
        rows = selection.rows[start : start + CHUNK]
        ids = [mapping.local_id(r) for r in rows]
        couplings = {
            str(c.local_id): c
            for c in conn.execute(
                select(C).where(
                    C.c.local_table == mapping.local_table,
                    C.c.dataverse_table == mapping.entity_set,
                    C.c.local_id.in_(ids),
                )
            )
        }
        states = {
            str(s.local_id): s
            for s in conn.execute(
                select(S).where(S.c.mapping_name == mapping.name, S.c.local_id.in_(ids))
            )
        }
        chunk = []
        for local_id, row in zip(ids, rows, strict=True):
            since = selection.pending_since.get(local_id)
            modified = row._mapping[modified_name]
            chunk.append(
                Candidate(
                    row,
                    local_id,
                    couplings.get(local_id),
                    states.get(local_id),
                    pending=since is not None,
                    retry_only=since is not None and (modified is None or modified <= since),
                )
            )
        yield chunk


def today_in(now: datetime, tz: Any) -> date:
    return now.astimezone(tz).date()
