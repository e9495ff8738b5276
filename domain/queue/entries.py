"""Admin operations on job-queue entries: add, edit, hold, ready, run now, delete.

Each runs in the caller's transaction and validates everything (the field
limits of `limits`, the job's own parameter validator, the schedule) before it
writes, so bad input changes nothing. A row another session holds is waited for
briefly, then refused with a message that says so. The command line, the demo
and later the console and the API call these, never SQL of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy import text as sql_text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from domain.queue import telemetry
from domain.queue.limits import (
    EntryError,
    EntryFieldError,
    check_entry,
    check_field,
    check_moment,
)
from domain.queue.models import JobQueueCategory, JobQueueEntry, JobQueueLogEntry
from domain.queue.notify import request_dispatch
from domain.queue.recurrence import is_expired
from domain.queue.runs import is_dispatched_not_started
from domain.queue.status import EntryStatus
from domain.queue.transitions import WEEKDAY_COLUMNS, plan_of, recurrence_of, wake

SCHEDULE_FIELDS = frozenset(
    {
        "recurring",
        "next_run_date_formula",
        "reference_starting_time",
        "minutes_between_runs",
        "weekdays",
        "starting_time",
        "ending_time",
        "earliest_start",
        "expiration",
    }
)
EDITABLE = SCHEDULE_FIELDS | {
    "description",
    "job_name",
    "parameter_string",
    "maximum_attempts",
    "rerun_delay_seconds",
    "job_timeout_seconds",
    "inactivity_timeout_minutes",
    "category_code",
    "priority",
    "user_id",
    "notify_on_failure",
    "notify_after_failures",
    "notify_on_success",
    "notify_recipients",
}


# How long an admin operation waits for an entry another session holds (a run finishing).
LOCK_TIMEOUT_MS = 3000


class JobDefinitionLike(Protocol):
    @property
    def validate(self) -> Callable[[str], None]: ...


class JobCatalog(Protocol):
    """What the operations need of the job registry: a job by name (LookupError if none),
    whose `validate` raises ValueError for parameters that do not suit it."""

    def get(self, name: str) -> JobDefinitionLike: ...


@dataclass(frozen=True)
class EntryView:
    entry: JobQueueEntry
    last_log: JobQueueLogEntry | None


def get_entry(session: Session, code: str, *, lock: bool = False) -> JobQueueEntry:
    """The entry by code; with `lock`, held for this transaction (waiting briefly)."""
    stmt = select(JobQueueEntry).where(JobQueueEntry.code == code)
    if lock:
        stmt = stmt.with_for_update()
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sql_text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
    try:
        entry = session.execute(stmt).scalar_one_or_none()
    except OperationalError as exc:
        from runtime.db_errors import is_lock_timeout

        if is_lock_timeout(exc):
            raise EntryError(
                f"entry {code!r} is busy: another session holds it (a run finishing or "
                f"another change) for more than {LOCK_TIMEOUT_MS // 1000} s; try again"
            ) from None
        raise
    if entry is None:
        raise EntryError(f"no job queue entry with code {code!r}")
    return entry


def _apply(
    session: Session, entry: JobQueueEntry, changes: dict[str, Any], jobs: JobCatalog
) -> None:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise EntryError(f"unknown field {sorted(unknown)[0]!r}")
    changes = _formula_or_cadence(check_entry(changes))
    category = changes.get("category_code")
    if category is not None and session.get(JobQueueCategory, category) is None:
        raise EntryError(f"no job queue category with code {category!r}")
    entry.revision = (entry.revision or 0) + 1
    for key, value in changes.items():
        if key == "weekdays":
            for index, column in enumerate(WEEKDAY_COLUMNS):
                setattr(entry, column, index in value)
        else:
            setattr(entry, key, value)
    try:
        jobs.get(entry.job_name).validate(entry.parameter_string)
    except LookupError as exc:
        raise EntryFieldError("job_name", str(exc).strip("'\"")) from None
    except ValueError as exc:
        raise EntryFieldError("parameter_string", str(exc)) from None
    if entry.recurring and not any(getattr(entry, c) for c in WEEKDAY_COLUMNS):
        raise EntryError("a recurring entry needs at least one weekday to run on")


def _formula_or_cadence(changes: dict[str, Any]) -> dict[str, Any]:
    """As in Business Central, a next run date formula clears the weekday flags and the
    minutes between runs (here: every weekday, no minutes, since the formula decides),
    and setting either of those clears the formula."""
    if changes.get("next_run_date_formula"):
        if changes.get("minutes_between_runs") or "weekdays" in changes:
            raise EntryFieldError(
                "next_run_date_formula",
                "set either a formula or weekdays and minutes between runs, not both",
            )
        return changes | {"minutes_between_runs": 0, "weekdays": frozenset(range(7))}
    if "weekdays" in changes or changes.get("minutes_between_runs"):
        return changes | {"next_run_date_formula": None}
    return changes


def _reschedule(entry: JobQueueEntry, now: datetime, tz: tzinfo, explicit_start: bool) -> None:
    """Keep the next run inside the (new) window; a schedule with no run left is refused."""
    recurrence = recurrence_of(entry, tz)
    start = entry.earliest_start if explicit_start else max(entry.earliest_start, now)
    if not entry.recurring:
        if is_expired(entry.expiration, start):
            raise EntryError(
                "the earliest start is after the expiration; the entry would never run"
            )
        return
    fitted = recurrence.fit(start)
    if fitted is None:
        raise EntryError("the schedule leaves no moment to run (weekdays, window and expiration)")
    entry.earliest_start = fitted


def _runs_as_whoever_readied(session: Session, entry: JobQueueEntry) -> None:
    """As in Business Central, an entry runs as the person who set it Ready: the user of
    a session marked with who acts (console, API, command line); system sessions (the
    scheduler, the set-up of shipped entries) leave it as it is."""
    actor = session.info.get("actor")
    if actor:
        entry.user_id = check_field("user_id", str(actor[0])[:50])


def _reissue_if_dispatched(entry: JobQueueEntry) -> None:
    """A dispatched run that has not started yet is withdrawn: its message becomes stale."""
    if is_dispatched_not_started(entry):
        entry.run_seq += 1
        entry.status = EntryStatus.READY
        entry.dispatched_at = None


def add_entry(
    session: Session,
    code: str,
    job_name: str,
    changes: dict[str, Any],
    jobs: JobCatalog,
    now: datetime,
    tz: tzinfo,
) -> JobQueueEntry:
    code = check_field("code", code.strip())
    check_field("job_name", job_name)
    if session.execute(select(JobQueueEntry.id).where(JobQueueEntry.code == code)).first():
        raise EntryError(f"a job queue entry with code {code!r} exists already")
    entry = JobQueueEntry(
        code=code,
        job_name=job_name,
        description="",
        parameter_string="",
        status=EntryStatus.READY,
        recurring=False,
        minutes_between_runs=0,
        earliest_start=now,
        maximum_attempts=3,
        attempts=0,
        rerun_delay_seconds=60,
        job_timeout_seconds=12 * 3600,
        inactivity_timeout_minutes=0,
        priority=0,
        user_id="",
        revision=0,
        run_seq=0,
        **{column: True for column in WEEKDAY_COLUMNS},
    )
    _apply(session, entry, changes, jobs)
    _reschedule(entry, now, tz, explicit_start="earliest_start" in changes)
    if "user_id" not in changes:
        _runs_as_whoever_readied(session, entry)
    session.add(entry)
    session.flush()
    request_dispatch(session)
    return entry


def edit_entry(
    session: Session,
    code: str,
    changes: dict[str, Any],
    jobs: JobCatalog,
    now: datetime,
    tz: tzinfo,
) -> JobQueueEntry:
    entry = get_entry(session, code, lock=True)
    _apply(session, entry, changes, jobs)
    _reissue_if_dispatched(entry)
    if SCHEDULE_FIELDS & set(changes) and entry.status == EntryStatus.READY:
        _reschedule(entry, now, tz, explicit_start="earliest_start" in changes)
    request_dispatch(session)
    return entry


def put_entry(
    session: Session,
    code: str,
    job_name: str,
    changes: dict[str, Any],
    jobs: JobCatalog,
    now: datetime,
    tz: tzinfo,
) -> JobQueueEntry:
    """Add the entry, or edit it to these values if it exists (set-up commands re-run)."""
    exists = session.execute(select(JobQueueEntry.id).where(JobQueueEntry.code == code)).first()
    if exists is None:
        return add_entry(session, code, job_name, changes, jobs, now, tz)
    return edit_entry(session, code, {**changes, "job_name": job_name}, jobs, now, tz)


def set_on_hold(session: Session, code: str) -> JobQueueEntry:
    """On Hold at once; a running job finishes, but its entry stays on hold."""
    entry = get_entry(session, code, lock=True)
    entry.revision += 1
    if is_dispatched_not_started(entry):
        entry.run_seq += 1  # the queued message becomes stale
    _trace_cancelled(session, entry, "On Hold")
    entry.status = EntryStatus.ON_HOLD
    entry.dispatched_at = None
    return entry


def set_ready(session: Session, code: str, now: datetime, tz: tzinfo) -> JobQueueEntry:
    """Restart: Ready with a fresh count of attempts, at the next allowed moment."""
    entry = get_entry(session, code, lock=True)
    entry.revision += 1
    if entry.status == EntryStatus.IN_PROCESS:
        raise EntryError(f"entry {code!r} is running; wait for it or set it on hold first")
    decision = wake(plan_of(entry, tz), now)
    if decision.status != EntryStatus.READY:
        raise EntryError(f"entry {code!r} has expired; change its expiration first")
    entry.status = EntryStatus.READY
    entry.earliest_start = decision.earliest_start
    entry.attempts = 0
    _runs_as_whoever_readied(session, entry)
    request_dispatch(session)
    return entry


def run_now(session: Session, code: str, now: datetime) -> JobQueueEntry:
    """Make the entry due now, outside its window if need be; the scheduler starts it at once."""
    entry = get_entry(session, code, lock=True)
    entry.revision += 1
    if entry.status == EntryStatus.IN_PROCESS:
        raise EntryError(f"entry {code!r} is running already")
    if is_expired(entry.expiration, now):
        raise EntryError(f"entry {code!r} has expired; change its expiration first")
    entry.status = EntryStatus.READY
    entry.earliest_start = now
    entry.attempts = 0
    _runs_as_whoever_readied(session, entry)
    request_dispatch(session)
    return entry


def delete_entry(session: Session, code: str) -> None:
    entry = get_entry(session, code, lock=True)
    if entry.status == EntryStatus.IN_PROCESS:
        raise EntryError(f"entry {code!r} is running; set it on hold and wait for it first")
    _trace_cancelled(session, entry, "Deleted")
    session.delete(entry)


def _trace_cancelled(session: Session, entry: JobQueueEntry, status: str) -> None:
    """Business Central's "Job queue entry cancelled" (AL0000KZV), once it commits: for an
    entry that was queued to run (Ready, asleep, or sent to a worker that has not started
    it). A run already started is not cancelled; it finishes."""
    queued = entry.status in (EntryStatus.READY, EntryStatus.ON_HOLD_INACTIVITY)
    if queued or is_dispatched_not_started(entry):
        telemetry.after_commit(session, "entry.cancelled", "cancelled", entry, status)


def add_category(session: Session, code: str, description: str = "") -> JobQueueCategory:
    code = check_field("category_code", code.strip())
    description = check_field("description", description)
    if session.get(JobQueueCategory, code) is not None:
        raise EntryError(f"category {code!r} exists already")
    category = JobQueueCategory(code=code, description=description)
    session.add(category)
    return category


def delete_log_older_than(session: Session, days: int, now: datetime) -> int:
    """Deletes log entries of runs that ended more than `days` days ago (Business
    Central's "Delete Entries Older Than"); runs still going are kept. Returns how many."""
    if not 1 <= days <= 36_500:
        raise EntryFieldError("days", f"a whole number from 1 to 36500, not {days}")
    cutoff = now - timedelta(days=days)
    result = session.execute(
        delete(JobQueueLogEntry).where(
            JobQueueLogEntry.ended_at.is_not(None), JobQueueLogEntry.ended_at < cutoff
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


WAITING = "Waiting"  # Business Central's status of an entry held back by its category


def waiting(session: Session, codes: list[str], now: datetime) -> set[str]:
    """Which of these Ready entries are due but held back because another entry of their
    category is running: Business Central shows them as Waiting. Shown only; the entry's
    stored status stays Ready, so the dispatcher's rules do not change."""
    if not codes:
        return set()
    busy = (
        select(JobQueueEntry.category_code)
        .where(JobQueueEntry.status == EntryStatus.IN_PROCESS)
        .where(JobQueueEntry.category_code.is_not(None))
    )
    rows = session.execute(
        select(JobQueueEntry.code).where(
            JobQueueEntry.code.in_(codes),
            JobQueueEntry.status == EntryStatus.READY,
            JobQueueEntry.earliest_start <= now,
            JobQueueEntry.category_code.in_(busy),
        )
    )
    return {str(code) for code in rows.scalars()}


def shown_status(entry: Any, waiting_codes: set[str]) -> str:
    return WAITING if entry.code in waiting_codes else EntryStatus(entry.status).value


def delete_failed_log_entries(session: Session) -> int:
    """Deletes the log entries of failed runs (Business Central's "Remove failed
    entries" on the Job Queue Log Entries page). Returns how many."""
    from domain.queue.status import LogStatus

    result = session.execute(
        delete(JobQueueLogEntry).where(JobQueueLogEntry.status == LogStatus.ERROR)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def list_entries(session: Session, status: EntryStatus | None = None) -> list[EntryView]:
    stmt = select(JobQueueEntry).order_by(JobQueueEntry.code)
    if status is not None:
        stmt = stmt.where(JobQueueEntry.status == status)
    entries = session.execute(stmt).scalars().all()
    last: dict[int, JobQueueLogEntry] = {}
    if entries:
        newest = (
            select(func.max(JobQueueLogEntry.id))
            .where(JobQueueLogEntry.entry_id.in_([e.id for e in entries]))
            .group_by(JobQueueLogEntry.entry_id)
        )
        for log_entry in session.execute(
            select(JobQueueLogEntry).where(JobQueueLogEntry.id.in_(newest))
        ).scalars():
            if log_entry.entry_id is not None:
                last[log_entry.entry_id] = log_entry
    return [EntryView(e, last.get(e.id)) for e in entries]


def read_log(session: Session, code: str, limit: int = 20) -> list[JobQueueLogEntry]:
    get_entry(session, code)
    return list(
        session.execute(
            select(JobQueueLogEntry)
            .where(JobQueueLogEntry.entry_code == code)
            .order_by(JobQueueLogEntry.id.desc())
            .limit(limit)
        ).scalars()
    )


def parse_moment(text: str, tz: tzinfo, field: str = "earliest_start") -> datetime:
    """ISO date-time; without an offset it is read in the configured time zone. Checked by
    the field's limits, so the message names the field."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise EntryFieldError(field, f"{text!r} is not a date-time like 2026-11-23T08:00") from None
    moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment
    check_moment(field, moment)
    return moment


def describe_window(start: time | None, end: time | None) -> str:
    if start is None and end is None:
        return "all day"
    first = start.strftime("%H:%M") if start else "00:00"
    last = end.strftime("%H:%M") if end else "24:00"
    overnight = "+1" if start and end and end < start else ""
    return f"{first}-{last}{overnight}"
