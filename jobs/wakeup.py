"""The wake-up hook: "data of kind X changed" restarts the sleeping entries that handle X."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.models import ENTRIES
from domain.status import EntryStatus
from domain.transitions import plan_of, wake
from domain.wakeups import request_dispatch
from jobs.registry import JobRegistry, registry

E = ENTRIES


def data_changed(
    session: Session,
    kind: str,
    tz: tzinfo,
    *,
    jobs: JobRegistry = registry,
    now: datetime | None = None,
) -> list[str]:
    """Call in the transaction that changed the data; returns the codes of the woken entries.

    Sleeping entries are few, so they are read and matched against their job's
    `watches` here rather than kept in an index of their own.
    """
    now = now or utcnow()
    woken: list[str] = []
    sleeping = session.execute(
        select(E).where(E.c.status == EntryStatus.ON_HOLD_INACTIVITY).with_for_update()
    ).all()
    for entry in sleeping:
        definition = jobs.find(entry.job_name)
        if definition is None or kind not in definition.watches(entry.parameter_string):
            continue
        decision = wake(plan_of(entry, tz), now)
        session.execute(
            update(E)
            .where(E.c.id == entry.id, E.c.status == EntryStatus.ON_HOLD_INACTIVITY)
            .values(status=decision.status, earliest_start=decision.earliest_start, attempts=0)
        )
        woken.append(entry.code)
    if woken:
        request_dispatch(session)
    return woken
