"""`jobqueue demo`: the whole system on the embedded default, against a sandbox company.

It starts the local emulators (identity platform + Graph mail, Dataverse) and an SMTP
server, sets Cronus up the way an admin would, and runs the scheduler and a Dramatiq
worker in this process on a fresh SQLite database. The first pass runs every entry once
(synchronization in dependency order, the outbox, the shared mailbox); the second asks each
entry that is still Ready to run again at once, as an admin's "Run now" would, and with
nothing left to do they go to sleep with their inactivity timeout. Then it prints the
summary and exits, 0 when every check passed."""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session, sessionmaker

from admin.demo_report import Progress, Snapshot, collect, render
from admin.demo_setup import set_up
from admin.processes import EmbeddedSystem, start_health
from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.limits import EntryError
from domain.queue.status import EntryStatus
from jobs.sales import rerun
from runtime.logs import get_logger
from runtime.secrets import SecretBox
from runtime.settings import Settings
from sandbox import company
from sandbox.company import MAX_CUSTOMERS
from sandbox.services import sandbox_services

log = get_logger("admin.demo")


@dataclass(frozen=True)
class DemoOptions:
    database: Path = Path("jobqueue-demo.db")
    customers: int = 6
    rate_limit: int = 20  # the SMTP account's emails per minute
    timeout: float = 180.0  # seconds for both passes
    keep_running: bool = False
    summary_json: Path | None = None

    def check(self) -> DemoOptions:
        if not 1 <= self.customers <= MAX_CUSTOMERS:
            raise ValueError(f"--customers must be 1 to {MAX_CUSTOMERS}, not {self.customers}")
        if self.rate_limit < 0:
            raise ValueError("--rate-limit is emails per minute, 0 (no limit) or more")
        if self.database.exists() and not self.database.is_file():
            raise ValueError(f"--database {self.database} exists and is not a file")
        return self


class Interrupted(Exception):
    """SIGTERM or Ctrl-C before the demo finished."""


def _fresh(database: Path) -> str:
    """The demo's own SQLite file, new each time: never the database of a real system."""
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.unlink(missing_ok=True)
    return f"sqlite:///{database.resolve()}"


@dataclass
class Driver:
    """Waits for passes to finish while the progress is printed."""

    sessions: sessionmaker[Session]
    progress: Progress
    stop: threading.Event
    deadline: float  # time.monotonic()

    def wait(self, done: Callable[[Snapshot], bool]) -> bool:
        """False when the time ran out; raises Interrupted on a stop signal."""
        while not done(self.progress.poll()):
            if time.monotonic() > self.deadline:
                return False
            if self.stop.wait(0.25):
                raise Interrupted
        return True

    def first_pass(self) -> bool:
        return self.wait(
            lambda now: all(
                now.finished.get(code, 0) >= 1 and status != EntryStatus.IN_PROCESS
                for code, status in now.statuses.items()
            )
        )

    def second_pass(self) -> bool:
        before = self.progress.poll()
        ready = [code for code, s in before.statuses.items() if s == EntryStatus.READY]
        for code in ready:
            try:
                with self.sessions.begin() as session:
                    ops.run_now(session, code, utcnow())
            except EntryError:  # it started meanwhile: that run is the one waited for
                continue
        return self.wait(
            lambda now: all(
                now.finished.get(code, 0) > before.finished.get(code, 0)
                and now.statuses[code] != EntryStatus.IN_PROCESS
                for code in ready
            )
        )


def _header(out: TextIO, settings: Settings, customers: int, emails: int, messages: int) -> None:
    out.write(
        f"Sandbox company Cronus: {customers} customers with a posted invoice each, "
        f"{emails} emails in the outbox, {messages} messages in the shared mailbox.\n"
        f"Database {settings.database_url}, in-process broker; Dataverse, Microsoft identity, "
        "Graph mail and SMTP run on 127.0.0.1.\n\n"
    )
    out.flush()


def _drive(driver: Driver, out: TextIO, between: Callable[[], None]) -> tuple[bool, bool]:
    """(settled, interrupted); `between` runs between the passes."""
    try:
        settled = driver.first_pass()
        if settled:
            between()
            out.write("\nSecond pass: every entry still Ready runs again now.\n")
            settled = driver.second_pass()
        return settled, False
    except Interrupted:
        return False, True


def _sell_in_sales(services: Any, sessions: sessionmaker[Session], out: TextIO) -> None:
    """A salesperson in Sales submits an order and activates a quote; the entries that
    take them run now (as a Dataverse webhook would make them)."""
    company.sell_in_sales(services.dataverse)
    out.write("\nIn Dynamics 365 Sales, an order is submitted and a quote activated.\n")
    with sessions.begin() as session:
        for mapping in ("SALESORDER-ORDER", "QUOTE-SALESQUOTE"):
            rerun.run_now(session, mapping, utcnow())


def _console(settings: Settings, engine: Any, sessions: Any, out: TextIO) -> Any:
    """The console on JOBQUEUE_WEB_PORT, with an admin made for the demo (printed once)."""
    import secrets

    from admin.processes import WebThread
    from admin.users_cli import web_port
    from domain.clock import utcnow
    from domain.users.accounts import add_user
    from domain.users.models import Role

    password = secrets.token_urlsafe(12)
    with sessions.begin() as session:
        add_user(session, "admin", Role.ADMIN, password, utcnow())
    web = WebThread(settings, engine, web_port())
    if not web.start():
        out.write("  (the console could not start: its port is taken; set JOBQUEUE_WEB_PORT)\n")
        return None
    out.write(f"  the console: {web.url}  sign in as admin / {password}\n")
    return web


def run_demo(
    settings: Settings,
    options: DemoOptions,
    stop: threading.Event | None = None,
    out: TextIO = sys.stdout,
) -> int:
    options.check()
    stop = stop or threading.Event()
    box = SecretBox.from_env()  # the jobs read the same key: JOBQUEUE_SECRET_KEY or its file
    with (
        tempfile.TemporaryDirectory(prefix="jobqueue-sandbox-") as folder,
        sandbox_services(Path(folder)) as services,
    ):
        settings = replace(
            settings,
            database_url=_fresh(options.database),
            redis_url=None,
            ca_file=services.ca_file,
        )
        system = EmbeddedSystem(settings)  # migrates the new database
        sessions = system.app.session_factory
        expected = set_up(
            sessions,
            services,
            box,
            settings.tz,
            customers=options.customers,
            rate_limit=options.rate_limit,
        )
        _header(out, settings, options.customers, expected.emails, expected.messages)
        progress = Progress(sessions, out, settings.tz)
        driver = Driver(sessions, progress, stop, time.monotonic() + options.timeout)
        system.start()
        scheduler = system.scheduler
        health = start_health(
            settings, system.app.engine, scheduler.heartbeat, "demo", lambda: scheduler.is_active
        )
        try:
            settled, interrupted = _drive(
                driver, out, lambda: _sell_in_sales(services, sessions, out)
            )
            progress.poll()
            summary = collect(sessions, services, expected)
            out.write("\n" + render(summary, settings.tz) + "\n")
            if not settled:
                why = "interrupted" if interrupted else f"not settled in {options.timeout:.0f} s"
                out.write(f"The demo was {why}.\n")
            if options.summary_json is not None:
                options.summary_json.write_text(json.dumps(summary.as_dict(), indent=2))
            log.info("demo.finished", ok=summary.ok, settled=settled, problems=summary.problems)
            if options.keep_running and not interrupted:
                out.write(
                    "\nStill running (the emulators too); SIGTERM or Ctrl-C stops. Explore with:\n"
                    f"  DATABASE_URL={settings.database_url} jobqueue entries list\n"
                )
                web = _console(settings, system.app.engine, sessions, out)
                out.flush()
                stop.wait()
                if web is not None:
                    web.stop()
        finally:
            if health is not None:
                health.stop()
            system.stop()
    return 0 if settled and summary.ok else 1
