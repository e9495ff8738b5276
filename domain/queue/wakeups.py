"""Data changed: wake the sleeping entries whose job handles that data.

Called in the transaction that changed the data (an item saved, an email
queued), so the entries wake exactly when the change commits. Sleeping entries
are few, so they are read and matched here rather than kept in an index.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.queue.dispatch import wake_entry
from domain.queue.models import ENTRIES
from domain.queue.notify import request_dispatch
from domain.queue.status import EntryStatus

entries = ENTRIES


def wake_watchers(
    session: Session,
    watches: Callable[[str, str], bool],
    tz: tzinfo,
    now: datetime,
) -> list[str]:
    """Wake every sleeping entry for which `watches(job_name, parameters)` is true; returns
    their codes. An entry whose rules cannot be applied is left asleep (the scheduler puts
    it in Error when its timeout passes): the caller's change never fails because of it."""
    sleeping = session.execute(
        select(entries).where(entries.c.status == EntryStatus.ON_HOLD_INACTIVITY).with_for_update()
    ).all()
    conn = session.connection()
    woken: list[str] = []
    for entry in sleeping:
        if not watches(entry.job_name, entry.parameter_string):
            continue
        try:
            status = wake_entry(conn, entry, now, tz, EntryStatus.ON_HOLD_INACTIVITY)
        except (ArithmeticError, ValueError, TypeError):
            continue
        if status is not None:
            woken.append(entry.code)
    if woken:
        request_dispatch(session)
    return woken
