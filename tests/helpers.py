"""Small helpers shared by the integration tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from jobs.registry import registry
from runtime.settings import Settings


def add(
    sessions: sessionmaker[Session], settings: Settings, code: str, job: str, **changes: Any
) -> int:
    with sessions.begin() as session:
        return ops.add_entry(session, code, job, changes, registry, utcnow(), settings.tz).id


def add_due(
    sessions: sessionmaker[Session], settings: Settings, code: str, job: str, **changes: Any
) -> datetime:
    """Add an entry and return when it is due, read before the scheduler can run it."""
    with sessions.begin() as session:
        added = ops.add_entry(session, code, job, changes, registry, utcnow(), settings.tz)
        return added.earliest_start


def entry(sessions: sessionmaker[Session], code: str) -> JobQueueEntry:
    with sessions() as session:
        return ops.get_entry(session, code)


def logs(sessions: sessionmaker[Session], code: str | None = None) -> list[JobQueueLogEntry]:
    with sessions() as session:
        stmt = select(JobQueueLogEntry).order_by(JobQueueLogEntry.id)
        if code is not None:
            stmt = stmt.where(JobQueueLogEntry.entry_code == code)
        return list(session.execute(stmt).scalars())


def finished_logs(sessions: sessionmaker[Session], code: str) -> list[JobQueueLogEntry]:
    return [log for log in logs(sessions, code) if log.ended_at is not None]


def cli_runner(capsys: Any) -> Any:
    """Runs `jobqueue ARGS...` in-process: (exit code, stdout, stderr)."""
    from admin.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
