"""What happens after a run: retries, Error, inactivity sleep, wake-up, one-off finish."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from domain.queue.recurrence import Recurrence
from domain.queue.status import EntryStatus
from domain.queue.transitions import EntryPlan, after_failure, after_success, wake

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def plan(**changes: object) -> EntryPlan:
    base: dict[str, object] = {
        "recurring": True,
        "recurrence": Recurrence(minutes_between_runs=30),
        "earliest_start": NOW,
        "attempts": 1,
        "maximum_attempts": 3,
        "rerun_delay_seconds": 60,
        "inactivity_timeout_minutes": 0,
    }
    base.update(changes)
    return EntryPlan(**base)  # type: ignore[arg-type]


def test_failure_retries_after_the_rerun_delay_while_attempts_remain() -> None:
    decision = after_failure(plan(attempts=2), NOW)
    assert decision.status == EntryStatus.READY
    assert decision.earliest_start == NOW + timedelta(seconds=60)
    assert decision.attempts == 2


def test_failure_on_the_last_attempt_is_an_error() -> None:
    decision = after_failure(plan(attempts=3), NOW)
    assert decision.status == EntryStatus.ERROR
    assert decision.attempts == 3


def test_retry_of_a_recurring_entry_waits_for_its_window() -> None:
    rec = Recurrence(minutes_between_runs=30, starting_time=time(8), ending_time=time(10))
    decision = after_failure(plan(recurrence=rec, attempts=1), NOW)
    assert decision.status == EntryStatus.READY
    assert decision.earliest_start == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_success_resets_attempts_and_schedules_the_next_run() -> None:
    decision = after_success(plan(attempts=2), activity=True, now=NOW + timedelta(minutes=1))
    assert decision == type(decision)(EntryStatus.READY, NOW + timedelta(minutes=30), 0)


def test_one_off_success_finishes() -> None:
    assert after_success(plan(recurring=False), True, NOW).status == EntryStatus.FINISHED


def test_no_activity_with_an_inactivity_timeout_sleeps_until_it_passes() -> None:
    decision = after_success(plan(inactivity_timeout_minutes=1440), activity=False, now=NOW)
    assert decision.status == EntryStatus.ON_HOLD_INACTIVITY
    assert decision.earliest_start == NOW + timedelta(minutes=1440)


def test_no_activity_without_an_inactivity_timeout_keeps_the_frequency() -> None:
    decision = after_success(plan(), activity=False, now=NOW)
    assert decision.status == EntryStatus.READY
    assert decision.earliest_start == NOW + timedelta(minutes=30)


def test_wake_makes_a_sleeper_ready_at_the_next_allowed_moment() -> None:
    rec = Recurrence(minutes_between_runs=30, starting_time=time(12), ending_time=time(13))
    sleeping = plan(recurrence=rec, earliest_start=NOW + timedelta(hours=24))
    decision = wake(sleeping, NOW)
    assert decision.status == EntryStatus.READY
    assert decision.earliest_start == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_wake_after_expiration_finishes() -> None:
    rec = Recurrence(minutes_between_runs=30, expiration=NOW - timedelta(minutes=1))
    assert wake(plan(recurrence=rec), NOW).status == EntryStatus.FINISHED


def test_no_activity_after_data_changed_during_the_run_wakes_instead_of_sleeping() -> None:
    rec = Recurrence(minutes_between_runs=30, starting_time=time(12), ending_time=time(13))
    sleepy = plan(recurrence=rec, inactivity_timeout_minutes=60)
    decision = after_success(sleepy, activity=False, now=NOW, changed_while_running=True)
    assert decision == wake(sleepy, NOW)  # as if the change had come a moment later
    busy = after_success(sleepy, activity=True, now=NOW, changed_while_running=True)
    assert busy == after_success(sleepy, activity=True, now=NOW)  # its cadence, as ever
