"""Executes one run: claim it, run the job under its timeout, finish it.

The job runs in a thread of its own so that a job that overruns its timeout can
be abandoned (and interrupted where Python allows) while the worker records the
failure and goes on. On worker shutdown a job gets a grace period; one still
running after it is handed back: the entry returns to Ready without spending an
attempt, and the log says so.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.models import ENTRIES
from domain.runs import ClaimedRun, RunResult, claim_run, finish_run, renew_leases
from domain.status import EntryStatus
from domain.wakeups import call_local_listeners
from jobs.registry import JobContext, JobOutcome, JobRegistry, UnknownJobError
from runtime.logs import get_logger
from runtime.settings import Settings
from workers.job_threads import HandedBackError, JobHandle, JobThreads, JobTimeoutError

E = ENTRIES
log = get_logger("workers.executor")


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunExecutor:
    def __init__(
        self,
        engine: Engine,
        session_factory: sessionmaker[Session],
        registry: JobRegistry,
        settings: Settings,
        shutdown_grace_seconds: float = 20.0,
    ) -> None:
        self.engine = engine
        self.session_factory = session_factory
        self.registry = registry
        self.settings = settings
        self.worker_id = make_worker_id()
        self.shutting_down = threading.Event()
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._active = 0
        self._active_lock = threading.Lock()
        self.job_threads = JobThreads()

    @property
    def active_runs(self) -> int:
        return self._active

    def execute(self, entry_id: int, run_seq: int) -> RunResult | None:
        """Run the dispatched run once; a duplicate or stale message runs nothing."""
        with self.engine.begin() as conn:
            claimed = claim_run(
                conn, entry_id, run_seq, self.worker_id, self.settings.lease_seconds, utcnow()
            )
        if claimed is None:
            log.info("run.skipped", entry_id=entry_id, run_seq=run_seq, reason="stale or duplicate")
            return None
        with self._active_lock:
            self._active += 1
        started = time.monotonic()
        try:
            result, handed_back = self._run_job(claimed)
        finally:
            with self._active_lock:
                self._active -= 1
        if handed_back:
            self._hand_back(claimed, result)
        else:
            with self.engine.begin() as conn:
                finished = finish_run(conn, claimed, result, utcnow(), self.settings.tz)
            if finished.wake_scheduler:
                call_local_listeners()
        self._summarize(claimed, result, started, handed_back)
        return result

    def renew_leases(self) -> int:
        if self._active == 0:
            return 0
        with self.engine.begin() as conn:
            return renew_leases(conn, self.worker_id, self.settings.lease_seconds, utcnow())

    def _run_job(self, claimed: ClaimedRun) -> tuple[RunResult, bool]:
        entry = claimed.entry
        try:
            definition = self.registry.get(entry.job_name)
        except UnknownJobError as exc:
            return RunResult.failure(str(exc)), False
        cancelled = threading.Event()
        ctx = JobContext(
            entry_id=entry.id,
            entry_code=entry.code,
            run_id=claimed.run_id,
            attempt=entry.attempts,
            user_id=entry.user_id,
            session_factory=self.session_factory,
            log=log.bind(entry_id=entry.id, entry_code=entry.code, run_id=claimed.run_id),
            settings=self.settings,
            cancelled=cancelled,
        )
        job = self.job_threads.start(lambda: definition.func(entry.parameter_string, ctx))
        return self._await(job, entry, cancelled)

    def _await(
        self, job: JobHandle, entry: Any, cancelled: threading.Event
    ) -> tuple[RunResult, bool]:
        deadline = time.monotonic() + entry.job_timeout_seconds
        grace_end: float | None = None
        while not job.done.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            if now >= deadline:
                self._interrupt(job, cancelled, JobTimeoutError)
                return RunResult.failure(
                    f"job timeout exceeded: ran longer than {entry.job_timeout_seconds} s"
                ), False
            if self.shutting_down.is_set():
                grace_end = grace_end or now + self.shutdown_grace_seconds
                if now >= grace_end:
                    self._interrupt(job, cancelled, HandedBackError)
                    return RunResult.failure("worker shut down; run handed back"), True
        if job.error is not None:
            message = f"{type(job.error).__name__}: {job.error}"
            return RunResult.failure(message, job.error), False
        outcome = job.outcome or JobOutcome()
        return RunResult(
            succeeded=True, activity=outcome.activity, counters=dict(outcome.counters)
        ), False

    @staticmethod
    def _interrupt(job: JobHandle, cancelled: threading.Event, exc: type[Exception]) -> None:
        cancelled.set()
        job.abandon(exc)

    def _hand_back(self, claimed: ClaimedRun, result: RunResult) -> None:
        """Log the interrupted run and make the entry Ready again, its attempt not spent."""
        entry = claimed.entry
        now = utcnow()
        with self.engine.begin() as conn:
            finished = finish_run(conn, claimed, result, now, self.settings.tz)
            if finished.decision is not None:
                conn.execute(
                    update(E)
                    .where(E.c.id == entry.id, E.c.run_seq == entry.run_seq)
                    .values(
                        status=EntryStatus.READY,
                        earliest_start=now,
                        attempts=max(0, entry.attempts - 1),
                    )
                )

    def _summarize(
        self, claimed: ClaimedRun, result: RunResult, started: float, handed_back: bool
    ) -> None:
        entry = claimed.entry
        status = "handed_back" if handed_back else ("success" if result.succeeded else "error")
        log.info(
            "run.finished",
            entry_id=entry.id,
            entry_code=entry.code,
            job=entry.job_name,
            run_id=claimed.run_id,
            attempt=entry.attempts,
            status=status,
            activity=result.activity,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            counters=result.counters,
            error=result.error_message,
        )
