"""Audit rows for changes made by a person: a session marked with `acting_as` records,
when it flushes, every created, changed or deleted job-queue entry, field by field,
with the old and the new value. Sessions of the scheduler and the workers carry no
actor and record nothing (a run's own bookkeeping is in the log entries)."""

from __future__ import annotations

from datetime import date, datetime, time
from enum import Enum
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from domain.audit.models import AuditEntry
from domain.clock import utcnow
from domain.queue.entries import EDITABLE
from domain.queue.models import JobQueueEntry
from domain.queue.transitions import WEEKDAY_COLUMNS

ENTRY_FIELDS = (EDITABLE - {"weekdays"}) | set(WEEKDAY_COLUMNS) | {"status", "code"}
SURFACES = ("console", "api", "cli")


def acting_as(session: Session, actor: str, surface: str) -> Session:
    """Marks the session's changes as made by `actor` through `surface`."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}")
    session.info["actor"] = (actor, surface)
    return session


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


@event.listens_for(Session, "before_flush")
def _record(session: Session, _context: Any, _instances: Any) -> None:
    who = session.info.get("actor")
    if who is None:
        return
    actor, surface = who
    now = utcnow()

    def row(
        entry: JobQueueEntry, action: str, field: str = "", old: Any = None, new: Any = None
    ) -> AuditEntry:
        return AuditEntry(
            at=now,
            actor=actor,
            surface=surface,
            object_type="job_queue_entry",
            object_key=entry.code,
            action=action,
            field=field,
            old_value=_text(old),
            new_value=_text(new),
        )

    rows: list[AuditEntry] = []
    for obj in session.new:
        if isinstance(obj, JobQueueEntry):
            rows.append(row(obj, "created"))
    for obj in session.deleted:
        if isinstance(obj, JobQueueEntry):
            rows.append(row(obj, "deleted"))
    for obj in session.dirty:
        if not isinstance(obj, JobQueueEntry):
            continue
        state = inspect(obj)
        for name in sorted(ENTRY_FIELDS):
            history = state.attrs[name].history
            if not history.has_changes():
                continue
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if _text(old) != _text(new):
                rows.append(row(obj, "changed", name, old, new))
    session.add_all(rows)
