"""`jobqueue demo`: seeds a handful of entries that show the queue's rules, runs the
embedded system until they settle, wakes the sleeping one, and prints a summary."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, select

from admin import entries as ops
from admin.processes import EmbeddedSystem
from admin.tables import render_table
from domain.clock import utcnow
from domain.models import JobQueueCategory, JobQueueEntry, JobQueueLogEntry
from domain.status import EntryStatus, LogStatus
from jobs.registry import registry
from jobs.wakeup import data_changed
from runtime.logs import get_logger
from runtime.settings import Settings

log = get_logger("admin.demo")

DEMO_ENTRIES: list[tuple[str, str, dict[str, Any]]] = [
    ("DEMO-NOOP", "noop", {"recurring": True, "minutes_between_runs": 1}),
    (
        "DEMO-IDLE",
        "idle",
        {
            "recurring": True,
            "minutes_between_runs": 1,
            "inactivity_timeout_minutes": 60,
            "parameter_string": "watch=demo",
        },
    ),
    ("DEMO-FLAKY", "fail", {"parameter_string": "fail_times=1", "rerun_delay_seconds": 1}),
    (
        "DEMO-BROKEN",
        "fail",
        {
            "parameter_string": "message=the demo says no",
            "maximum_attempts": 2,
            "rerun_delay_seconds": 1,
        },
    ),
    (
        "DEMO-TIMEOUT",
        "sleep",
        {"parameter_string": "seconds=30", "job_timeout_seconds": 1, "maximum_attempts": 1},
    ),
    (
        "DEMO-CAT-1",
        "sleep",
        {"parameter_string": "seconds=0.5", "category_code": "DEMO", "priority": 10},
    ),
    ("DEMO-CAT-2", "sleep", {"parameter_string": "seconds=0.5", "category_code": "DEMO"}),
]
SETTLED = {EntryStatus.FINISHED, EntryStatus.ERROR, EntryStatus.ON_HOLD_INACTIVITY}


def _seed(system: EmbeddedSystem) -> None:
    sessions = system.app.session_factory
    with sessions.begin() as session:
        session.execute(delete(JobQueueLogEntry).where(JobQueueLogEntry.entry_code.like("DEMO-%")))
        session.execute(delete(JobQueueEntry).where(JobQueueEntry.code.like("DEMO-%")))
        if session.get(JobQueueCategory, "DEMO") is None:
            ops.add_category(session, "DEMO", "demo entries that run one at a time")
        for code, job, changes in DEMO_ENTRIES:
            ops.add_entry(session, code, job, changes, registry, utcnow(), system.settings.tz)


def _settled(system: EmbeddedSystem) -> bool:
    with system.app.session_factory() as session:
        rows = session.execute(
            select(JobQueueEntry.code, JobQueueEntry.status, JobQueueEntry.run_seq).where(
                JobQueueEntry.code.like("DEMO-%")
            )
        ).all()
    for code, status, run_seq in rows:
        if code == "DEMO-NOOP":
            if run_seq < 1 or status == EntryStatus.IN_PROCESS:
                return False
        elif status not in SETTLED:
            return False
    return True


def _wait(system: EmbeddedSystem, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if _settled(system):
            return True
        time.sleep(0.2)
    return False


def summary(system: EmbeddedSystem) -> str:
    with system.app.session_factory() as session:
        entries = (
            session.execute(
                select(JobQueueEntry)
                .where(JobQueueEntry.code.like("DEMO-%"))
                .order_by(JobQueueEntry.code)
            )
            .scalars()
            .all()
        )
        runs = dict(
            session.execute(
                select(JobQueueLogEntry.entry_code, func.count())
                .where(JobQueueLogEntry.entry_code.like("DEMO-%"))
                .group_by(JobQueueLogEntry.entry_code)
            ).all()
        )
        failures = dict(
            session.execute(
                select(JobQueueLogEntry.entry_code, func.count())
                .where(
                    JobQueueLogEntry.entry_code.like("DEMO-%"),
                    JobQueueLogEntry.status == LogStatus.ERROR,
                )
                .group_by(JobQueueLogEntry.entry_code)
            ).all()
        )
    rows = [
        (
            e.code,
            e.job_name,
            e.status.value,
            runs.get(e.code, 0),
            failures.get(e.code, 0),
            "sleeping until " + e.earliest_start.strftime("%H:%M:%S UTC")
            if e.status == EntryStatus.ON_HOLD_INACTIVITY
            else "",
        )
        for e in entries
    ]
    return render_table(("entry", "job", "status", "runs", "failed runs", "note"), rows)


def run_demo(settings: Settings, timeout: int = 60) -> int:
    with EmbeddedSystem(settings) as system:
        _seed(system)
        log.info("demo.seeded", entries=[code for code, _, _ in DEMO_ENTRIES])
        deadline = time.monotonic() + timeout
        if not _wait(system, deadline):
            print(summary(system))
            log.error("demo.timeout", seconds=timeout)
            return 1
        with system.app.session_factory.begin() as session:
            woken = data_changed(session, "demo", settings.tz)
        log.info("demo.data_changed", kind="demo", woken=woken)
        time.sleep(0.5)
        settled = _wait(system, deadline)
        print(summary(system))
        return 0 if settled else 1
