"""The life of one run in the database: claim it, keep its lease, finish it.

A run is named by (entry id, run_seq). The scheduler bumps run_seq when it
dispatches; a worker may only start the run whose number its message carries,
and only once, so duplicate and stale messages run nothing.

These are the hot path of the system, so they take a Connection (no ORM) and on
PostgreSQL each phase is one statement: claim = update the entry and insert its
log row; finish = complete the log row and move the entry on.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    tuple_,
    update,
)

from domain.queue.models import ENTRIES, LOG_ENTRIES
from domain.queue.notify import notify_in_transaction
from domain.queue.prepared import PreparedStatement
from domain.queue.status import EntryStatus, LogStatus
from domain.queue.transitions import Decision, after_failure, after_success, plan_of

E = ENTRIES
L = LOG_ENTRIES

MAX_ERROR_MESSAGE = 2000
MAX_CALL_STACK = 8000


def dispatched_not_started() -> tuple[ColumnElement[bool], ...]:
    """A run the scheduler sent a message for that no worker has started yet."""
    return (E.c.status == EntryStatus.IN_PROCESS, E.c.started_at.is_(None))


def is_dispatched_not_started(entry: Any) -> bool:
    """The same, for an entry in hand (an ORM object or a row)."""
    return bool(entry.status == EntryStatus.IN_PROCESS and entry.started_at is None)


def started_run() -> tuple[ColumnElement[bool], ...]:
    """A run a worker has started and holds a lease on."""
    return (E.c.status == EntryStatus.IN_PROCESS, E.c.started_at.is_not(None))


@dataclass(frozen=True)
class ClaimedRun:
    entry: Any  # the entry as it was when the run started (a row with its columns)
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
    decision: Decision | None  # None: the entry was changed meanwhile and kept as it is
    log_written: bool
    wake_scheduler: bool  # another entry may be due at once (its category is free now)
    result: RunResult  # as recorded: a run whose entry could not be rescheduled failed


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _p(name: str, column: Any) -> Any:
    return bindparam(name, type_=column.type)


# Statements are built once: building SQLAlchemy constructs costs more than running them.
_CLAIM = (
    update(E)
    .where(
        E.c.id == bindparam("b_entry"),
        E.c.run_seq == bindparam("b_seq"),
        *dispatched_not_started(),
    )
    .values(
        started_at=_p("b_now", E.c.started_at),
        lease_expires_at=_p("b_lease", E.c.lease_expires_at),
        worker_id=_p("b_worker", E.c.worker_id),
        attempts=E.c.attempts + 1,
        changed_while_running=False,  # this run reads the data as it is from now on
    )
    .returning(*E.c)
)
_LOG_COLUMNS = ["entry_id", "entry_code", "description", "job_name", "run_seq", "attempt"]
_LOG_COLUMNS += ["user_id", "worker_id", "started_at", "status", "counters"]
_INSERT_LOG = insert(L).values({c: _p(f"b_{c}", L.c[c]) for c in _LOG_COLUMNS}).returning(L.c.id)


@cache
def _claim_pg() -> Any:
    """PostgreSQL: claim the entry and insert its log row in one statement."""
    claimed = _CLAIM.cte("claimed")
    source = select(
        claimed.c.id,
        claimed.c.code,
        claimed.c.description,
        claimed.c.job_name,
        claimed.c.run_seq,
        claimed.c.attempts,
        claimed.c.user_id,
        _p("b_worker", L.c.worker_id),
        _p("b_now", L.c.started_at),
        _p("b_log_status", L.c.status),
        _p("b_no_counters", L.c.counters),
    )
    logged = insert(L).from_select(_LOG_COLUMNS, source).returning(L.c.id).cte("logged")
    one_row = claimed.join(logged, true())  # one claimed row, one log row
    return select(claimed, logged.c.id.label("log_id")).select_from(one_row)


_CLAIM_PREPARED = PreparedStatement("jobqueue_claim_run", _claim_pg)


def claim_run(
    conn: Connection, entry_id: int, run_seq: int, worker_id: str, lease: float, now: datetime
) -> ClaimedRun | None:
    """Start the run if this message is for the current dispatch and nobody started it."""
    params = {
        "b_entry": entry_id,
        "b_seq": run_seq,
        "b_now": now,
        "b_lease": now + timedelta(seconds=lease),
        "b_worker": worker_id,
    }
    if _postgres(conn):
        params |= {"b_log_status": LogStatus.IN_PROCESS, "b_no_counters": {}}
        rows = _CLAIM_PREPARED.execute(conn, params)
        return ClaimedRun(entry=rows[0], log_id=rows[0].log_id) if rows else None
    row = conn.execute(_CLAIM, params).one_or_none()
    if row is None:
        return None
    log_id = conn.execute(
        _INSERT_LOG,
        {
            "b_entry_id": row.id,
            "b_entry_code": row.code,
            "b_description": row.description,
            "b_job_name": row.job_name,
            "b_run_seq": row.run_seq,
            "b_attempt": row.attempts,
            "b_user_id": row.user_id,
            "b_worker_id": worker_id,
            "b_started_at": now,
            "b_status": LogStatus.IN_PROCESS,
            "b_counters": {},
        },
    ).scalar_one()
    return ClaimedRun(entry=row, log_id=log_id)


def renew_leases(
    conn: Connection,
    runs: Sequence[tuple[int, int]],
    worker_id: str,
    lease: float,
    now: datetime,
) -> set[tuple[int, int]]:
    """Heartbeat: extend the leases of exactly these runs (entry id, run_seq) while this
    worker still holds them. Returns the runs renewed; a missing one was recovered or
    finished meanwhile, and its job must stop."""
    if not runs:
        return set()
    renewed = conn.execute(
        update(E)
        .where(
            tuple_(E.c.id, E.c.run_seq).in_(list(runs)),
            E.c.worker_id == worker_id,
            *started_run(),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease))
        .returning(E.c.id, E.c.run_seq)
    ).all()
    return {(row.id, row.run_seq) for row in renewed}


def _decide(entry: Any, result: RunResult, now: datetime, tz: tzinfo) -> tuple[Decision, RunResult]:
    """The next state by the rules; a rule that raises (a schedule that overflows, a corrupt
    row) puts this entry alone in Error, and the log says why."""
    try:
        plan = plan_of(entry, tz)
        if result.succeeded:
            changed = bool(getattr(entry, "changed_while_running", False))
            return after_success(plan, result.activity, now, changed), result
        return after_failure(plan, now), result
    except Exception as exc:
        outcome = "succeeded" if result.succeeded else f"failed ({result.error_message})"
        reason = (
            f"the run {outcome}, but its next run could not be scheduled: "
            f"{type(exc).__name__}: {exc}"
        )
        failed = RunResult.failure(reason, exc)
        decision = Decision(EntryStatus.ERROR, entry.earliest_start, entry.attempts)
        return decision, RunResult(
            succeeded=False,
            counters=result.counters,
            error_message=failed.error_message,
            error_call_stack=result.error_call_stack or failed.error_call_stack,
        )


def _entry_values(decision: Decision, result: RunResult, now: datetime) -> dict[str, Any]:
    """Parameters of the entry's move; the last run status follows the decision, so a run
    whose entry could not be rescheduled shows as an error."""
    return {
        "b_status": decision.status,
        "b_earliest": decision.earliest_start,
        "b_attempts": decision.attempts,
        "b_last_status": (LogStatus.SUCCESS if result.succeeded else LogStatus.ERROR).value,
        "b_now": now,
    }


def _log_values(result: RunResult) -> dict[str, Any]:
    return {
        "b_log_status": LogStatus.SUCCESS if result.succeeded else LogStatus.ERROR,
        "b_error": result.error_message,
        "b_stack": result.error_call_stack,
        "b_counters": result.counters,
    }


_CURRENT_RUN = (
    E.c.id == bindparam("b_entry"),
    E.c.run_seq == bindparam("b_seq"),
    *started_run(),
)
_MOVE_VALUES = {
    "status": _p("b_status", E.c.status),
    "earliest_start": _p("b_earliest", E.c.earliest_start),
    "attempts": bindparam("b_attempts"),
    "dispatched_at": None,
    "started_at": None,
    "lease_expires_at": None,
    "worker_id": None,
    "last_run_status": bindparam("b_last_status"),
    "last_run_ended_at": _p("b_now", E.c.last_run_ended_at),
    "changed_while_running": False,
}
# The fast path applies a decision made from the claimed snapshot, so it stands back when
# an admin edited the entry or its data changed during the run (wakeups marks it).
_MOVE = (
    update(E)
    .where(
        *_CURRENT_RUN,
        E.c.revision == bindparam("b_revision"),
        E.c.changed_while_running.is_(False),
    )
    .values(_MOVE_VALUES)
)
_MOVE_LOCKED = update(E).where(*_CURRENT_RUN).values(_MOVE_VALUES)
_LOCK_CURRENT = select(E).where(*_CURRENT_RUN).with_for_update()
_COMPLETE = (
    update(L)
    .where(L.c.id == bindparam("b_log"), L.c.status == LogStatus.IN_PROCESS)
    .values(
        ended_at=_p("b_now", L.c.ended_at),
        status=_p("b_log_status", L.c.status),
        error_message=bindparam("b_error"),
        error_call_stack=bindparam("b_stack"),
        counters=_p("b_counters", L.c.counters),
    )
)


@cache
def _finish_pg() -> Any:
    """PostgreSQL: move the entry (if unchanged) and complete its log row in one statement."""
    moved = _MOVE.returning(E.c.id).cte("moved")
    return _COMPLETE.add_cte(moved).returning(
        select(func.count()).select_from(moved).scalar_subquery()
    )


def _wakes(entry: Any, decision: Decision, now: datetime) -> bool:
    """Tick now when the run freed its category (the next entry of it may start, whatever
    became of this one: Ready, asleep, Error or Finished) or left the entry due at once."""
    if entry.category_code is not None:
        return True
    return decision.status == EntryStatus.READY and decision.earliest_start <= now


_FINISH_PREPARED = PreparedStatement("jobqueue_finish_run", _finish_pg)


def finish_run(
    conn: Connection, claimed: ClaimedRun, result: RunResult, now: datetime, tz: tzinfo
) -> FinishedRun:
    """Complete the log row and move the entry on by its retry / recurrence / inactivity rules
    (in one transaction).

    Fast path (`finish_fast`): the decision is made from the entry as claimed, and
    applied only if no admin changed the entry since (its revision) and the run is
    still its current one. Otherwise (`finish_locked`) the entry is locked and
    re-read, so schedule edits made while the job ran apply to the next run; if an
    admin put it on hold or the run was recovered as lost meanwhile, the entry is
    left as it is.
    """
    finished, log_written = finish_fast(conn, claimed, result, now, tz)
    return finished or finish_locked(conn, claimed, result, now, tz, log_written)


def finish_fast(
    conn: Connection, claimed: ClaimedRun, result: RunResult, now: datetime, tz: tzinfo
) -> tuple[FinishedRun | None, bool]:
    """The fast path: (the finished run, or None when the entry changed since the claim;
    whether the log row was completed). On PostgreSQL it is one statement, so it may run
    in autocommit: one round trip to end a run."""
    snapshot = claimed.entry
    decision, result = _decide(snapshot, result, now, tz)
    params = _finish_params(claimed, result, now) | _entry_values(decision, result, now)
    if _postgres(conn):
        rows = _FINISH_PREPARED.execute(conn, params)
        log_written, entry_moved = bool(rows), bool(rows and rows[0][0])
    else:
        entry_moved = bool(conn.execute(_MOVE, params).rowcount)
        log_written = bool(conn.execute(_COMPLETE, params).rowcount)
    if not entry_moved:
        return None, log_written
    return _finished(conn, snapshot, decision, log_written, result, now), log_written


def finish_locked(
    conn: Connection,
    claimed: ClaimedRun,
    result: RunResult,
    now: datetime,
    tz: tzinfo,
    log_written: bool,
) -> FinishedRun:
    """The slow path, in a transaction: lock the entry, decide from it as it is now."""
    snapshot = claimed.entry
    run = {"b_entry": snapshot.id, "b_seq": snapshot.run_seq, "b_now": now}
    entry = conn.execute(_LOCK_CURRENT, run).one_or_none()
    if entry is None:
        _, result = _decide(snapshot, result, now, tz)
        if not log_written:
            conn.execute(_COMPLETE, _finish_params(claimed, result, now))
        return FinishedRun(None, log_written, False, result)
    decision, result = _decide(entry, result, now, tz)
    conn.execute(_MOVE_LOCKED, run | _entry_values(decision, result, now))
    if not log_written:
        log_written = bool(conn.execute(_COMPLETE, _finish_params(claimed, result, now)).rowcount)
    return _finished(conn, entry, decision, log_written, result, now)


def _finish_params(claimed: ClaimedRun, result: RunResult, now: datetime) -> dict[str, Any]:
    entry = claimed.entry
    return {
        "b_entry": entry.id,
        "b_seq": entry.run_seq,
        "b_now": now,
        "b_revision": entry.revision,
        **_log_values(result),
        "b_log": claimed.log_id,
    }


def _finished(
    conn: Connection,
    entry: Any,
    decision: Decision,
    log_written: bool,
    result: RunResult,
    now: datetime,
) -> FinishedRun:
    wake = _wakes(entry, decision, now)
    if wake:
        notify_in_transaction(conn)
    return FinishedRun(decision, log_written, wake, result)


_REMOVE_ONE_OFF = delete(E).where(
    E.c.id == bindparam("b_entry"),
    E.c.run_seq == bindparam("b_seq"),
    E.c.status == EntryStatus.FINISHED,
    E.c.recurring.is_(False),
)


def remove_finished_one_off(conn: Connection, finished: FinishedRun, claimed: ClaimedRun) -> bool:
    """Business Central deletes a one-off entry that ran successfully; its log entries
    stay (they name the entry by id and code). Only an entry still Finished by this run
    goes: one an admin made recurring or set Ready again meanwhile is kept."""
    decision = finished.decision
    if decision is None or decision.status != EntryStatus.FINISHED or not finished.result.succeeded:
        return False
    run = {"b_entry": claimed.entry.id, "b_seq": claimed.entry.run_seq}
    return bool(conn.execute(_REMOVE_ONE_OFF, run).rowcount)


def lost_run(conn: Connection, entry_id: int, run_seq: int, now: datetime) -> ClaimedRun | None:
    """Lock a started run whose lease has run out; None if it finished or was renewed."""
    entry = conn.execute(
        select(E)
        .where(
            E.c.id == entry_id,
            E.c.run_seq == run_seq,
            *started_run(),
            E.c.lease_expires_at < now,
        )
        .with_for_update()
    ).one_or_none()
    if entry is None:
        return None
    log_id = conn.execute(
        select(L.c.id)
        .where(L.c.entry_id == entry_id, L.c.run_seq == run_seq)
        .order_by(L.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return ClaimedRun(entry=entry, log_id=log_id or 0)


def hand_back(
    conn: Connection, claimed: ClaimedRun, result: RunResult, now: datetime, tz: tzinfo
) -> None:
    """A shutting-down worker gave up the run: log it, and make the entry Ready again at
    once with its attempt not spent."""
    entry = claimed.entry
    finished = finish_run(conn, claimed, result, now, tz)
    if finished.decision is not None:
        conn.execute(
            update(E)
            .where(E.c.id == entry.id, E.c.run_seq == entry.run_seq)
            .values(
                status=EntryStatus.READY,
                earliest_start=now,
                attempts=max(0, entry.attempts - 1),
            )
        )


def fail_entry(
    conn: Connection,
    entry_id: int,
    reason: str,
    now: datetime,
    *,
    run_seq: int | None = None,
    log_id: int | None = None,
) -> bool:
    """The last resort when an entry's rules or its finish cannot be applied: Error, its run
    fields cleared, and the reason in its log (the run's row, else a new one).

    It computes nothing from the entry's schedule, so it works on any row; with
    `run_seq` it only touches that run (a recovered run is not failed twice).
    """
    where = [E.c.id == entry_id]
    if run_seq is not None:
        where += [E.c.run_seq == run_seq, *started_run()]
    moved = conn.execute(
        update(E)
        .where(*where)
        .values(
            status=EntryStatus.ERROR,
            dispatched_at=None,
            started_at=None,
            lease_expires_at=None,
            worker_id=None,
            last_run_status=LogStatus.ERROR.value,
            last_run_ended_at=now,
        )
        .returning(E.c.code, E.c.description, E.c.job_name, E.c.run_seq, E.c.attempts, E.c.user_id)
    ).one_or_none()
    if moved is None:
        return False
    message = reason[:MAX_ERROR_MESSAGE]
    completed = 0
    if log_id:
        completed = conn.execute(
            _COMPLETE,
            {**_log_values(RunResult(False, error_message=message)), "b_log": log_id, "b_now": now},
        ).rowcount
    if not completed:
        conn.execute(
            insert(L).values(
                entry_id=entry_id,
                entry_code=moved.code,
                description=moved.description,
                job_name=moved.job_name,
                run_seq=moved.run_seq,
                attempt=moved.attempts,
                user_id=moved.user_id,
                started_at=now,
                ended_at=now,
                status=LogStatus.ERROR,
                error_message=message,
                counters={},
            )
        )
    return True


def start_foreground_run(conn: Connection, code: str, user: str, worker: str, now: datetime) -> Any:
    """Business Central's "Run once (foreground)": a log entry for a run in the caller's
    process; the entry's status and schedule stay as they are. Refused while the entry
    runs (one entry never runs twice at once). Returns (entry row, log id)."""
    from domain.queue.limits import EntryError

    entry = conn.execute(select(E).where(E.c.code == code)).one_or_none()
    if entry is None:
        raise EntryError(f"no job queue entry with code {code!r}")
    if entry.status == EntryStatus.IN_PROCESS:
        raise EntryError(f"entry {code!r} is running; run it once when that run has ended")
    log_id = conn.execute(
        insert(L)
        .values(
            entry_id=entry.id,
            entry_code=entry.code,
            description=entry.description,
            job_name=entry.job_name,
            run_seq=entry.run_seq,
            attempt=0,
            user_id=user[:50],
            worker_id=worker,
            started_at=now,
            status=LogStatus.IN_PROCESS,
            counters={},
        )
        .returning(L.c.id)
    ).scalar_one()
    return entry, int(log_id)


def finish_foreground_run(conn: Connection, log_id: int, result: RunResult, now: datetime) -> None:
    conn.execute(
        update(L)
        .where(L.c.id == log_id)
        .values(
            ended_at=now,
            status=LogStatus.SUCCESS if result.succeeded else LogStatus.ERROR,
            error_message=result.error_message,
            error_call_stack=result.error_call_stack,
            counters=result.counters,
        )
    )
