"""Issue 17, point 4: a one-off entry is deleted once it has run successfully, as in
Business Central, unless JOBQUEUE_KEEP_ONE_OFF_ENTRIES keeps it; its log entries stay."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from domain.clock import utcnow
from domain.queue.models import JobQueueEntry
from domain.queue.status import EntryStatus, LogStatus
from runtime.settings import Settings, SettingsError
from scheduler.dispatcher import Dispatcher
from tests.helpers import add, logs
from workers.app import create_app


def run(settings: Settings, engine: Any, code: str, job: str, **changes: Any) -> Any:
    """Add the entry, dispatch it and run it once; returns the session factory."""
    broker = StubBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    add(app.session_factory, settings, code, job, **changes)
    Dispatcher(engine, broker, settings).tick(utcnow())
    [raw] = list(broker.queues[settings.queue_name].queue)
    app.executor.execute(*Message.decode(raw).args)
    return app.session_factory


def stored(sessions: Any, code: str) -> JobQueueEntry | None:
    with sessions() as session:
        return session.execute(
            select(JobQueueEntry).where(JobQueueEntry.code == code)
        ).scalar_one_or_none()


@pytest.fixture
def deleting(settings: Settings) -> Settings:
    return replace(settings, keep_one_off_entries=False)


def test_a_one_off_that_succeeds_is_deleted_and_its_log_entry_stays(
    deleting: Settings, engine: Any
) -> None:
    sessions = run(deleting, engine, "ONCE", "noop", description="monthly close")
    assert stored(sessions, "ONCE") is None
    [log] = logs(sessions, "ONCE")
    assert log.status == LogStatus.SUCCESS and log.ended_at is not None


def test_the_setting_keeps_it_finished(settings: Settings, engine: Any) -> None:
    sessions = run(replace(settings, keep_one_off_entries=True), engine, "KEPT", "noop")
    kept = stored(sessions, "KEPT")
    assert kept is not None and kept.status == EntryStatus.FINISHED


def test_a_one_off_that_fails_stays_to_be_looked_at(deleting: Settings, engine: Any) -> None:
    sessions = run(deleting, engine, "BROKEN", "fail", maximum_attempts=1)
    failed = stored(sessions, "BROKEN")
    assert failed is not None and failed.status == EntryStatus.ERROR


def test_a_recurring_entry_is_never_deleted(deleting: Settings, engine: Any) -> None:
    sessions = run(deleting, engine, "EVERY", "noop", recurring=True, minutes_between_runs=5,
                   weekdays=frozenset(range(7)))  # fmt: skip
    again = stored(sessions, "EVERY")
    assert again is not None and again.status == EntryStatus.READY


def test_the_setting_is_a_yes_or_no() -> None:
    assert Settings.from_env({"JOBQUEUE_KEEP_ONE_OFF_ENTRIES": "yes"}).keep_one_off_entries
    assert not Settings.from_env({}).keep_one_off_entries
    with pytest.raises(SettingsError, match="JOBQUEUE_KEEP_ONE_OFF_ENTRIES must be true or false"):
        Settings.from_env({"JOBQUEUE_KEEP_ONE_OFF_ENTRIES": "sometimes"})
