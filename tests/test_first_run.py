"""The README's main command, verbatim, in a fresh virtual environment in a temporary
directory: it installs the project and runs the sandbox company on the embedded default.
Its printed summary is checked, and so is the database it leaves behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from domain.interactions.models import InteractionLogEntry
from domain.mail.models import EmailAccount, SentEmail
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.sales.defaults import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", ".*_cache", "build", "*.db", "*.key"
)
SUMMARY_ROW = re.compile(r"^(\S+)\s{2,}(\S+)\s{2,}(.+?)\s{2,}(\d+)\s{2,}(\d+)\s")


def main_command() -> str:
    """The first of the two set-up commands at the top of the README."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    first = block.splitlines()[0]
    assert "jobqueue demo" in first
    return first


def _table(out: str) -> dict[str, tuple[str, str, int, int, str]]:
    """entry -> (job, status, runs, failed runs, the whole line) from the summary table."""
    lines = out.split("\nentry ", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = {}
    for line in lines:
        match = SUMMARY_ROW.match(line)
        assert match, line
        code, job, status, runs, failed = match.groups()
        rows[code] = (job, status.strip(), int(runs), int(failed), line)
    return rows


def _line(out: str, prefix: str) -> str:
    [line] = [x for x in out.splitlines() if x.startswith(prefix)]
    return line.removeprefix(prefix)


def test_the_readme_main_command_runs_the_sandbox_company_in_a_fresh_venv(
    tmp_path: Path,
) -> None:
    project = tmp_path / "bc-jobqueue"
    shutil.copytree(ROOT, project, ignore=NOT_SOURCES)
    env = {  # the embedded default: no database or broker server configured
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBQUEUE_", "DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV"))
    }
    done = subprocess.run(
        ["bash", "-c", main_command()],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert "Every check passed." in out

    # every default synchronization entry ran, in dependency order
    order = [spec.entry_code for spec in DEFAULTS]
    assert _line(out, "Synchronization order: ").split(" > ") == order
    rows = _table(out)
    for code in [*order, "EMAIL-OUTBOX", "EMAIL-LOGGING"]:
        job, status, runs, failed, _ = rows[code]
        assert job in {"dataverse-sync", "email-dispatch", "email-logging"}, rows[code]
        assert runs >= 1 and failed == 0 and status != "Error", rows[code]

    # emails went to the local SMTP server within its rate limit
    emails = re.fullmatch(
        r"(\d+) of (\d+) sent; the SMTP server received (\d+) "
        r"\(busiest minute (\d+), limit (\d+)/min\), Graph sendMail (\d+)",
        _line(out, "Emails: "),
    )
    assert emails, _line(out, "Emails: ")
    sent, queued, smtp, busiest, limit, graph = map(int, emails.groups())
    assert sent == queued > 0 and smtp + graph == queued and smtp > 0
    assert busiest <= limit

    # the shared mailbox was logged and emptied
    mailbox = re.fullmatch(
        r"(\d+) messages, (\d+) archived, (\d+) left in the Inbox; "
        r"(\d+) interactions logged \(expected (\d+)\)",
        _line(out, "Shared mailbox: "),
    )
    assert mailbox, _line(out, "Shared mailbox: ")
    messages, archived, left, logged, expected = map(int, mailbox.groups())
    assert archived == messages and left == 0 and logged == expected > 0

    # the entries that went to sleep are reported with their inactivity timeout
    sleeping = _line(out, "Sleeping: ").split(", ")
    assert {"EMAIL-OUTBOX", "EMAIL-LOGGING", "ITEM-PRODUCT"} <= set(sleeping)

    # and the database the demo left behind says the same
    engine = create_engine(f"sqlite:///{project / 'jobqueue-demo.db'}")
    with Session(engine) as session:
        runs = session.scalars(select(JobQueueLogEntry).order_by(JobQueueLogEntry.started_at))
        first_runs = list(dict.fromkeys(r.entry_code for r in runs if r.entry_code in order))
        assert first_runs == order
        for entry in session.scalars(select(JobQueueEntry)):
            note = rows[entry.code][4]
            if entry.code in sleeping:
                assert entry.status.value == "On Hold with Inactivity Timeout"
                assert f"(inactivity timeout {entry.inactivity_timeout_minutes} min)" in note
        smtp_id = session.scalar(select(EmailAccount.id).where(EmailAccount.name == "Office"))
        minutes = Counter(
            s.sent_at.replace(second=0, microsecond=0)
            for s in session.scalars(select(SentEmail).where(SentEmail.account_id == smtp_id))
        )
        assert sum(minutes.values()) == smtp and max(minutes.values()) <= limit
        assert len(session.scalars(select(InteractionLogEntry)).all()) == logged
    engine.dispose()
