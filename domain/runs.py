"""The life of one run in the database: claim it, keep its lease, finish it.

A run is named by (entry id, run_seq). The scheduler bumps run_seq when it
dispatches; a worker may only start the run whose number its message carries,
and only once, so duplicate and stale messages run nothing.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from domain.models import ENTRIES, LOG_ENTRIES
from domain.status import EntryStatus, LogStatus
from domain.transitions import Decision, after_failure, after_success, plan_of
from domain.wakeups import request_dispatch

E = ENTRIES
L = LOG_ENTRIES

MAX_ERROR_MESSAGE = 2000
MAX_CALL_STACK = 8000


@dataclass(frozen=True)
class ClaimedRun:
    entry: Row[Any]
    log_id: int

    @property
    def run_id(self) -> str:
        return f"{self.entry.id}:{self.entry.run_seq}"


@dataclass(frozen=True)
class RunResult:
    succeeded: bool
    activity: bool = True
    counters: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    error_call_stack: str | None = None

    @classmethod
    def failure(cls, message: str, exc: BaseException | None = None) -> RunResult:
        stack = None
        if exc is not None:
            stack = "".join(traceback.format_exception(exc))[-MAX_CALL_STACK:]
        return cls(
            succeeded=False, error_message=message[:MAX_ERROR_MESSAGE], error_call_stack=stack
        )


@dataclass(frozen=True)
class FinishedRun:
    log_id: int
    decision: Decision | None  # None: the entry was changed meanwhile and kept as it is
    log_written: bool


def claim_run(
    session: Session, entry_id: int, run_seq: int, worker_id: str, lease: float, now: datetime
) -> ClaimedRun | None:
    """Start the run if this message is for the current dispatch and nobody started it."""
    entry = session.execute(
        update(E)
        .where(
            E.c.id == entry_id,
            E.c.run_seq == run_seq,
            E.c.status == EntryStatus.IN_PROCESS,
            E.c.started_at.is_(None),
        )
        .values(
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease),
            worker_id=worker_id,
            attempts=E.c.attempts + 1,
        )
        .returning(*E.c)
    ).one_or_none()
    if entry is None:
        return None
    log_id = session.execute(
        insert(L)
        .values(
            entry_id=entry.id,
            entry_code=entry.code,
            description=entry.description,
            job_name=entry.job_name,
            run_seq=entry.run_seq,
            attempt=entry.attempts,
            user_id=entry.user_id,
            worker_id=worker_id,
            started_at=now,
            status=LogStatus.IN_PROCESS,
            counters={},
        )
        .returning(L.c.id)
    ).scalar_one()
    return ClaimedRun(entry=entry, log_id=log_id)


def renew_leases(session: Session, worker_id: str, lease: float, now: datetime) -> int:
    """Heartbeat: extend the lease of every run this worker process has started."""
    result = session.execute(
        update(E)
        .where(
            E.c.worker_id == worker_id,
            E.c.status == EntryStatus.IN_PROCESS,
            E.c.started_at.is_not(None),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish_run(
    session: Session,
    entry_id: int,
    run_seq: int,
    log_id: int,
    result: RunResult,
    now: datetime,
    tz: tzinfo,
) -> FinishedRun:
    """Write the log entry and move the entry on by its retry / recurrence / inactivity rules.

    The entry row is locked and re-read, so schedule edits made while the job ran
    apply to the next run; if an admin put it on hold or the run was recovered as
    lost meanwhile, the entry is left as it is and only the log is completed.
    """
    entry = session.execute(select(E).where(E.c.id == entry_id).with_for_update()).one_or_none()
    log_status = LogStatus.SUCCESS if result.succeeded else LogStatus.ERROR
    written = session.execute(
        update(L)
        .where(L.c.id == log_id, L.c.status == LogStatus.IN_PROCESS)
        .values(
            ended_at=now,
            status=log_status,
            error_message=result.error_message,
            error_call_stack=result.error_call_stack,
            counters=result.counters,
        )
    ).rowcount  # type: ignore[attr-defined]
    ours = (
        entry is not None
        and entry.run_seq == run_seq
        and entry.status == EntryStatus.IN_PROCESS
        and entry.started_at is not None
    )
    if not ours:
        return FinishedRun(log_id, None, bool(written))
    assert entry is not None
    plan = plan_of(entry, tz)
    decision = (
        after_success(plan, result.activity, now) if result.succeeded else after_failure(plan, now)
    )
    session.execute(
        update(E)
        .where(E.c.id == entry_id, E.c.run_seq == run_seq)
        .values(
            status=decision.status,
            earliest_start=decision.earliest_start,
            attempts=decision.attempts,
            dispatched_at=None,
            started_at=None,
            lease_expires_at=None,
            worker_id=None,
            last_run_status=log_status.value,
            last_run_ended_at=now,
        )
    )
    if decision.status == EntryStatus.READY and (
        entry.category_code is not None or decision.earliest_start <= now
    ):
        request_dispatch(session)
    return FinishedRun(log_id, decision, bool(written))


def log_id_of_run(session: Session, entry_id: int, run_seq: int) -> int | None:
    return session.execute(
        select(L.c.id)
        .where(L.c.entry_id == entry_id, L.c.run_seq == run_seq)
        .order_by(L.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
