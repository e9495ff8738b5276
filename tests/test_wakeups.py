"""Wake-ups do not depend on which modules the caller imported (issue 15, point 7): a
program that saves an item through `jobs.sales.local.save`, and imports nothing of the
sync job, still wakes the sleeping ITEM-PRODUCT entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.queue.models import ENTRIES
from domain.queue.status import EntryStatus
from domain.queue.transitions import WEEKDAY_COLUMNS

engine = make_engine(sys.argv[1])
upgrade(engine)
with engine.begin() as conn:
    conn.execute(insert(ENTRIES).values(
        code="ITEM-PRODUCT", description="", job_name="dataverse-sync",
        parameter_string="mapping=ITEM-PRODUCT", status=EntryStatus.ON_HOLD_INACTIVITY,
        recurring=True, minutes_between_runs=30,
        earliest_start=datetime.now(UTC) + timedelta(hours=5), maximum_attempts=3, attempts=0,
        rerun_delay_seconds=60, job_timeout_seconds=600, inactivity_timeout_minutes=600,
        priority=0, user_id="", run_seq=0, **{c: True for c in WEEKDAY_COLUMNS},
    ))
from jobs.sales.local import save

assert "jobs.sales.job" not in sys.modules, "the test needs a program that never imported it"
with make_session_factory(engine).begin() as session:
    save(session, "items", {"no": "1000", "description": "Bicycle", "base_unit_of_measure": "PCS",
                            "unit_price": 1}, user="script", tz=UTC)
with engine.connect() as conn:
    print(conn.execute(select(ENTRIES.c.status)).scalar_one())
"""


def test_saving_an_item_wakes_the_sync_entry_without_importing_the_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Ready"
