"""Delivery edge cases: duplicate and stale messages, lost runs, broker failures, and
dispatchers that race. Driven tick by tick so each case is exact."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.status import EntryStatus, LogStatus
from jobs.registry import registry
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher
from scheduler.leader import LeaderLease
from tests.helpers import add, entry, logs
from workers.app import create_app
from workers.broker import build_broker


def queued(broker: StubBroker, settings: Settings) -> list[tuple[int, int]]:
    from dramatiq import Message

    return [tuple(Message.decode(m).args) for m in list(broker.queues[settings.queue_name].queue)]


@pytest.fixture
def stub(settings: Settings, engine) -> tuple[StubBroker, Dispatcher, sessionmaker[Session]]:
    broker = StubBroker(middleware=[])
    app = create_app(settings, broker=broker, engine=engine)
    return broker, Dispatcher(engine, broker, settings), app.session_factory


def test_dispatch_sends_higher_priority_first(settings: Settings, stub) -> None:
    broker, dispatcher, sessions = stub
    ids = {p: add(sessions, settings, f"P{p}", "noop", priority=p) for p in (1, 7, 3)}
    dispatcher.tick(utcnow())
    assert [entry_id for entry_id, _ in queued(broker, settings)] == [ids[7], ids[3], ids[1]]
    assert all(entry(sessions, f"P{p}").status == EntryStatus.IN_PROCESS for p in ids)


def test_a_message_delivered_twice_runs_once(settings: Settings, stub, engine) -> None:
    broker, dispatcher, sessions = stub
    entry_id = add(sessions, settings, "DUP", "noop")
    dispatcher.tick(utcnow())
    [(msg_entry, run_seq)] = queued(broker, settings)
    executor = create_app(settings, broker=StubBroker(middleware=[]), engine=engine).executor
    assert executor.execute(msg_entry, run_seq) is not None
    assert executor.execute(msg_entry, run_seq) is None  # the redelivery
    assert len(logs(sessions, "DUP")) == 1
    assert entry(sessions, "DUP").status == EntryStatus.FINISHED
    assert msg_entry == entry_id


def test_a_stale_message_for_an_edited_entry_runs_nothing(settings: Settings, stub, engine) -> None:
    broker, dispatcher, sessions = stub
    add(sessions, settings, "STALE", "noop", recurring=True, minutes_between_runs=5)
    dispatcher.tick(utcnow())
    [(entry_id, old_seq)] = queued(broker, settings)
    with sessions.begin() as session:  # the admin edits it while the message waits
        ops.edit_entry(
            session, "STALE", {"minutes_between_runs": 15}, registry, utcnow(), settings.tz
        )
    executor = create_app(settings, broker=StubBroker(middleware=[]), engine=engine).executor
    assert executor.execute(entry_id, old_seq) is None
    assert logs(sessions, "STALE") == []
    assert entry(sessions, "STALE").status == EntryStatus.READY
    broker.flush_all()
    dispatcher.tick(utcnow())
    [(_, new_seq)] = queued(broker, settings)
    assert new_seq == old_seq + 2
    assert executor.execute(entry_id, new_seq) is not None


def test_a_run_whose_worker_died_is_recovered_and_retried(settings: Settings, stub, engine) -> None:
    broker, dispatcher, sessions = stub
    add(sessions, settings, "LOST", "noop", maximum_attempts=2, rerun_delay_seconds=30)
    dispatcher.tick(utcnow())
    [(entry_id, run_seq)] = queued(broker, settings)
    executor = create_app(settings, broker=StubBroker(middleware=[]), engine=engine).executor
    from domain.queue.runs import claim_run

    with engine.begin() as conn:  # a worker starts it ... and dies
        assert claim_run(conn, entry_id, run_seq, "dead-worker", 1.0, utcnow())
    assert entry(sessions, "LOST").status == EntryStatus.IN_PROCESS
    later = utcnow() + timedelta(seconds=2)
    report = dispatcher.tick(later)
    assert report.recovered == 1
    [run] = logs(sessions, "LOST")
    assert run.status == LogStatus.ERROR and "recovered as lost" in (run.error_message or "")
    after = entry(sessions, "LOST")
    assert after.status == EntryStatus.READY
    assert after.attempts == 1
    assert after.earliest_start == later + timedelta(seconds=30)
    assert executor.execute(entry_id, run_seq) is None  # the dead worker's message, if redelivered


def test_a_lost_message_is_sent_again_after_the_dispatch_timeout(settings: Settings, stub) -> None:
    broker, dispatcher, sessions = stub
    add(sessions, settings, "LOSTMSG", "noop")
    dispatcher.tick(utcnow())
    broker.flush_all()  # the broker lost it (a restart without persistence)
    assert dispatcher.tick(utcnow()).resent == 0
    report = dispatcher.tick(utcnow() + timedelta(seconds=settings.dispatch_timeout_seconds + 1))
    assert report.resent == 1
    assert len(queued(broker, settings)) == 1


def test_a_broker_that_refuses_the_message_returns_the_entry_to_ready(
    settings: Settings, engine
) -> None:
    broker = build_broker(Settings(redis_url="redis://127.0.0.1:1/0"))  # nothing listens there
    sessions = create_app(settings, broker=StubBroker(middleware=[]), engine=engine).session_factory
    dispatcher = Dispatcher(engine, broker, settings)
    add(sessions, settings, "NOBROKER", "noop")
    report = dispatcher.tick(utcnow())
    assert report.dispatched == 1 and report.send_failures == 1
    assert entry(sessions, "NOBROKER").status == EntryStatus.READY


def test_two_dispatchers_racing_never_start_an_entry_twice(settings: Settings, engine) -> None:
    """The lease keeps one scheduler active; this checks the safety net under it: two
    dispatchers ticking at once, with no lease, claim each run once and keep categories serial."""
    sessions = create_app(settings, broker=StubBroker(middleware=[]), engine=engine).session_factory
    with sessions.begin() as session:
        ops.add_category(session, "ONE")
    for i in range(60):
        add(sessions, settings, f"R{i}", "noop")
    for i in range(5):
        add(sessions, settings, f"C{i}", "noop", category_code="ONE")
    brokers = [StubBroker(middleware=[]), StubBroker(middleware=[])]
    for b in brokers:
        b.declare_queue(settings.queue_name)
    dispatchers = [Dispatcher(engine, b, settings) for b in brokers]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def race(d: Dispatcher) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                d.tick(utcnow())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = queued(brokers[0], settings) + queued(brokers[1], settings)
    assert not errors, errors
    assert len(sent) == len(set(sent)) == 61  # 60 free entries + one of the category
    category_ids = {entry(sessions, f"C{i}").id for i in range(5)}
    assert len([s for s in sent if s[0] in category_ids]) == 1


def test_standby_scheduler_takes_over_when_the_lease_runs_out(settings: Settings, engine) -> None:
    now = utcnow()
    active = LeaderLease(engine, "A", ttl_seconds=2)
    standby = LeaderLease(engine, "B", ttl_seconds=2)
    assert active.acquire_or_renew(now)
    assert not standby.acquire_or_renew(now + timedelta(seconds=1))
    assert active.acquire_or_renew(now + timedelta(seconds=1.5))  # renewed
    assert not standby.acquire_or_renew(now + timedelta(seconds=3))
    # A dies (stops renewing): B takes over once the lease has run out
    assert standby.acquire_or_renew(now + timedelta(seconds=3.6))
    assert not active.acquire_or_renew(now + timedelta(seconds=3.7))
    # B shuts down cleanly and releases: A may take over at once
    standby.release(now + timedelta(seconds=4))
    assert active.acquire_or_renew(now + timedelta(seconds=4))


def test_a_run_finished_after_its_lease_was_recovered_does_not_move_the_entry(
    settings: Settings, stub, engine
) -> None:
    broker, dispatcher, sessions = stub
    add(sessions, settings, "ZOMBIE", "noop", maximum_attempts=1)
    dispatcher.tick(utcnow())
    [(entry_id, run_seq)] = queued(broker, settings)
    from domain.queue.runs import RunResult, claim_run, finish_run

    with engine.begin() as conn:
        claimed = claim_run(conn, entry_id, run_seq, "slow-worker", 1.0, utcnow())
        assert claimed is not None
    dispatcher.tick(utcnow() + timedelta(seconds=2))  # recovered as lost: Error
    with engine.begin() as conn:
        finished = finish_run(conn, claimed, RunResult(succeeded=True), utcnow(), settings.tz)
    assert finished.decision is None and not finished.log_written
    assert entry(sessions, "ZOMBIE").status == EntryStatus.ERROR
    [run] = logs(sessions, "ZOMBIE")
    assert run.status == LogStatus.ERROR  # the recovery's verdict stands


def test_a_category_entry_that_goes_to_sleep_frees_its_category_at_once(
    settings: Settings, stub, engine
) -> None:
    """The next entry of the category is dispatched on the wake-up, not a tick later."""
    from domain.queue.runs import RunResult, claim_run, finish_run

    broker, dispatcher, sessions = stub
    with sessions.begin() as session:
        ops.add_category(session, "CHAIN")
    common = {"category_code": "CHAIN", "recurring": True, "minutes_between_runs": 30}
    add(sessions, settings, "FIRST", "noop", priority=9, inactivity_timeout_minutes=60, **common)
    add(sessions, settings, "SECOND", "noop", priority=1, **common)
    dispatcher.tick(utcnow())
    [(entry_id, run_seq)] = queued(broker, settings)  # one at a time: FIRST only
    with engine.begin() as conn:
        claimed = claim_run(conn, entry_id, run_seq, "worker", 30.0, utcnow())
        assert claimed is not None
        idle = RunResult(succeeded=True, activity=False)
        finished = finish_run(conn, claimed, idle, utcnow(), settings.tz)
    assert finished.decision is not None
    assert finished.decision.status == EntryStatus.ON_HOLD_INACTIVITY
    assert finished.wake_scheduler  # the category is free: tick now
    dispatcher.tick(utcnow())
    assert entry(sessions, "SECOND").status == EntryStatus.IN_PROCESS


def test_data_changed_while_a_watcher_runs_is_not_lost_to_its_sleep(
    settings: Settings, stub, engine
) -> None:
    """The lost wake-up: the job read the outbox empty, an email is queued before the run
    ends, and the idle run would put the entry to sleep for its whole inactivity timeout
    with the email unsent. The change is remembered: the entry runs again at once."""
    from domain.queue.runs import RunResult, claim_run, finish_run
    from jobs.mail.compose import OUTBOX_KIND
    from jobs.wakeup import data_changed

    broker, dispatcher, sessions = stub
    add(sessions, settings, "OUTBOX", "email-dispatch", recurring=True, minutes_between_runs=1,
        inactivity_timeout_minutes=60)  # fmt: skip
    dispatcher.tick(utcnow())
    [(entry_id, run_seq)] = queued(broker, settings)
    with engine.begin() as conn:
        claimed = claim_run(conn, entry_id, run_seq, "worker", 30.0, utcnow())
        assert claimed is not None
    with sessions.begin() as session:  # an email queued while the run goes on
        assert data_changed(session, OUTBOX_KIND, settings.tz) == []  # nobody asleep to wake
    before_end = utcnow()
    with engine.begin() as conn:
        idle = RunResult(succeeded=True, activity=False)
        finished = finish_run(conn, claimed, idle, utcnow(), settings.tz)
    assert finished.decision is not None and finished.decision.status == EntryStatus.READY
    assert finished.wake_scheduler
    now = entry(sessions, "OUTBOX")
    assert now.status == EntryStatus.READY and now.earliest_start <= utcnow()
    assert now.earliest_start >= before_end - timedelta(seconds=1)
    # The remembered change is spent: the next idle run sleeps as usual.
    dispatcher.tick(utcnow())
    [_, (entry_id, run_seq)] = queued(broker, settings)
    with engine.begin() as conn:
        claimed = claim_run(conn, entry_id, run_seq, "worker", 30.0, utcnow())
        assert claimed is not None
        finished = finish_run(conn, claimed, idle, utcnow(), settings.tz)
    assert entry(sessions, "OUTBOX").status == EntryStatus.ON_HOLD_INACTIVITY


def test_data_changed_while_a_watcher_runs_does_not_touch_a_failed_run(
    settings: Settings, stub, engine
) -> None:
    from domain.queue.runs import RunResult, claim_run, finish_run
    from jobs.mail.compose import OUTBOX_KIND
    from jobs.wakeup import data_changed

    broker, dispatcher, sessions = stub
    add(sessions, settings, "OUTBOX", "email-dispatch", recurring=True, minutes_between_runs=1,
        inactivity_timeout_minutes=60, maximum_attempts=1)  # fmt: skip
    dispatcher.tick(utcnow())
    [(entry_id, run_seq)] = queued(broker, settings)
    with engine.begin() as conn:
        claimed = claim_run(conn, entry_id, run_seq, "worker", 30.0, utcnow())
        assert claimed is not None
    with sessions.begin() as session:
        data_changed(session, OUTBOX_KIND, settings.tz)
    with engine.begin() as conn:
        finish_run(conn, claimed, RunResult.failure("boom", None), utcnow(), settings.tz)
    assert entry(sessions, "OUTBOX").status == EntryStatus.ERROR


def test_an_entry_held_by_another_transaction_does_not_stall_the_others(
    settings: Settings, stub, engine
) -> None:
    """A data change holds its watchers' rows until it commits (wakeups); the dispatcher
    leaves a held row for its next tick instead of waiting, so nothing else waits."""
    from sqlalchemy import select

    from domain.queue.models import ENTRIES

    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises every writer")
    _broker, dispatcher, sessions = stub
    add(sessions, settings, "HELD", "noop")
    add(sessions, settings, "FREE", "noop")
    with engine.connect() as holder:
        holder.execute(select(ENTRIES.c.id).where(ENTRIES.c.code == "HELD").with_for_update())
        tick = threading.Thread(target=dispatcher.tick, args=(utcnow(),), daemon=True)
        tick.start()
        tick.join(timeout=10)
        waited = tick.is_alive()
        holder.rollback()  # lets a tick that waited finish
        tick.join(timeout=10)
        assert not waited, "the tick waited for the held row"
        assert entry(sessions, "FREE").status == EntryStatus.IN_PROCESS
        assert entry(sessions, "HELD").status == EntryStatus.READY
    dispatcher.tick(utcnow())
    assert entry(sessions, "HELD").status == EntryStatus.IN_PROCESS
