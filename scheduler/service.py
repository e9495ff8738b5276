"""The scheduler process: an APScheduler interval job ticks the dispatcher about once a
second, and a wake-up (NOTIFY or in-process) runs a tick at once.

A database outage is one warning, ticks backed off while it lasts, and one line
when it is over; an unexpected error is logged with its traceback once, not
every tick. A wake-up while a tick runs makes that tick go once more instead of
asking APScheduler for a second instance, so a healthy leader logs no
"maximum number of running instances" warnings.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from dramatiq import Broker
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.queue.notify import add_local_listener, remove_local_listener
from jobs.registry import registry
from jobs.wakeup import data_changed
from runtime.db_errors import is_transient
from runtime.health import Heartbeat
from runtime.logs import get_logger
from runtime.outage import Outage
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher, TickReport
from scheduler.leader import LeaderLease
from scheduler.listener import WakeListener
from workers.executor import make_worker_id

log = get_logger("scheduler.service")
TICK_JOB = "dispatch-tick"
PROBE_JOB = "change-probe"
# Changes written behind the application's back are looked for every this many ticks.
PROBE_EVERY_TICKS = 15
SOON = 0.25  # seconds


class _SkippedRunsFilter(logging.Filter):
    """APScheduler warns when a run of the tick is skipped because one is still running or
    was late; with `coalesce` and one instance that is the design, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "maximum number of running instances reached" in message or "was missed by" in message
        )


logging.getLogger("apscheduler.scheduler").addFilter(_SkippedRunsFilter())
logging.getLogger("apscheduler.executors.default").addFilter(_SkippedRunsFilter())


class SchedulerService:
    def __init__(self, settings: Settings, engine: Engine, broker: Broker) -> None:
        self.settings = settings
        self.engine = engine
        self.dispatcher = Dispatcher(engine, broker, settings)
        self.holder = make_worker_id()
        self.lease = LeaderLease(engine, self.holder, settings.leader_ttl_seconds)
        self.database = Outage("database", logger=log)
        self.listener = WakeListener(engine, self.wake, self.database)
        self.last_tick_at: datetime | None = None
        # Liveness: a tick (leader or standby) at least every few tick intervals.
        self.heartbeat = Heartbeat(max(15.0, settings.tick_seconds * 10))
        self._aps = BackgroundScheduler(timezone="UTC")
        self._tick_lock = threading.Lock()
        self._again = threading.Event()
        self._in_tick_job = False
        self._last_error: str | None = None

    @property
    def is_active(self) -> bool:
        return self.lease.is_leader

    def start(self) -> None:
        self._aps.add_job(
            self._tick_job,
            "interval",
            seconds=self.settings.tick_seconds,
            id=TICK_JOB,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=utcnow(),
        )
        self._aps.add_job(
            self._probe_job,
            "interval",
            seconds=self.settings.tick_seconds * PROBE_EVERY_TICKS,
            id=PROBE_JOB,
            max_instances=1,
            coalesce=True,
        )
        self._aps.start()
        self.listener.start()
        add_local_listener(self.wake)
        log.info("scheduler.started", holder=self.holder, tick_seconds=self.settings.tick_seconds)

    def stop(self) -> None:
        """Idempotent: stop ticking, then hand the lease over so a standby takes over at once."""
        if not self._aps.running:
            return
        remove_local_listener(self.wake)
        self.listener.stop()
        self._aps.shutdown(wait=True)
        if self.lease.is_leader:
            self.lease.release(utcnow())
        log.info("scheduler.stopped", holder=self.holder)

    def wake(self) -> None:
        """Tick now; if a tick is running, it runs once more when done."""
        self._again.set()
        if self._in_tick_job:
            return  # the running tick job sees _again and goes once more
        if self._aps.running:
            try:
                self._aps.modify_job(TICK_JOB, next_run_time=utcnow())
            except Exception:  # the job is gone while shutting down
                return

    def tick(self) -> TickReport | None:
        """One pass; returns None when this process is the standby."""
        with self._tick_lock:
            now = utcnow()
            was_leader = self.lease.is_leader
            if not self.lease.acquire_or_renew(now):
                if was_leader:
                    log.warning("scheduler.leadership_lost", holder=self.holder)
                self.last_tick_at = now
                self.heartbeat.beat()
                return None
            if not was_leader:
                log.info("scheduler.became_active", holder=self.holder)
            report = self.dispatcher.tick(now)
            self.last_tick_at = now
            self.heartbeat.beat()
            if report.dispatched or report.recovered or report.resent or report.woken:
                log.info(
                    "scheduler.tick",
                    dispatched=report.dispatched,
                    resent=report.resent,
                    recovered=report.recovered,
                    woken=report.woken,
                    expired=report.expired,
                    send_failures=report.send_failures,
                )
            return report

    def probe_changes(self) -> list[str]:
        """Wakes the sleeping entries that watch data another program changed in plain
        SQL (the jobs' change probes say which kinds); the leader alone does it."""
        if not self.lease.is_leader:
            return []
        woken: list[str] = []
        with Session(self.engine) as session, session.begin():
            kinds = set().union(*(probe(session.connection()) for probe in registry.probes()))
            for kind in sorted(kinds):
                codes = data_changed(session, kind, self.settings.tz)
                if codes:
                    log.info(
                        "entries.woken", codes=codes, reason=f"{kind} changed (found by probe)"
                    )
                woken += codes
        return woken

    def _probe_job(self) -> None:
        try:
            self.probe_changes()
        except Exception as exc:  # an outage is the tick's to report, once
            if not is_transient(exc):
                log.error("scheduler.probe_failed", error=str(exc))

    def _tick_job(self) -> None:
        self._in_tick_job = True
        try:
            self._ticks()
        finally:
            self._in_tick_job = False

    def _ticks(self) -> None:
        """Entries due before the next regular tick are dispatched on time, not a tick late:
        due within SOON the tick runs again itself; later, APScheduler is asked to run it then."""
        for _ in range(10):  # bounded: a storm of wake-ups cannot pin the tick
            self._again.clear()
            if not self.database.ready():
                self.heartbeat.beat()  # alive, backing off while the database is away
                return
            try:
                report = self.tick()
            except Exception as exc:
                self._tick_failed(exc)
                return
            self.database.succeeded()
            if self._last_error is not None:
                log.info("scheduler.tick_recovered", error=self._last_error)
                self._last_error = None
            next_due = report.next_due if report else None
            if next_due is not None and (wait := (next_due - utcnow()).total_seconds()) < SOON:
                self._again.wait(max(0.0, wait))
                continue
            if next_due is not None:
                self._run_tick_at(next_due)
            if not self._again.is_set():
                return

    def _tick_failed(self, exc: Exception) -> None:
        """A database outage is the outage's story; anything else is logged once."""
        self.heartbeat.beat()  # the process is alive and trying; /readyz tells the rest
        if is_transient(exc):
            self.database.failed(exc)
            return
        error = f"{type(exc).__name__}: {exc}"
        if error != self._last_error:
            self._last_error = error
            log.exception("scheduler.tick_failed")

    def _run_tick_at(self, moment: datetime) -> None:
        job = self._aps.get_job(TICK_JOB) if self._aps.running else None
        if job is not None and job.next_run_time is not None and moment < job.next_run_time:
            self._aps.modify_job(TICK_JOB, next_run_time=moment)
