"""Audit rows for changes made by a person: a session marked with `acting_as` records,
when it flushes, every created, changed or deleted job-queue entry and user, field by
field, with the old and the new value. Sessions of the scheduler and the workers carry no
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
from domain.users.models import User

ENTRY_FIELDS = (EDITABLE - {"weekdays"}) | set(WEEKDAY_COLUMNS) | {"status", "code"}
# What is audited of each kind, by (object type, key attribute, fields); a user's
# password hash is never among them.
AUDITED: dict[type, tuple[str, str, frozenset[str]]] = {
    JobQueueEntry: ("job_queue_entry", "code", frozenset(ENTRY_FIELDS)),
    User: ("user", "name", frozenset({"role"})),
}
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

    def row(obj: Any, action: str, field: str = "", old: Any = None, new: Any = None) -> AuditEntry:
        kind, key, _fields = AUDITED[type(obj)]
        return AuditEntry(
            at=now,
            actor=actor,
            surface=surface,
            object_type=kind,
            object_key=str(getattr(obj, key)),
            action=action,
            field=field,
            old_value=_text(old),
            new_value=_text(new),
        )

    rows: list[AuditEntry] = []
    for obj in session.new:
        if type(obj) in AUDITED:
            rows.append(row(obj, "created"))
    for obj in session.deleted:
        if type(obj) in AUDITED:
            rows.append(row(obj, "deleted"))
    for obj in session.dirty:
        if type(obj) not in AUDITED:
            continue
        state = inspect(obj)
        for name in sorted(AUDITED[type(obj)][2]):
            history = state.attrs[name].history
            if not history.has_changes():
                continue
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if _text(old) != _text(new):
                rows.append(row(obj, "changed", name, old, new))
    session.add_all(rows)
