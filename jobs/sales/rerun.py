"""An admin's requests to the sync entries: synchronize one record now, retry every
failed record, run a full synchronization. None runs a mapping in the caller's process:
each queues the work and sets the mapping's entry to run now, so the job queue runs it
(in the category's order, never twice at once) and logs it like any run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from domain.queue import entries as ops
from domain.queue.limits import EntryError
from domain.sales.defaults import BY_NAME, DEFAULTS
from domain.sales.integration import (
    IntegrationTableMapping,
    PendingRecord,
    PendingRow,
    SyncResult,
)
from domain.sales.models import table
from jobs.sales.connection import SWITCHED_ENTRIES, switched_on, switches
from jobs.sales.mapping import load_mapping

M, P, PR = table(IntegrationTableMapping), table(PendingRecord), table(PendingRow)


class RerunError(ValueError):
    pass


def run_now(session: Session, mapping: str, now: datetime) -> str:
    """The mapping's entry runs now (if it is running, its next run takes the work);
    returns its code."""
    spec = BY_NAME.get(mapping)
    if spec is None:
        raise RerunError(f"no integration table mapping named {mapping!r}")
    try:
        ops.run_now(session, spec.entry_code, now)
    except EntryError as exc:
        if "running already" not in str(exc):
            raise
        # Running now: the records queued here are taken by its next run.
    return spec.entry_code


def sync_record(session: Session, mapping: str, local_id: str, now: datetime) -> str:
    """Queue one record for its mapping and run the mapping's entry now."""
    found = load_mapping(session.connection(), mapping) if mapping in BY_NAME else None
    if found is None:
        raise RerunError(f"no integration table mapping named {mapping!r}")
    key = found.key
    if session.execute(select(key).where(key == local_id)).first() is None:
        raise RerunError(f"no {found.local_table} record {local_id!r}")
    session.execute(delete(P).where(P.c.mapping_name == mapping, P.c.local_id == local_id))
    session.execute(insert(P).values(mapping_name=mapping, local_id=local_id,
                                     result=SyncResult.SKIPPED,
                                     reason="synchronize now (requested)", since=now))  # fmt: skip
    return run_now(session, mapping, now)


def retry_failed(session: Session, now: datetime) -> dict[str, int]:
    """Every mapping with failed records runs now (failed records are retried by every
    run, but a run whose only work they are sleeps; this wakes it)."""
    counts: dict[str, int] = {}
    failed = select(P.c.mapping_name).where(P.c.result == SyncResult.FAILED)
    read_again = select(PR.c.mapping_name)  # rows from Dataverse that failed to come in
    for name in session.execute(failed.union_all(read_again)).scalars():
        counts[name] = counts.get(name, 0) + 1
    for name in counts:
        run_now(session, name, now)
    return counts


def full_sync(session: Session, now: datetime) -> list[str]:
    """Business Central's "Run Full Synchronization": every mapping forgets its
    watermarks and delta link, so its next run reads and compares all records; the
    entries run now, in dependency order (their category runs one at a time, by
    priority). Couplings are kept: nothing is created twice."""
    session.execute(update(M).values(local_watermark=None, dataverse_watermark=None,
                                     dataverse_delta_link=None))  # fmt: skip
    state = switches(session)
    return [
        run_now(session, spec.name, now)
        for spec in DEFAULTS
        if spec.entry_code not in SWITCHED_ENTRIES or switched_on(state, spec.entry_code)
    ]
