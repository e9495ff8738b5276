"""The wake-up hook: "data of kind X changed" restarts the sleeping entries that handle X."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.queue.wakeups import wake_watchers
from jobs.registry import JobRegistry, registry


def data_changed(
    session: Session,
    kind: str,
    tz: tzinfo,
    *,
    jobs: JobRegistry = registry,
    now: datetime | None = None,
) -> list[str]:
    """Call in the transaction that changed the data; returns the codes of the woken entries
    (those whose job `watches` the kind, given the entry's parameters)."""

    def watches(job_name: str, parameters: str) -> bool:
        definition = jobs.find(job_name)
        return definition is not None and kind in definition.watches(parameters)

    return wake_watchers(session, watches, tz, now or utcnow(), jobs.watching_names())
