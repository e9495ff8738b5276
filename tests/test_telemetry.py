"""Issue 17, point 8: the run life-cycle JSON lines carry Business Central's job-queue
telemetry: event ids, messages and custom dimensions, checked field by field."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker

from domain.clock import utcnow
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher
from tests.helpers import add
from workers.app import create_app

COMMON = {"eventId", "message", "alCategory", "alJobQueueId", "alJobQueueObjectName",
          "alJobQueueObjectType", "alJobQueueIsRecurring", "alJobQueueStatus",
          "alJobQueueNumberOfAttemptsToRun", "alJobQueueMaxNumberOfAttemptsToRun",
          "alJobQueueEarliestStartDateTime", "alJobQueueScheduledTaskId"}  # fmt: skip


def run_once_through_the_queue(settings: Settings, engine: Any, code: str, job: str,
                               capsys: Any, **changes: Any) -> list[dict[str, Any]]:  # fmt: skip
    broker = StubBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    entry_id = add(app.session_factory, settings, code, job, **changes)
    capsys.readouterr()
    Dispatcher(engine, broker, settings).tick(utcnow())
    from dramatiq import Message

    [raw] = list(broker.queues[settings.queue_name].queue)
    args = Message.decode(raw).args
    app.executor.execute(*args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert args[0] == entry_id
    return [line for line in lines if line.get("alCategory") == "AL JobQueueEntries"]


@pytest.fixture
def info() -> Iterator[None]:
    """The life-cycle traces are INFO lines; the tests otherwise log warnings only."""
    logging.getLogger().setLevel(logging.INFO)
    yield
    logging.getLogger().setLevel(logging.WARNING)


def test_a_successful_run_is_enqueued_started_and_finished_as_in_business_central(
    settings: Settings, engine: Any, capsys: Any, info: None
) -> None:
    lines = run_once_through_the_queue(settings, engine, "OK", "noop", capsys)
    enqueued, started, finished = lines
    assert enqueued["eventId"] == "AL0000E24" and set(enqueued) >= COMMON
    assert enqueued["message"] == f"Job queue entry enqueued: {enqueued['alJobQueueId']}"
    assert enqueued["alJobQueueStatus"] == "Ready" and enqueued["event"] == "run.enqueued"
    # one run's traces share BC's scheduled task id, as they do in BC
    assert {line["alJobQueueScheduledTaskId"] for line in lines} == {
        f"{enqueued['alJobQueueId']}:1"
    }
    assert started["eventId"] == "AL0000E25" and started["alJobQueueStatus"] == "In Process"
    assert started["message"] == f"Job queue entry started: {started['alJobQueueId']}"
    assert set(started) >= COMMON
    assert finished["eventId"] == "AL0000E26" and COMMON | {
        "alJobQueueExecutionTimeInMs", "alJobQueueResult"} <= set(finished)  # fmt: skip
    assert finished["alJobQueueResult"] == "Success"
    assert finished["alJobQueueStatus"] == "Finished"  # a one-off: BC's value too
    assert finished["alJobQueueIsRecurring"] == "No" and finished["alJobQueueObjectName"] == "noop"
    assert isinstance(finished["alJobQueueExecutionTimeInMs"], int)


def test_a_run_that_spends_its_last_attempt_is_errored_and_failed(
    settings: Settings, engine: Any, capsys: Any
) -> None:
    failing = {"parameter_string": "fail_times=9", "maximum_attempts": 1}
    lines = run_once_through_the_queue(settings, engine, "BAD", "fail", capsys, **failing)
    errored, failed = (line for line in lines if line["eventId"] in ("AL0000HE7", "AL0000JRG"))
    assert errored["eventId"] == "AL0000HE7" and errored["alJobQueueStatus"] == "Error"
    assert "Traceback" in errored["alJobQueueStacktrace"]
    assert failed["eventId"] == "AL0000JRG"
    assert failed["message"] == f"Job queue entry {failed['alJobQueueId']} errored after 1 attempts"
    assert failed["alJobQueueNumberOfAttemptsToRun"] == 1
    assert failed["alJobQueueMaxNumberOfAttemptsToRun"] == 1


def traces(capsys: Any) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [line for line in lines if line.get("alCategory") == "AL JobQueueEntries"]


def test_setting_a_queued_entry_on_hold_or_deleting_it_is_cancelled(
    settings: Settings, sessions: Any, capsys: Any, info: None
) -> None:
    from domain.audit.record import acting_as
    from domain.queue import entries as ops

    add(sessions, settings, "HOLD", "noop")
    add(sessions, settings, "GONE", "noop")
    capsys.readouterr()
    with sessions.begin() as session:
        acting_as(session, "ANNA", "cli")
        ops.set_on_hold(session, "HOLD")
    [cancelled] = traces(capsys)
    assert cancelled["eventId"] == "AL0000KZV" and set(cancelled) >= COMMON
    assert cancelled["message"] == f"Job queue entry cancelled: {cancelled['alJobQueueId']}"
    assert cancelled["user_Id"] == "ANNA" and cancelled["alJobQueueStatus"] == "On Hold"

    with sessions.begin() as session:  # on hold already: nothing queued to cancel
        ops.set_on_hold(session, "HOLD")
    assert traces(capsys) == []

    with pytest.raises(RuntimeError), sessions.begin() as session:  # rolled back: not made
        ops.delete_entry(session, "GONE")
        raise RuntimeError("the admin's transaction fails")
    assert traces(capsys) == []
    with sessions.begin() as session:
        ops.delete_entry(session, "GONE")
    [deleted] = traces(capsys)
    assert deleted["eventId"] == "AL0000KZV" and deleted["alJobQueueStatus"] == "Deleted"


class RefusingBroker(StubBroker):
    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        raise ConnectionError("the broker is down")


def test_a_run_the_broker_refused_is_not_enqueued(
    settings: Settings, engine: Any, capsys: Any, info: None
) -> None:
    broker = RefusingBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    add(app.session_factory, settings, "LATER", "noop")
    capsys.readouterr()
    Dispatcher(engine, broker, settings).tick(utcnow())
    [refused] = traces(capsys)
    assert refused["eventId"] == "AL0000FNY" and set(refused) >= COMMON
    assert refused["message"] == f"Job queue entry not enqueued: {refused['alJobQueueId']}"


def test_a_cancel_rolled_back_in_a_session_that_goes_on_is_never_traced(
    settings: Settings, sessions: Any, capsys: Any, info: None
) -> None:
    from domain.queue import entries as ops

    add(sessions, settings, "KEEP", "noop")
    capsys.readouterr()
    with sessions() as session:
        ops.set_on_hold(session, "KEEP")
        session.rollback()
        ops.get_entry(session, "KEEP").description = "renamed"
        session.commit()
    assert traces(capsys) == []
