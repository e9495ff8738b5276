"""The whole system (scheduler + Dramatiq worker) on both backends: SQLite with the
in-process broker, and PostgreSQL with Redis."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from admin.processes import EmbeddedSystem
from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.models import JobQueueEntry
from domain.queue.status import EntryStatus, LogStatus
from jobs.registry import registry
from jobs.wakeup import data_changed
from runtime.settings import Settings
from tests.conftest import wait_until
from tests.helpers import add, add_due, entry, finished_logs, logs


@pytest.fixture
def system(settings: Settings) -> Iterator[EmbeddedSystem]:
    with EmbeddedSystem(settings, threads=4, migrate=False) as running:
        yield running


def test_recurring_entry_runs_and_is_rescheduled(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    first_due = add_due(sessions, settings, "REC", "noop", recurring=True, minutes_between_runs=10)
    wait_until(lambda: finished_logs(sessions, "REC"))
    wait_until(lambda: entry(sessions, "REC").status == EntryStatus.READY)
    after = entry(sessions, "REC")
    assert after.earliest_start == first_due + timedelta(minutes=10)
    assert after.attempts == 0
    [run] = logs(sessions, "REC")
    assert run.status == LogStatus.SUCCESS and run.attempt == 1
    assert run.ended_at is not None and run.ended_at >= run.started_at


def test_failing_job_is_retried_until_attempts_are_spent(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(
        sessions,
        settings,
        "BAD",
        "fail",
        maximum_attempts=3,
        rerun_delay_seconds=0,
        parameter_string="message=boom",
    )
    wait_until(lambda: entry(sessions, "BAD").status == EntryStatus.ERROR)
    runs = logs(sessions, "BAD")
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert all(r.status == LogStatus.ERROR for r in runs)
    assert runs[0].error_message == "RuntimeError: boom"
    assert "RuntimeError: boom" in (runs[0].error_call_stack or "")
    assert entry(sessions, "BAD").attempts == 3


def test_flaky_job_succeeds_on_its_second_attempt(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(sessions, settings, "FLAKY", "fail", parameter_string="fail_times=1", rerun_delay_seconds=0)
    wait_until(lambda: entry(sessions, "FLAKY").status == EntryStatus.FINISHED)
    assert [r.status for r in logs(sessions, "FLAKY")] == [LogStatus.ERROR, LogStatus.SUCCESS]


def test_job_timeout_stops_the_run_and_counts_as_a_failure(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(
        sessions,
        settings,
        "SLOW",
        "sleep",
        parameter_string="seconds=30",
        job_timeout_seconds=1,
        maximum_attempts=1,
    )
    started = time.monotonic()
    wait_until(lambda: entry(sessions, "SLOW").status == EntryStatus.ERROR, timeout=10)
    assert time.monotonic() - started < 8
    [run] = logs(sessions, "SLOW")
    assert run.status == LogStatus.ERROR
    assert "job timeout exceeded" in (run.error_message or "")


def test_inactivity_sleep_and_wake_up_on_data_change(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(
        sessions,
        settings,
        "IDLE",
        "idle",
        recurring=True,
        minutes_between_runs=30,
        inactivity_timeout_minutes=1440,
        parameter_string="watch=item",
    )
    wait_until(lambda: entry(sessions, "IDLE").status == EntryStatus.ON_HOLD_INACTIVITY)
    sleeping = entry(sessions, "IDLE")
    assert sleeping.earliest_start > utcnow() + timedelta(minutes=1430)

    with sessions.begin() as session:  # a change to data the job does not handle
        assert data_changed(session, "customer", settings.tz) == []
    time.sleep(0.5)
    assert entry(sessions, "IDLE").status == EntryStatus.ON_HOLD_INACTIVITY
    assert len(logs(sessions, "IDLE")) == 1

    with sessions.begin() as session:
        assert data_changed(session, "item", settings.tz) == ["IDLE"]
    wait_until(lambda: len(finished_logs(sessions, "IDLE")) == 2)
    wait_until(lambda: entry(sessions, "IDLE").status == EntryStatus.ON_HOLD_INACTIVITY)


def test_inactivity_timeout_passing_wakes_the_entry(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(
        sessions,
        settings,
        "NAP",
        "idle",
        recurring=True,
        minutes_between_runs=30,
        inactivity_timeout_minutes=720,
    )
    wait_until(lambda: entry(sessions, "NAP").status == EntryStatus.ON_HOLD_INACTIVITY)
    with sessions.begin() as session:  # the 12 hours have passed
        session.execute(
            update(JobQueueEntry)
            .where(JobQueueEntry.code == "NAP")
            .values(earliest_start=utcnow() - timedelta(seconds=1))
        )
    wait_until(lambda: len(finished_logs(sessions, "NAP")) == 2)


def test_one_category_runs_one_entry_at_a_time_highest_priority_first(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    with sessions.begin() as session:
        ops.add_category(session, "SYNC")
    system.scheduler.stop()  # add them all before any is dispatched
    for i, priority in enumerate([1, 5, 3, 9]):
        add(
            sessions,
            settings,
            f"CAT-{i}",
            "sleep",
            parameter_string="seconds=0.3",
            category_code="SYNC",
            priority=priority,
        )
    add(sessions, settings, "FREE", "sleep", parameter_string="seconds=0.3")
    from scheduler.service import SchedulerService

    scheduler = SchedulerService(settings, system.app.engine, system.app.broker)
    scheduler.start()
    try:
        wait_until(
            lambda: all(
                entry(sessions, f"CAT-{i}").status == EntryStatus.FINISHED for i in range(4)
            ),
            timeout=20,
        )
    finally:
        scheduler.stop()
    runs = sorted(
        (r for r in logs(sessions) if r.entry_code.startswith("CAT")), key=lambda r: r.started_at
    )
    assert [r.entry_code for r in runs] == ["CAT-3", "CAT-1", "CAT-2", "CAT-0"]
    for earlier, later in itertools.pairwise(runs):
        assert earlier.ended_at is not None and earlier.ended_at <= later.started_at
    free = logs(sessions, "FREE")[0]
    assert free.started_at < runs[1].started_at  # the uncategorized entry did not wait its turn


def test_admin_edits_take_effect_without_restart(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    due = add_due(
        sessions,
        settings,
        "EDIT",
        "sleep",
        parameter_string="seconds=1",
        recurring=True,
        minutes_between_runs=60,
    )
    wait_until(lambda: entry(sessions, "EDIT").started_at is not None)
    with sessions.begin() as session:  # edited while it runs: applies to the next run
        ops.edit_entry(
            session, "EDIT", {"minutes_between_runs": 5}, registry, utcnow(), settings.tz
        )
    wait_until(lambda: entry(sessions, "EDIT").status == EntryStatus.READY)
    assert entry(sessions, "EDIT").earliest_start == due + timedelta(minutes=5)

    with sessions.begin() as session:
        ops.run_now(session, "EDIT", utcnow())
    wait_until(lambda: len(finished_logs(sessions, "EDIT")) == 2)


def test_hold_during_a_run_keeps_the_entry_on_hold(
    system: EmbeddedSystem, settings: Settings
) -> None:
    sessions = system.app.session_factory
    add(
        sessions,
        settings,
        "HOLD",
        "sleep",
        parameter_string="seconds=0.8",
        recurring=True,
        minutes_between_runs=1,
    )
    wait_until(lambda: entry(sessions, "HOLD").started_at is not None)
    with sessions.begin() as session:
        ops.set_on_hold(session, "HOLD")
    wait_until(lambda: finished_logs(sessions, "HOLD"))
    time.sleep(0.5)
    assert entry(sessions, "HOLD").status == EntryStatus.ON_HOLD
    assert finished_logs(sessions, "HOLD")[0].status == LogStatus.SUCCESS

    with sessions.begin() as session:  # restart
        ops.set_ready(session, "HOLD", utcnow(), settings.tz)
    wait_until(lambda: len(finished_logs(sessions, "HOLD")) == 2)
