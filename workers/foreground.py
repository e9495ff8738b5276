"""Running an entry's job once in the calling process (Business Central's "Run once
(foreground)"): logged like any run, the entry's status and schedule untouched."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.queue import telemetry
from domain.queue.runs import RunResult, finish_foreground_run, start_foreground_run
from domain.queue.status import EntryStatus
from jobs.registry import JobContext, JobOutcome, UnknownJobError, registry
from runtime.logs import get_logger
from runtime.settings import Settings

log = get_logger("jobqueue.run")


def run_once(
    settings: Settings, sessions: sessionmaker[Session], code: str, user: str
) -> RunResult:
    worker = f"foreground:{socket.gethostname()}:{os.getpid()}"
    with sessions.begin() as session:
        entry, log_id = start_foreground_run(session.connection(), code, user, worker, utcnow())
    started = time.monotonic()
    status = EntryStatus(entry.status).value
    log.info("run.foreground", user=user, **telemetry.dimensions("foreground", entry, status))
    result = _run(settings, sessions, entry, log_id, user)
    with sessions.begin() as session:
        finish_foreground_run(session.connection(), log_id, result, utcnow())
    log.info(
        "run.finished",
        entry_id=entry.id,
        entry_code=code,
        foreground=True,
        status="success" if result.succeeded else "error",
        seconds=round(time.monotonic() - started, 3),
        error=result.error_message,
    )
    return result


def _run(
    settings: Settings, sessions: sessionmaker[Session], e: Any, log_id: int, user: str
) -> RunResult:
    """`e`: the entry's row as the run started."""
    try:
        definition = registry.get(e.job_name)
    except UnknownJobError as exc:
        return RunResult.failure(str(exc))
    ctx = JobContext(
        entry_id=e.id,
        entry_code=e.code,
        run_id=f"foreground:{log_id}",
        attempt=0,
        user_id=user,
        session_factory=sessions,
        log=log.bind(entry_code=e.code, foreground=True),
        settings=settings,
        cancelled=threading.Event(),
    )
    try:
        outcome = definition.func(e.parameter_string, ctx) or JobOutcome()
    except Exception as exc:  # the job's failure is the run's, logged like any run
        return RunResult.failure(f"{type(exc).__name__}: {exc}", exc)
    return RunResult(succeeded=True, activity=outcome.activity, counters=dict(outcome.counters))
