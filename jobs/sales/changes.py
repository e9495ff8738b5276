"""Changes to the local sales tables that woke nobody (another program wrote them in
plain SQL): the scheduler's change probe for the sync entries. A light module: the
scheduler imports it without the sync job's clients."""

from __future__ import annotations

from sqlalchemy import Connection, exists, func, select

from domain.queue.models import JobQueueEntry
from domain.queue.status import EntryStatus
from domain.sales.defaults import BY_NAME
from domain.sales.integration import Direction, IntegrationTableMapping
from domain.sales.models import LOCAL_MODELS, table
from jobs.registry import registry


@registry.probe
def unsynced_tables(conn: Connection) -> set[str]:
    """Local tables holding a change newer than what their mapping last read: written by
    another program in plain SQL, which woke nobody. Costs one statement while no sync
    entry sleeps, and one indexed max() per mapping that sends, when one does."""
    entries = table(JobQueueEntry)
    sleeping = conn.execute(
        select(
            exists().where(
                entries.c.job_name == "dataverse-sync",
                entries.c.status == EntryStatus.ON_HOLD_INACTIVITY,
            )
        )
    ).scalar()
    if not sleeping:
        return set()
    mappings = table(IntegrationTableMapping)
    changed = set()
    for m in conn.execute(
        select(mappings.c.name, mappings.c.local_table, mappings.c.local_watermark).where(
            mappings.c.direction != Direction.FROM_DATAVERSE
        )
    ):
        spec, model = BY_NAME.get(m.name), LOCAL_MODELS.get(m.local_table)
        if model is None:
            continue
        column = table(model).c[spec.modified_field if spec else "modified_at"]
        newest = conn.execute(select(func.max(column))).scalar()
        if newest is not None and (m.local_watermark is None or newest > m.local_watermark):
            changed.add(str(m.local_table))
    return changed
