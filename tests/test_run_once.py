"""Issue 17, point 5: `jobqueue run-once CODE` runs the job in the calling process (Business
Central's "Run once (foreground)"), logged like any run; the entry is not changed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.queue.status import EntryStatus, LogStatus
from runtime.settings import Settings
from tests.helpers import add, cli_runner, entry


@pytest.fixture
def run(settings: Settings, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_USER", "ada")
    return cli_runner(capsys)


def logs(sessions: Any, code: str) -> list[JobQueueLogEntry]:
    with sessions() as session:
        stmt = select(JobQueueLogEntry).where(JobQueueLogEntry.entry_code == code)
        return list(session.execute(stmt.order_by(JobQueueLogEntry.id)).scalars())


def test_a_run_once_is_logged_and_leaves_the_entry_as_it_was(
    settings: Settings, sessions: Any, run: Any
) -> None:
    add(sessions, settings, "ONCE", "noop", recurring=True, minutes_between_runs=60)
    before = entry(sessions, "ONCE")
    code, out, err = run("run-once", "ONCE")
    assert code == 0 and "ONCE ran once" in out, err
    after = entry(sessions, "ONCE")
    assert (after.status, after.earliest_start, after.attempts, after.run_seq) == (
        before.status, before.earliest_start, before.attempts, before.run_seq)  # fmt: skip
    [logged] = logs(sessions, "ONCE")
    assert logged.status == LogStatus.SUCCESS and logged.ended_at is not None
    assert logged.user_id == "ada" and logged.worker_id.startswith("foreground:")


def test_a_failing_run_once_exits_1_with_its_error_logged(
    settings: Settings, sessions: Any, run: Any
) -> None:
    add(sessions, settings, "BROKEN", "fail", parameter_string="fail_times=5")
    code, _out, err = run("run-once", "BROKEN")
    assert code == 1 and "BROKEN failed" in err
    [logged] = logs(sessions, "BROKEN")
    assert logged.status == LogStatus.ERROR and logged.error_message
    assert logged.error_call_stack and "Traceback" in logged.error_call_stack
    assert entry(sessions, "BROKEN").attempts == 0  # not counted against the entry


def test_run_once_is_refused_while_the_entry_runs(
    settings: Settings, sessions: Any, run: Any
) -> None:
    add(sessions, settings, "BUSY", "noop")
    with sessions.begin() as session:
        session.execute(update(JobQueueEntry).where(JobQueueEntry.code == "BUSY")
                        .values(status=EntryStatus.IN_PROCESS))  # fmt: skip
    code, _out, err = run("run-once", "BUSY")
    assert code == 2 and "is running" in err
    assert logs(sessions, "BUSY") == []
    assert run("run-once", "NOPE")[0] == 2
