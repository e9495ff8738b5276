"""PostgreSQL stopped and started under the queue (issue 12, findings 2-4): a finish
outlives the blip, a claim is retried promptly, and the scheduler tells one story.

Each test runs against a private server (its own cluster and port); the shared
server is never stopped."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from domain.clock import utcnow
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.queue.status import EntryStatus, LogStatus
from runtime.logs import configure_logging
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher
from scheduler.service import SchedulerService
from tests.conftest import wait_until
from tests.helpers import add, entry, logs
from tests.private_postgres import PrivateServer
from workers.app import create_app
from workers.executor import ClaimUnavailableError

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    pg = PrivateServer()
    pg.start()
    upgrade(make_engine(pg.url))
    yield pg
    pg.destroy()


@pytest.fixture
def pg(server: PrivateServer) -> Iterator[PrivateServer]:
    if not server.accepts():
        server.start()
    engine = make_engine(server.url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE job_queue_entries, job_queue_log_entries, scheduler_leases RESTART IDENTITY"
        )
    engine.dispose()
    yield server
    if not server.accepts():
        server.start()


def settings_for(pg: PrivateServer, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": pg.url,
        "tick_seconds": 0.2,
        "lease_seconds": 8.0,
        "dispatch_timeout_seconds": 60.0,
        "leader_ttl_seconds": 2.0,
        "keep_one_off_entries": True,  # the tests watch their one-offs reach Finished
    }
    return Settings(**(values | changes))


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    configure_logging("INFO", process="test")

    def read() -> list[dict[str, Any]]:
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    yield read
    configure_logging("WARNING", process="tests")


def test_a_finish_during_a_database_blip_is_retried_not_orphaned(pg: PrivateServer) -> None:
    settings = settings_for(pg)
    engine = make_engine(pg.url, pool_pre_ping=True)
    app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
    sessions = app.session_factory
    entry_id = add(sessions, settings, "BLIP", "sleep", parameter_string="seconds=1.5")
    Dispatcher(engine, app.broker, settings).tick(utcnow())
    [(_, seq)] = [(m.args[0], m.args[1]) for m in _messages(app.broker, settings)]
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(app.executor.execute(entry_id, seq)))
    runner.start()
    wait_until(lambda: entry(sessions, "BLIP").started_at is not None, timeout=10)
    pg.stop()  # the job ends while the database is away
    time.sleep(2.5)  # the job (1.5 s) ends and its finish meets the outage; no condition to await
    pg.start()
    runner.join(timeout=30)
    assert not runner.is_alive()
    [result] = results
    assert result is not None and result.succeeded
    finished = entry(sessions, "BLIP")
    assert finished.status == EntryStatus.FINISHED and finished.worker_id is None
    [log] = logs(sessions, "BLIP")
    assert log.status == LogStatus.SUCCESS and "stopped answering" not in (log.error_message or "")
    engine.dispose()


def test_a_claim_during_an_outage_is_retried_promptly(pg: PrivateServer) -> None:
    settings = settings_for(pg)
    engine = make_engine(pg.url, pool_pre_ping=True)
    app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
    sessions = app.session_factory
    add(sessions, settings, "CLAIM", "noop")
    Dispatcher(engine, app.broker, settings).tick(utcnow())
    pg.stop()
    [message] = _messages(app.broker, settings)
    with pytest.raises(ClaimUnavailableError, match="cannot reach the database"):
        app.executor.execute(*message.args)
    worker = Worker(app.broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        time.sleep(1.0)  # the message meets the outage and is retried (Dramatiq's backoff)
        pg.start()
        began = time.monotonic()
        wait_until(lambda: entry(sessions, "CLAIM").status == EntryStatus.FINISHED, timeout=30)
        assert time.monotonic() - began < settings.dispatch_timeout_seconds / 2
    finally:
        worker.stop()
        engine.dispose()


def test_a_database_outage_is_one_warning_and_one_recovery_line_from_the_scheduler(
    pg: PrivateServer, json_lines: Any
) -> None:
    settings = settings_for(pg)
    engine = make_engine(pg.url, pool_pre_ping=True)
    app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
    service = SchedulerService(settings, engine, app.broker)
    service.start()
    try:
        wait_until(lambda: service.is_active, timeout=10)
        json_lines()
        pg.stop()
        time.sleep(3.0)  # about 15 ticks' worth of outage
        pg.start()
        add(make_session_factory(engine), settings, "AFTER", "noop")
        wait_until(
            lambda: entry(make_session_factory(engine), "AFTER").status != EntryStatus.READY,
            timeout=40,
        )
    finally:
        service.stop()
        engine.dispose()
    lines = json_lines()
    events = [line["event"] for line in lines if line["level"] in ("warning", "error")]
    assert events.count("database.unavailable") == 1, events
    assert "scheduler.tick_failed" not in events
    assert not any("exception" in line for line in lines)  # no traceback per tick
    assert [line["event"] for line in lines].count("database.recovered") == 1


def _messages(broker: StubBroker, settings: Settings) -> list[Any]:
    from dramatiq import Message

    return [Message.decode(m) for m in list(broker.queues[settings.queue_name].queue)]
