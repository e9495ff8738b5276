"""Queue core (issue 12): one bad entry fails alone, leases are honest, outages tell a
story, and only `domain/queue` writes the entries table."""

from __future__ import annotations

import ast
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.limits import EntryFieldError
from domain.queue.models import ENTRIES
from domain.queue.runs import claim_run, renew_leases
from domain.queue.status import EntryStatus, LogStatus
from jobs.registry import registry
from runtime.logs import configure_logging
from runtime.outage import Outage
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher
from scheduler.service import SchedulerService
from tests.conftest import wait_until, with_settings
from tests.helpers import add, entry, logs
from workers.app import create_app

ROOT = Path(__file__).resolve().parent.parent
FAR = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)  # one more hour does not exist


@pytest.fixture
def stub(settings: Settings, engine: Any) -> tuple[StubBroker, Dispatcher, Any, Any]:
    broker = StubBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    return broker, Dispatcher(engine, broker, settings), app.session_factory, app.executor


def queued(broker: StubBroker, settings: Settings) -> list[tuple[int, int]]:
    from dramatiq import Message

    return [tuple(Message.decode(m).args) for m in list(broker.queues[settings.queue_name].queue)]


def corrupt(engine: Any, code: str, **values: Any) -> None:
    """Write a row as a faulty tool or a hand edit would: past every check but the database's."""
    with engine.begin() as conn:
        conn.execute(update(ENTRIES).where(ENTRIES.c.code == code).values(**values))


# Finding 1: one entry stops every entry.


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("rerun_delay_seconds", 999_999_999_999, "over the maximum of 3600 seconds"),
        ("inactivity_timeout_minutes", 9_999_999_999, "over the maximum"),
        ("minutes_between_runs", 9_999_999_999, "over the maximum"),
        ("maximum_attempts", 0, "under the minimum of 1"),
        ("inactivity_timeout_minutes", 4, r"0 \(off\)"),
        ("priority", 10**20, "over the maximum of 1000"),
    ],
)
def test_the_domain_refuses_values_outside_their_limits(
    settings: Settings, sessions: Any, field: str, value: int, words: str
) -> None:
    with pytest.raises(EntryFieldError, match=words) as raised, sessions.begin() as session:
        ops.add_entry(
            session, "X", "noop", {field: value, "recurring": True}, registry, utcnow(), settings.tz
        )
    assert raised.value.field == field
    with sessions() as session, pytest.raises(ops.EntryError):
        ops.get_entry(session, "X")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("rerun_delay_seconds", 999_999_999),
        ("inactivity_timeout_minutes", 3),
        ("minutes_between_runs", 999_999_999),
        ("maximum_attempts", 11),
        ("priority", -5000),
    ],
)
def test_the_database_refuses_them_too(
    settings: Settings, sessions: Any, engine: Any, column: str, value: int
) -> None:
    add(sessions, settings, "X", "noop")
    with pytest.raises(IntegrityError):
        corrupt(engine, "X", **{column: value})


def test_a_run_whose_next_run_overflows_fails_alone_and_the_tick_goes_on(
    settings: Settings, stub: Any, engine: Any
) -> None:
    broker, dispatcher, sessions, executor = stub
    bad = add(sessions, settings, "BAD", "noop", recurring=True, minutes_between_runs=60)
    good = add(sessions, settings, "GOOD", "noop", recurring=True, minutes_between_runs=60)
    dispatcher.tick(utcnow())
    runs = dict(queued(broker, settings))
    corrupt(engine, "BAD", earliest_start=FAR)  # its next slot is past year 9999
    assert executor.execute(bad, runs[bad]) is not None
    assert executor.execute(good, runs[good]) is not None
    bad_entry = entry(sessions, "BAD")
    assert bad_entry.status == EntryStatus.ERROR and bad_entry.started_at is None
    [log] = logs(sessions, "BAD")
    assert log.status == LogStatus.ERROR and log.ended_at is not None
    assert "succeeded, but its next run could not be scheduled: OverflowError" in (
        log.error_message or ""
    )
    assert "stopped answering" not in (log.error_message or "")
    assert entry(sessions, "GOOD").status == EntryStatus.READY
    report = dispatcher.tick(utcnow() + timedelta(hours=2))  # the tick still works
    assert good in report.dispatched_ids and bad not in report.dispatched_ids


@contextmanager
def checks_off(engine: Any, constraint: str) -> Iterator[None]:
    """Let a raw write past one CHECK constraint, as a database restored from an older
    copy or edited by hand would hold such a row."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        yield
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE job_queue_entries DROP CONSTRAINT {constraint}")
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM job_queue_entries WHERE rerun_delay_seconds > 3600")
            conn.exec_driver_sql(
                f"ALTER TABLE job_queue_entries ADD CONSTRAINT {constraint} "
                "CHECK (rerun_delay_seconds BETWEEN 0 AND 3600)"
            )


def test_a_lost_run_with_a_corrupt_row_is_put_in_error_and_others_still_dispatch(
    settings: Settings, stub: Any, tmp_path: Path
) -> None:
    from domain.db import make_engine

    _, _, sessions, _ = stub
    sqlite = settings.database_url.startswith("sqlite")
    # SQLite's pragma holds for one connection: use only that one.
    engine = make_engine(settings.database_url, **({"poolclass": StaticPool} if sqlite else {}))
    broker = StubBroker(middleware=[])
    broker.declare_queue(settings.queue_name)
    dispatcher = Dispatcher(engine, broker, settings)
    bad = add(sessions, settings, "BAD", "noop", recurring=True, minutes_between_runs=60)
    dispatcher.tick(utcnow())
    [(_, seq)] = queued(broker, settings)
    with engine.begin() as conn:  # a worker starts it, then dies
        assert claim_run(conn, bad, seq, "dead-worker", 1.0, utcnow()) is not None
    try:
        with checks_off(engine, "ck_jqe_rerun_delay_seconds"):
            # 63 years of rerun delay, seen by a scheduler late in the calendar: the retry
            # would fall after year 9999 (finding 1 with a value a 32-bit column holds).
            corrupt(engine, "BAD", rerun_delay_seconds=2_000_000_000)
            other = add(sessions, settings, "OTHER", "noop")
            late = datetime(9950, 1, 1, tzinfo=UTC)
            report = dispatcher.tick(late)
            assert report.recovered == 1 and other in report.dispatched_ids
            bad_entry = entry(sessions, "BAD")
            assert bad_entry.status == EntryStatus.ERROR and bad_entry.worker_id is None
            [log] = logs(sessions, "BAD")
            assert log.status == LogStatus.ERROR
            assert "could not be scheduled: OverflowError" in (log.error_message or "")
            again = dispatcher.tick(late + timedelta(seconds=1))
            assert again.recovered == 0 and again.failed == 0  # recovered once only
    finally:
        engine.dispose()


def test_a_sleeper_whose_wake_overflows_is_put_in_error_alone(
    settings: Settings, stub: Any, engine: Any
) -> None:
    _broker, dispatcher, sessions, _executor = stub
    add(sessions, settings, "SLEEPY", "idle", recurring=True, inactivity_timeout_minutes=5)
    other = add(sessions, settings, "OTHER", "noop")
    now = utcnow()
    # A sleeper due to wake, with a non-recurring rule set whose start cannot be computed.
    corrupt(
        engine,
        "SLEEPY",
        status=EntryStatus.ON_HOLD_INACTIVITY,
        earliest_start=now - timedelta(minutes=1),
        starting_time=None,
        ending_time=None,
        expiration=datetime(1971, 1, 1, tzinfo=UTC),
    )
    report = dispatcher.tick(now)
    assert other in report.dispatched_ids
    assert entry(sessions, "SLEEPY").status in (EntryStatus.FINISHED, EntryStatus.ERROR)


# Finding 2 and requirement 4: honest leases.


def test_the_heartbeat_renews_only_the_runs_this_process_holds(
    settings: Settings, stub: Any, engine: Any
) -> None:
    broker, dispatcher, sessions, _executor = stub
    first = add(sessions, settings, "A", "noop")
    second = add(sessions, settings, "B", "noop")
    dispatcher.tick(utcnow())
    seqs = dict(queued(broker, settings))
    now = utcnow()
    with engine.begin() as conn:
        for entry_id in (first, second):
            assert claim_run(conn, entry_id, seqs[entry_id], "w1", 1.0, now) is not None
    later = now + timedelta(seconds=30)
    with engine.begin() as conn:
        renewed = renew_leases(conn, [(first, seqs[first])], "w1", 1.0, later)
    assert renewed == {(first, seqs[first])}
    assert entry(sessions, "A").lease_expires_at > later
    assert entry(sessions, "B").lease_expires_at < later  # not held: left to expire


def test_a_run_whose_lease_is_not_renewed_is_stopped_before_it_could_be_recovered(
    settings: Settings, engine: Any
) -> None:
    fast = with_settings(settings, lease_seconds=1.0)
    app = create_app(fast, broker=StubBroker(middleware=[]), engine=engine)
    dispatcher = Dispatcher(engine, app.broker, fast)
    entry_id = add(app.session_factory, fast, "LONG", "sleep", parameter_string="seconds=30")
    dispatcher.tick(utcnow())
    [(_, seq)] = queued(app.broker, fast)  # type: ignore[arg-type]
    started = utcnow()
    result = app.executor.execute(entry_id, seq)  # no heartbeat runs: nobody renews
    elapsed = (utcnow() - started).total_seconds()
    assert result is not None and not result.succeeded
    assert "lease could not be renewed" in (result.error_message or "")
    assert elapsed < 1.0 + 0.6  # stopped before the lease (1 s) could be recovered
    assert entry(app.session_factory, "LONG").status == EntryStatus.READY  # retried later


def test_a_run_whose_lease_is_renewed_runs_past_it(settings: Settings, engine: Any) -> None:
    fast = with_settings(settings, lease_seconds=1.0)
    app = create_app(fast, broker=StubBroker(middleware=[]), engine=engine)
    dispatcher = Dispatcher(engine, app.broker, fast)
    entry_id = add(app.session_factory, fast, "LONG", "sleep", parameter_string="seconds=2")
    dispatcher.tick(utcnow())
    [(_, seq)] = queued(app.broker, fast)  # type: ignore[arg-type]
    done = threading.Event()

    def beat() -> None:
        while not done.wait(0.2):
            app.executor.renew_leases()

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        result = app.executor.execute(entry_id, seq)
    finally:
        done.set()
        beater.join()
    assert result is not None and result.succeeded, result


# Requirement 5: outages tell a story.


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def warning(self, event: str, **_kw: Any) -> None:
        self.lines.append(("warning", event))

    def info(self, event: str, **_kw: Any) -> None:
        self.lines.append(("info", event))


def test_an_outage_is_one_warning_backoff_and_one_recovery_line() -> None:
    now = [0.0]
    recorder = Recorder()
    outage = Outage(
        "broker", logger=recorder, min_backoff=1.0, max_backoff=8.0, clock=lambda: now[0]
    )
    waits = []
    for _ in range(6):
        assert outage.ready()
        waits.append(outage.failed(ConnectionError("refused")))
        assert not outage.ready()
        now[0] += waits[-1]
    assert waits[-1] <= 8.0 and max(waits) > min(waits)  # backs off, capped
    outage.succeeded()
    outage.succeeded()
    assert recorder.lines == [("warning", "broker.unavailable"), ("info", "broker.recovered")]


class BrokenBroker(StubBroker):
    def __init__(self) -> None:
        super().__init__(middleware=[])
        self.down = True
        self.tries = 0

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        self.tries += 1
        if self.down:
            raise ConnectionError("Connection refused (redis 127.0.0.1:6379)")
        return super().enqueue(message, delay=delay)


def test_a_broker_outage_is_one_warning_with_backoff_then_one_recovery(
    settings: Settings, engine: Any, sessions: Any
) -> None:
    broker = BrokenBroker()
    broker.declare_queue(settings.queue_name)
    dispatcher = Dispatcher(engine, broker, settings)
    recorder = Recorder()
    dispatcher.broker_outage.log = recorder
    add(sessions, settings, "A", "noop")
    for _ in range(20):
        dispatcher.tick(utcnow())
    assert broker.tries < 5  # backed off, not one failed send per tick
    assert entry(sessions, "A").status == EntryStatus.READY  # nothing lost meanwhile
    broker.down = False
    dispatcher.broker_outage._next_try = 0.0
    report = dispatcher.tick(utcnow())
    assert report.dispatched == 1
    assert recorder.lines == [("warning", "broker.unavailable"), ("info", "broker.recovered")]


def test_a_healthy_leader_logs_no_apscheduler_noise(
    settings: Settings, engine: Any, sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
    service = SchedulerService(settings, engine, app.broker)
    caplog.set_level(logging.INFO, logger="apscheduler")
    service.start()
    try:
        for i in range(40):  # wake-ups while ticks run
            add(sessions, settings, f"E{i}", "noop")
            service.wake()
        wait_until(lambda: service.last_tick_at is not None, timeout=10)
        wait_until(
            lambda: all(entry(sessions, f"E{i}").status != EntryStatus.READY for i in range(40)),
            timeout=20,
        )
    finally:
        service.stop()
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == []


# Requirement 6: no head-of-line wait.

PREFETCH_VARIABLE = "dramatiq_queue_prefetch"  # Dramatiq's own (lower-case) name


def test_a_worker_takes_no_more_messages_than_it_has_threads(settings: Settings) -> None:
    import dramatiq.worker

    from admin.processes import EmbeddedSystem, no_head_of_line_wait

    system = EmbeddedSystem(settings, threads=3)
    try:
        assert system.worker.queue_prefetch == 3
    finally:
        system.app.engine.dispose()
    saved = dramatiq.worker.QUEUE_PREFETCH
    try:
        os.environ.pop(PREFETCH_VARIABLE, None)
        no_head_of_line_wait(5)
        assert (
            dramatiq.worker.Worker(StubBroker(middleware=[]), worker_threads=5).queue_prefetch == 5
        )
        os.environ[PREFETCH_VARIABLE] = "9"  # an operator's own value stands
        no_head_of_line_wait(5)
        assert dramatiq.worker.QUEUE_PREFETCH == 9
    finally:
        dramatiq.worker.QUEUE_PREFETCH = saved
        os.environ.pop(PREFETCH_VARIABLE, None)


# Requirement 1: one owner of entry state.

PRODUCTION = ("admin", "jobs", "scheduler", "workers", "runtime", "sandbox", "domain")
OWNER = ROOT / "domain" / "queue"
ENTRY_HANDLES = {"ENTRIES", "JobQueueEntry", "E"}


def _writes_entries(tree: ast.AST) -> list[int]:
    """Lines that build an INSERT/UPDATE/DELETE of the entries table, or a new entry."""
    found: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = (
                node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            )
            first = node.args[0] if node.args else None
            first_name = (
                first.id
                if isinstance(first, ast.Name)
                else first.attr
                if isinstance(first, ast.Attribute)
                else None
            )
            if name in ("update", "insert", "delete") and first_name in ENTRY_HANDLES:
                found.append(node.lineno)
            if name == "JobQueueEntry":
                found.append(node.lineno)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            sql = node.value.lower()
            if "job_queue_entries" in sql and any(
                verb in sql for verb in ("update ", "insert ", "delete ")
            ):
                found.append(node.lineno)
    return found


def test_no_module_outside_domain_queue_writes_the_entries_table() -> None:
    offenders = []
    for package in PRODUCTION:
        for path in (ROOT / package).rglob("*.py"):
            if OWNER in path.parents or "migrations" in path.parts:
                continue
            lines = _writes_entries(ast.parse(path.read_text(), str(path)))
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert offenders == []


def test_the_scan_finds_a_write_when_there_is_one() -> None:
    tree = ast.parse(
        "conn.execute(update(ENTRIES).values(status='Ready'))\nJobQueueEntry(code='x')"
    )
    assert sorted(_writes_entries(tree)) == [1, 2]


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    configure_logging("INFO", process="test")

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]

    yield read
    configure_logging("WARNING", process="tests")


@pytest.mark.postgres
def test_a_prepared_statement_made_stale_by_a_migration_is_retried_on_a_fresh_connection() -> None:
    """Server-side prepared claim and finish: a schema change under a live connection is a
    transient error (connection invalidated), and the next connection prepares anew."""
    import uuid

    import psycopg2
    from sqlalchemy.exc import DBAPIError

    from domain.db import make_engine, single_statement
    from domain.migrations import upgrade
    from runtime.db_errors import is_transient
    from tests.conftest import PG_ADMIN_DSN, PG_URL

    name = f"jq_stale_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG_ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(PG_URL.format(db=name), pool_size=1, max_overflow=0)
    try:
        upgrade(engine)
        settings = Settings(database_url=str(engine.url))
        app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
        for code in ("A", "B"):
            add(app.session_factory, settings, code, "noop")
        Dispatcher(engine, app.broker, settings).tick(utcnow())
        (a_id, a_seq), (b_id, b_seq) = sorted(queued(app.broker, settings))  # type: ignore[arg-type]
        with single_statement(engine) as conn:
            assert claim_run(conn, a_id, a_seq, "w", 30, utcnow()) is not None
        with engine.begin() as conn:  # a migration changes a returned column under it
            conn.exec_driver_sql(
                "ALTER TABLE job_queue_entries ALTER COLUMN description TYPE varchar(300)"
            )
        with pytest.raises(DBAPIError) as raised, single_statement(engine) as conn:
            claim_run(conn, b_id, b_seq, "w", 30, utcnow())
        assert is_transient(raised.value)
        with single_statement(engine) as conn:  # the retry: a fresh connection
            assert claim_run(conn, b_id, b_seq, "w", 30, utcnow()) is not None
    finally:
        engine.dispose()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
