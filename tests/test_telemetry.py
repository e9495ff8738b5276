"""Issue 17, point 8: the run life-cycle JSON lines carry Business Central's job-queue
telemetry: event ids, messages and custom dimensions, checked field by field."""

from __future__ import annotations

import json
from typing import Any

from dramatiq.brokers.stub import StubBroker

from domain.clock import utcnow
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher
from tests.helpers import add
from workers.app import create_app

COMMON = {"eventId", "message", "alCategory", "alJobQueueId", "alJobQueueObjectName",
          "alJobQueueObjectType", "alJobQueueIsRecurring", "alJobQueueStatus",
          "alJobQueueNumberOfAttemptsToRun", "alJobQueueMaxNumberOfAttemptsToRun",
          "alJobQueueEarliestStartDateTime"}  # fmt: skip


def run_once_through_the_queue(settings: Settings, engine: Any, code: str, job: str,
                               capsys: Any, **changes: Any) -> list[dict[str, Any]]:  # fmt: skip
    broker = StubBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    entry_id = add(app.session_factory, settings, code, job, **changes)
    Dispatcher(engine, broker, settings).tick(utcnow())
    from dramatiq import Message

    [raw] = list(broker.queues[settings.queue_name].queue)
    args = Message.decode(raw).args
    capsys.readouterr()
    app.executor.execute(*args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert args[0] == entry_id
    return [line for line in lines if line.get("alCategory") == "AL JobQueueEntries"]


def test_a_successful_run_is_started_and_finished_as_in_business_central(
    settings: Settings, engine: Any, capsys: Any
) -> None:
    import logging

    logging.getLogger().setLevel(logging.INFO)
    try:
        lines = run_once_through_the_queue(settings, engine, "OK", "noop", capsys)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    started, finished = lines
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
