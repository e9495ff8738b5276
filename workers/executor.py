"""Executes one run: claim it, run the job under its timeout, finish it.

The job runs in a thread of its own so that a job that overruns its timeout can
be abandoned (and interrupted where Python allows) while the worker records the
failure and goes on. On worker shutdown a job gets a grace period; one still
running after it is handed back: the entry returns to Ready without spending an
attempt, and the log says so.

Leases are honest: the heartbeat renews exactly the runs this process holds, and
a run whose lease could not be renewed for most of the lease period is stopped
before the scheduler may recover it, so a recovered run never overlaps a live
one. The finish outlives a database blip (retried with backoff for up to the
lease); a finish that cannot be applied for any other reason puts that entry
alone in Error with the reason. A claim that meets a database outage raises
`ClaimUnavailableError`, which Dramatiq retries promptly (see `workers.broker`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

from dramatiq import Retry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from domain.clock import utcnow
from domain.db import single_statement
from domain.queue import telemetry
from domain.queue.notify import call_local_listeners
from domain.queue.runs import (
    ClaimedRun,
    FinishedRun,
    RunResult,
    claim_run,
    fail_entry,
    finish_fast,
    finish_locked,
    hand_back,
    remove_finished_one_off,
    renew_leases,
)
from jobs.notifications.send import Notifier
from jobs.registry import JobContext, JobOutcome, JobRegistry, UnknownJobError
from runtime.db_errors import describe, is_transient
from runtime.logs import get_logger
from runtime.outage import Outage
from runtime.settings import Settings
from workers.job_threads import (
    HandedBackError,
    JobHandle,
    JobThreads,
    JobTimeoutError,
    LeaseLostError,
)

log = get_logger("workers.executor")
# A job is stopped when its lease has gone unrenewed for this share of the lease period.
LEASE_CANCEL_SHARE = 0.8


class ClaimUnavailableError(Retry):
    """The claim met a database outage: Dramatiq retries the message (nothing ran), and
    does not log it as an error (the executor's outage line tells the story)."""


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
        notifier: Notifier | None = None,
    ) -> None:
        self.engine = engine
        self.notifier = notifier
        self.session_factory = session_factory
        self.registry = registry
        self.settings = settings
        self.worker_id = make_worker_id()
        self.shutting_down = threading.Event()
        self.shutdown_grace_seconds = shutdown_grace_seconds
        # The runs this process holds, and when each lease was last renewed (monotonic).
        self._held: dict[tuple[int, int], float] = {}
        self._held_lock = threading.Lock()
        self.job_threads = JobThreads()
        self.database = Outage("database", logger=log)

    @property
    def active_runs(self) -> int:
        return len(self._held)

    def execute(self, entry_id: int, run_seq: int) -> RunResult | None:
        """Run the dispatched run once; a duplicate or stale message runs nothing."""
        try:
            with single_statement(self.engine) as conn:
                claimed = claim_run(
                    conn, entry_id, run_seq, self.worker_id, self.settings.lease_seconds, utcnow()
                )
        except Exception as exc:
            if is_transient(exc):
                self.database.failed(exc)
                raise ClaimUnavailableError(describe(exc)) from None
            raise
        self.database.succeeded()
        if claimed is None:
            log.info("run.skipped", entry_id=entry_id, run_seq=run_seq, reason="stale or duplicate")
            return None
        key = (entry_id, run_seq)
        with self._held_lock:
            self._held[key] = time.monotonic()
        log.info("run.started", **telemetry.dimensions("started", claimed.entry, "In Process"))
        started = time.monotonic()
        try:
            result, handed_back = self._run_job(claimed)
            decided: str | None = None
            if handed_back:
                self._apply(claimed, result, handed_back=True)
            else:
                finished = self._apply(claimed, result, handed_back=False)
                if finished is not None and finished.decision is not None:
                    result = finished.result
                    decided = finished.decision.status.value
                if finished is not None and finished.wake_scheduler:
                    call_local_listeners()
        finally:
            with self._held_lock:
                self._held.pop(key, None)
        self._summarize(claimed, result, started, handed_back, decided)
        if decided is not None and self.notifier is not None:  # the run is recorded
            self.notifier.after_run(claimed.entry, result.succeeded, decided, result.error_message)
        return result

    def renew_leases(self) -> int:
        """Heartbeat: renew the leases of the runs held now; returns how many were renewed."""
        with self._held_lock:
            held = list(self._held)
        if not held:
            return 0
        try:
            with self.engine.begin() as conn:
                renewed = renew_leases(
                    conn, held, self.worker_id, self.settings.lease_seconds, utcnow()
                )
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.database.failed(exc)
            return 0
        self.database.succeeded()
        now = time.monotonic()
        with self._held_lock:
            for key in renewed:
                if key in self._held:
                    self._held[key] = now
        return len(renewed)

    def lease_age(self, entry_id: int, run_seq: int) -> float:
        """Seconds since the run's lease was last renewed (0 for a run not held)."""
        renewed = self._held.get((entry_id, run_seq))
        return 0.0 if renewed is None else time.monotonic() - renewed

    def _apply(
        self, claimed: ClaimedRun, result: RunResult, *, handed_back: bool
    ) -> FinishedRun | None:
        """Record the end of the run: retried on database outages for up to the lease; any
        other failure puts this entry alone in Error with the reason."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
            stop=stop_after_delay(self.settings.lease_seconds),
            before_sleep=self._finish_retried,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    finished = self._finish(claimed, result, handed_back)
            self.database.succeeded()
            return finished
        except Exception as exc:
            self._quarantine(claimed, result, exc)
            return None

    def _finish(
        self, claimed: ClaimedRun, result: RunResult, handed_back: bool
    ) -> FinishedRun | None:
        """One round trip on PostgreSQL when nobody changed the entry while it ran."""
        tz = self.settings.tz
        if handed_back:
            with self.engine.begin() as conn:
                hand_back(conn, claimed, result, utcnow(), tz)
            return None
        with single_statement(self.engine) as conn:
            finished, log_written = finish_fast(conn, claimed, result, utcnow(), tz)
        if finished is None:
            with self.engine.begin() as conn:
                finished = finish_locked(conn, claimed, result, utcnow(), tz, log_written)
        if not (self.settings.keep_one_off_entries or claimed.entry.recurring):
            with self.engine.begin() as conn:
                remove_finished_one_off(conn, finished, claimed)
        return finished

    def _finish_retried(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.database.failed(error or "recording the end of a run failed")

    def _quarantine(self, claimed: ClaimedRun, result: RunResult, exc: Exception) -> None:
        entry = claimed.entry
        if is_transient(exc):
            # Still unreachable after the lease: the scheduler recovers the run once the
            # database is back; the log says what was lost.
            log.error(
                "run.finish_lost",
                entry_id=entry.id,
                entry_code=entry.code,
                run_id=claimed.run_id,
                run_status="success" if result.succeeded else "error",
                error=describe(exc),
            )
            return
        outcome = "succeeded" if result.succeeded else f"failed ({result.error_message})"
        reason = f"the run {outcome}, but recording its end failed: {type(exc).__name__}: {exc}"
        log.error("run.finish_failed", entry_id=entry.id, entry_code=entry.code, error=reason)
        try:
            with self.engine.begin() as conn:
                fail_entry(
                    conn,
                    entry.id,
                    reason,
                    utcnow(),
                    run_seq=entry.run_seq,
                    log_id=claimed.log_id,
                )
        except Exception:
            log.exception("run.quarantine_failed", entry_id=entry.id, entry_code=entry.code)

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
        lease = self.settings.lease_seconds
        poll = min(0.5, lease / 10)
        while not job.done.wait(timeout=min(poll, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            unrenewed = self.lease_age(entry.id, entry.run_seq)
            if unrenewed > lease * LEASE_CANCEL_SHARE:
                self._interrupt(job, cancelled, LeaseLostError)
                return RunResult.failure(
                    f"the run's lease could not be renewed for {unrenewed:.1f} s (of "
                    f"{lease:g} s); the job was stopped so that it cannot overlap a recovery "
                    "of the run"
                ), False
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

    def _summarize(
        self,
        claimed: ClaimedRun,
        result: RunResult,
        started: float,
        handed_back: bool,
        decided: str | None = None,
    ) -> None:
        """The run's finished line, with Business Central's telemetry (AL0000E26); a failed
        run adds its errored trace (AL0000HE7, with the stack trace), and one that spent
        its last attempt the failed trace (AL0000JRG)."""
        entry = claimed.entry
        status = "handed_back" if handed_back else ("success" if result.succeeded else "error")
        after = decided or ("Ready" if handed_back else "")
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        bc = telemetry.dimensions(
            "finished",
            entry,
            after,
            alJobQueueExecutionTimeInMs=int(elapsed_ms),
            alJobQueueResult="Success" if result.succeeded else "Fail",
        )
        log.info(
            "run.finished",
            entry_id=entry.id,
            entry_code=entry.code,
            job=entry.job_name,
            run_id=claimed.run_id,
            attempt=entry.attempts,
            status=status,
            activity=result.activity,
            duration_ms=elapsed_ms,
            counters=result.counters,
            error=result.error_message,
            **bc,
        )
        if result.succeeded or handed_back:
            return
        stack = {"alJobQueueStacktrace": result.error_call_stack or ""}
        error = {"alJobQueueErrorMessage": result.error_message or ""}
        log.warning(
            "run.errored", **telemetry.dimensions("errored", entry, after, **error, **stack)
        )
        if decided == "Error":
            log.error(
                "run.failed", **telemetry.dimensions("failed", entry, after, **error, **stack)
            )
