"""What happens to an entry after a run, a failure, a sleep or a wake-up (pure rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from domain.queue import date_formula
from domain.queue.date_formula import DateFormula
from domain.queue.recurrence import Recurrence, format_weekdays, is_expired
from domain.queue.status import EntryStatus


@dataclass(frozen=True)
class EntryPlan:
    """The scheduling facts of an entry that the rules need."""

    recurring: bool
    recurrence: Recurrence
    earliest_start: datetime
    attempts: int  # attempts made so far, including the run being decided
    maximum_attempts: int
    rerun_delay_seconds: int
    inactivity_timeout_minutes: int


@dataclass(frozen=True)
class Decision:
    status: EntryStatus
    earliest_start: datetime
    attempts: int


def after_success(
    plan: EntryPlan, activity: bool, now: datetime, changed_while_running: bool = False
) -> Decision:
    """A one-off finishes; a recurring entry runs again, or sleeps if it found nothing to do.
    Nothing to do is stale when its data changed during the run: the change would have
    woken it at once had it come a moment later, so it is woken now instead of sleeping."""
    if not plan.recurring:
        return Decision(EntryStatus.FINISHED, plan.earliest_start, 0)
    if not activity and changed_while_running:
        return wake(plan, now)
    if not activity and plan.inactivity_timeout_minutes > 0:
        wake_at = now + timedelta(minutes=plan.inactivity_timeout_minutes)
        return Decision(EntryStatus.ON_HOLD_INACTIVITY, wake_at, 0)
    following = plan.recurrence.next_after_run(plan.earliest_start, now)
    if following is None:
        return Decision(EntryStatus.FINISHED, plan.earliest_start, 0)
    return Decision(EntryStatus.READY, following, 0)


def after_failure(plan: EntryPlan, now: datetime) -> Decision:
    """Retry after the rerun delay while attempts remain, else Error (Business Central)."""
    if plan.attempts < max(1, plan.maximum_attempts):
        retry_at = now + timedelta(seconds=plan.rerun_delay_seconds)
        fitted = plan.recurrence.fit(retry_at) if plan.recurring else retry_at
        if fitted is not None:
            return Decision(EntryStatus.READY, fitted, plan.attempts)
    return Decision(EntryStatus.ERROR, plan.earliest_start, plan.attempts)


def wake(plan: EntryPlan, now: datetime) -> Decision:
    """Back to Ready (inactivity over, data changed, admin restart), at the next allowed moment."""
    if not plan.recurring:
        start = max(now, plan.earliest_start)
        if is_expired(plan.recurrence.expiration, start):
            return Decision(EntryStatus.FINISHED, plan.earliest_start, 0)
        return Decision(EntryStatus.READY, start, 0)
    fitted = plan.recurrence.fit(now)
    if fitted is None:
        return Decision(EntryStatus.FINISHED, plan.earliest_start, 0)
    return Decision(EntryStatus.READY, fitted, 0)


WEEKDAY_COLUMNS = (
    "run_on_mondays",
    "run_on_tuesdays",
    "run_on_wednesdays",
    "run_on_thursdays",
    "run_on_fridays",
    "run_on_saturdays",
    "run_on_sundays",
)


@lru_cache(maxsize=512)
def _formula(text: str) -> DateFormula:
    return date_formula.parse(text)


def recurrence_of(row: Any, tz: tzinfo) -> Recurrence:
    """The recurrence of an entry (an ORM object or a Core row with the same names)."""
    formula = getattr(row, "next_run_date_formula", None)
    return Recurrence(
        formula=_formula(formula) if formula else None,
        reference=getattr(row, "reference_starting_time", None),
        minutes_between_runs=row.minutes_between_runs,
        weekdays=frozenset(i for i, col in enumerate(WEEKDAY_COLUMNS) if getattr(row, col)),
        starting_time=row.starting_time,
        ending_time=row.ending_time,
        expiration=row.expiration,
        tz=tz,
    )


def plan_of(row: Any, tz: tzinfo) -> EntryPlan:
    return EntryPlan(
        recurring=row.recurring,
        recurrence=recurrence_of(row, tz),
        earliest_start=row.earliest_start,
        attempts=row.attempts,
        maximum_attempts=row.maximum_attempts,
        rerun_delay_seconds=row.rerun_delay_seconds,
        inactivity_timeout_minutes=row.inactivity_timeout_minutes,
    )


def describe_weekdays_of(row: Any) -> str:
    """'mon-fri'-style text of an entry's weekday columns, as the form takes it."""
    return format_weekdays(frozenset(i for i, c in enumerate(WEEKDAY_COLUMNS) if getattr(row, c)))
