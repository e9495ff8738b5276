"""Issue 17, point 6: log retention: the `log-cleanup` job and the admin's "Delete
entries older than N days" and "Remove failed entries", on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from domain.clock import utcnow
from domain.queue.models import JobQueueLogEntry
from domain.queue.status import LogStatus
from jobs.registry import JobContext, JobParameterError, registry
from runtime.settings import Settings
from tests.helpers import cli_runner


def seed_log(sessions: Any) -> None:
    now = utcnow()
    with sessions.begin() as session:
        for days, status in ((30, LogStatus.SUCCESS), (10, LogStatus.ERROR),
                             (1, LogStatus.SUCCESS), (1, LogStatus.ERROR)):  # fmt: skip
            when = now - timedelta(days=days)
            session.add(JobQueueLogEntry(entry_id=None, entry_code="X", job_name="noop",
                                         run_seq=1, attempt=1, started_at=when, ended_at=when,
                                         status=status, counters={}))  # fmt: skip
        session.add(JobQueueLogEntry(entry_id=None, entry_code="X", job_name="noop", run_seq=2,
                                     attempt=1, started_at=now - timedelta(days=40),
                                     status=LogStatus.IN_PROCESS, counters={}))  # fmt: skip


def count(sessions: Any) -> int:
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(JobQueueLogEntry)).scalar_one())


def test_the_log_cleanup_job_keeps_seven_days_by_default(settings: Settings, sessions: Any) -> None:
    seed_log(sessions)
    job = registry.get("log-cleanup")
    with pytest.raises(JobParameterError, match="days must be a whole number"):
        job.validate("days=0")
    ctx = JobContext(1, "CLEANUP", "r1", 1, "", sessions, None, settings, threading.Event())
    outcome = job.func("", ctx)
    assert outcome is not None and outcome.counters == {"deleted": 2} and outcome.activity
    assert count(sessions) == 3  # the run still going is kept, however old
    again = job.func("", ctx)
    assert again is not None and not again.activity  # nothing left to do: it may sleep


def test_the_command_line_deletes_old_or_failed_log_entries(
    settings: Settings, sessions: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    seed_log(sessions)
    run = cli_runner(capsys)
    code, out, _err = run("log-entries", "delete", "--older-than", "20")
    assert code == 0 and "1 log entries deleted" in out
    code, out, _err = run("log-entries", "delete", "--failed")
    assert code == 0 and "2 log entries deleted" in out
    code, _out, err = run("log-entries", "delete", "--older-than", "0")
    assert code == 2 and "days" in err
    assert count(sessions) == 2
