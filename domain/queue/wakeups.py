"""Data changed: wake the sleeping entries whose job handles that data.

Called in the transaction that changed the data (an item saved, an email
queued), so the entries wake exactly when the change commits. The entries of
watching jobs are few, so they are read and matched here rather than kept in an index.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.queue.dispatch import wake_entry
from domain.queue.models import ENTRIES
from domain.queue.notify import request_dispatch
from domain.queue.status import EntryStatus

entries = ENTRIES


_WATCHED = (EntryStatus.ON_HOLD_INACTIVITY, EntryStatus.READY, EntryStatus.IN_PROCESS)


def wake_watchers(
    session: Session,
    watches: Callable[[str, str], bool],
    tz: tzinfo,
    now: datetime,
    job_names: Collection[str],
) -> list[str]:
    """Wake every sleeping entry of `job_names` for which `watches(job_name, parameters)` is
    true; returns their codes. An entry whose rules cannot be applied is left asleep (the
    scheduler puts it in Error when its timeout passes): the caller's change never fails
    because of it.

    No change is lost to a watcher that is not asleep. Its row is locked, so a run that
    has not started yet starts after this change commits and sees it; a run that has
    started may have read the data before the change, so it is marked, and should it find
    nothing to do it wakes instead of falling asleep (runs.finish_run).
    """
    if not job_names:
        return []
    candidates = session.execute(
        select(entries.c.id, entries.c.job_name, entries.c.parameter_string).where(
            entries.c.job_name.in_(sorted(job_names)), entries.c.status.in_(_WATCHED)
        )
    ).all()
    watching = [row.id for row in candidates if watches(row.job_name, row.parameter_string)]
    if not watching:
        return []
    locked = session.execute(  # as they are now: a run may have ended or started meanwhile
        select(entries)
        .where(entries.c.id.in_(watching), entries.c.status.in_(_WATCHED))
        .order_by(entries.c.id)
        .with_for_update()
    ).all()
    conn = session.connection()
    woken: list[str] = []
    running = [entry.id for entry in locked if is_started(entry)]
    for entry in locked:
        if entry.status != EntryStatus.ON_HOLD_INACTIVITY:
            continue
        try:
            status = wake_entry(conn, entry, now, tz, EntryStatus.ON_HOLD_INACTIVITY)
        except (ArithmeticError, ValueError, TypeError):
            continue
        if status is not None:
            woken.append(entry.code)
    if running:
        conn.execute(
            update(entries).where(entries.c.id.in_(running)).values(changed_while_running=True)
        )
    if woken:
        request_dispatch(session)
    return woken


def is_started(entry: Any) -> bool:
    return entry.status == EntryStatus.IN_PROCESS and entry.started_at is not None
