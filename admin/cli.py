"""`jobqueue`: the admin command line. Bad input prints one line and exits 2, changing nothing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

import domain.audit.record  # noqa: F401  (audits the changes made through the CLI)
import jobs.builtin
import jobs.mail.job  # noqa: F401  (registers email-dispatch)
from admin.arguments import checked, entry_number, entry_number_help, whole
from admin.data_cli import add_data_commands
from admin.email_logging import add_email_logging_commands
from admin.mail_cli import add_mail_commands
from admin.sales import add_sales_commands
from admin.tables import render_table
from admin.users_cli import add_user_commands, cli_user
from domain.clock import utcnow
from domain.db import make_engine, make_session_factory, reading
from domain.migrations import upgrade
from domain.notifications import rules as notifications
from domain.queue import entries as ops
from domain.queue.limits import RECIPIENTS, EntryError
from domain.queue.recurrence import format_weekdays, parse_weekdays, parse_window
from domain.queue.status import EntryStatus
from domain.queue.transitions import recurrence_of
from jobs.registry import registry
from runtime.db_errors import describe
from runtime.logs import configure_logging
from runtime.settings import Settings, SettingsError
from runtime.signals import stop_event_on_signals

EXIT_USAGE = 2
# Seconds a command waits for another process writing the SQLite file.
CLI_BUSY_TIMEOUT = 5.0


class CommandError(Exception):
    """A one-line message for the operator; exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _add_schedule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description")
    p.add_argument("--parameter", dest="parameter_string", help="the job's parameter string")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recurring", dest="recurring", action="store_true", default=None)
    rec.add_argument("--not-recurring", dest="recurring", action="store_false")
    number_options = (
        ("--minutes-between-runs", "minutes_between_runs", "0 = once a day"),
        ("--maximum-attempts", "maximum_attempts", ""),
        ("--rerun-delay", "rerun_delay_seconds", "wait before a failed run is retried"),
        ("--job-timeout", "job_timeout_seconds", "a longer run is stopped and fails"),
        ("--inactivity-timeout", "inactivity_timeout_minutes", "sleep after a run with no work"),
        ("--priority", "priority", "higher runs first"),
    )
    for flag, field, extra in number_options:
        p.add_argument(
            flag, dest=field, type=entry_number(field), help=entry_number_help(field, extra)
        )
    p.add_argument(
        "--next-run-date-formula",
        dest="next_run_date_formula",
        help="Business Central date formula: <1D>, <1W>, <CM+1D>, <WD1>, <D15>; none clears",
    )
    p.add_argument("--weekdays", type=checked(parse_weekdays), help="mon-fri, sat,sun, all")
    p.add_argument("--window", type=checked(parse_window), help="08:00-18:00, 22:00-06:00+1, none")
    p.add_argument("--earliest-start", help="ISO date-time; local to JOBQUEUE_TIMEZONE")
    p.add_argument("--expiration", help="ISO date-time, or none")
    p.add_argument(
        "--reference-starting-time",
        help="ISO date-time the minutes between runs count from, or none",
    )
    p.add_argument("--category", help="category code, or none")
    p.add_argument("--user", dest="user_id")
    for flag, field, what in (
        ("notify-on-failure", "notify_on_failure", "a failure (the default)"),
        ("notify-on-success", "notify_on_success", "a success"),
    ):
        note = p.add_mutually_exclusive_group()
        note.add_argument(f"--{flag}", dest=field, action="store_true", default=None,
                          help=f"notify on {what}")  # fmt: skip
        note.add_argument(f"--no-{flag}", dest=field, action="store_false")
    p.add_argument(
        "--notify-after-failures",
        dest="notify_after_failures",
        type=entry_number("notify_after_failures"),
        help=entry_number_help(
            "notify_after_failures", "0 = when the last attempt failed, N = after N in a row"
        ),
    )
    p.add_argument(
        "--notify",
        dest="notify_recipients",
        choices=RECIPIENTS,
        help="whom notifications go to (users' email addresses; webhooks get them all)",
    )


def _changes(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    plain = (
        "description",
        "parameter_string",
        "recurring",
        "minutes_between_runs",
        "weekdays",
        "maximum_attempts",
        "rerun_delay_seconds",
        "job_timeout_seconds",
        "inactivity_timeout_minutes",
        "priority",
        "user_id",
        "notify_on_failure",
        "notify_after_failures",
        "notify_on_success",
        "notify_recipients",
    )
    for key in plain:
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value
    if getattr(args, "job", None) and args.command_name == "set":
        changes["job_name"] = args.job
    if args.window is not None:
        changes["starting_time"], changes["ending_time"] = args.window
    formula = getattr(args, "next_run_date_formula", None)
    if formula is not None:
        changes["next_run_date_formula"] = None if formula.lower() == "none" else formula
    if args.earliest_start is not None:
        changes["earliest_start"] = ops.parse_moment(args.earliest_start, settings.tz)
    if args.expiration is not None:
        none = args.expiration.lower() == "none"
        changes["expiration"] = (
            None if none else ops.parse_moment(args.expiration, settings.tz, "expiration")
        )
    reference = getattr(args, "reference_starting_time", None)
    if reference is not None:
        changes["reference_starting_time"] = (
            None
            if reference.lower() == "none"
            else ops.parse_moment(reference, settings.tz, "reference_starting_time")
        )
    if args.category is not None:
        changes["category_code"] = None if args.category.lower() == "none" else args.category
    return changes


def _fmt(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return ""
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S")


class Commands:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: sessionmaker[Session] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions that write: on SQLite they wait at most CLI_BUSY_TIMEOUT for a writer."""
        if self._sessions is None:
            engine = make_engine(self.settings.database_url, busy_timeout=CLI_BUSY_TIMEOUT)
            self._sessions = make_session_factory(engine)
            # Changes people make here are audited (domain.audit.record): who and how.
            self._sessions.configure(info={"actor": (cli_user(), "cli")})
        return self._sessions

    @property
    def reads(self) -> sessionmaker[Session]:
        """Sessions that only read: they never wait for a writer (SQLite WAL)."""
        bind = self.sessions.kw["bind"]
        return make_session_factory(reading(bind))

    def _state(self, entry: Any) -> str:
        return f"{entry.status.value}, next run {_fmt(entry.earliest_start, self.settings)}"

    def migrate(self, _args: argparse.Namespace) -> None:
        upgrade(make_engine(self.settings.database_url))
        print("database is up to date")

    def entries_list(self, args: argparse.Namespace) -> None:
        status = EntryStatus(args.status) if args.status else None
        with self.reads() as session:
            views = ops.list_entries(session, status)
            held = ops.waiting(session, [v.entry.code for v in views], utcnow())
        rows = [
            (
                v.entry.code,
                ops.shown_status(v.entry, held),
                _fmt(v.entry.earliest_start, self.settings)
                if v.entry.status in (EntryStatus.READY, EntryStatus.ON_HOLD_INACTIVITY)
                else "",
                v.last_log.status.value if v.last_log else "",
                (v.last_log.error_message or "")[:60] if v.last_log else "",
                v.entry.user_id,
            )
            for v in views
        ]
        print(
            render_table(
                ("code", "status", "next run", "last result", "last error", "runs as"), rows
            )
        )

    def run_once(self, args: argparse.Namespace) -> None:
        """Business Central's Run once (foreground); exit 1 when the job fails."""
        import structlog

        from workers.foreground import run_once

        if not structlog.is_configured():  # warnings as JSON lines; the result is printed
            configure_logging("WARNING", process="jobqueue")
        result = run_once(self.settings, self.sessions, args.code, cli_user())
        if not result.succeeded:
            sys.stderr.write(f"jobqueue: {args.code} failed: {result.error_message}\n")
            raise SystemExit(1)
        counters = ", ".join(f"{k} {v}" for k, v in result.counters.items())
        print(f"{args.code} ran once" + (f": {counters}" if counters else ""))

    def log_delete(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            if args.failed:
                deleted = ops.delete_failed_log_entries(session)
            else:
                deleted = ops.delete_log_older_than(session, args.older_than, utcnow())
        print(f"{deleted} log entries deleted")

    def entries_show(self, args: argparse.Namespace) -> None:
        with self.reads() as session:
            e = ops.get_entry(session, args.code)
        rec = recurrence_of(e, self.settings.tz)
        fields = [
            ("code", e.code),
            ("description", e.description),
            ("job", e.job_name),
            ("parameter", e.parameter_string),
            ("status", e.status.value),
            ("recurring", "yes" if e.recurring else "no"),
            ("next run date formula", e.next_run_date_formula or ""),
            ("minutes between runs", e.minutes_between_runs),
            ("reference starting time", _fmt(e.reference_starting_time, self.settings)),
            ("weekdays", format_weekdays(rec.weekdays)),
            ("window", ops.describe_window(e.starting_time, e.ending_time)),
            ("earliest start", _fmt(e.earliest_start, self.settings)),
            ("expiration", _fmt(e.expiration, self.settings)),
            ("attempts", f"{e.attempts} of {e.maximum_attempts}"),
            ("rerun delay (s)", e.rerun_delay_seconds),
            ("job timeout (s)", e.job_timeout_seconds),
            ("inactivity timeout (min)", e.inactivity_timeout_minutes),
            ("category", e.category_code or ""),
            ("priority", e.priority),
            ("user", e.user_id),
            ("notify", notifications.describe(e)),
            ("time zone", self.settings.timezone),
        ]
        width = max(len(k) for k, _ in fields)
        for key, value in fields:
            print(f"{key.ljust(width)}  {value}")

    def entries_add(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            changes = _changes(args, self.settings)
            entry = ops.add_entry(
                session, args.code, args.job, changes, registry, utcnow(), self.settings.tz
            )
            print(f"added {entry.code}: {self._state(entry)}")

    def entries_set(self, args: argparse.Namespace) -> None:
        changes = _changes(args, self.settings)
        if not changes:
            raise CommandError("nothing to change; give at least one option")
        with self.sessions.begin() as session:
            entry = ops.edit_entry(
                session, args.code, changes, registry, utcnow(), self.settings.tz
            )
            print(f"{entry.code}: {self._state(entry)}")

    def hold(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            entry = ops.set_on_hold(session, args.code)
            print(f"{entry.code}: {entry.status.value}")

    def ready(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            entry = ops.set_ready(session, args.code, utcnow(), self.settings.tz)
            print(f"{entry.code}: {self._state(entry)}")

    def run_now(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            entry = ops.run_now(session, args.code, utcnow())
            print(f"{entry.code}: due now")

    def delete(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            ops.delete_entry(session, args.code)
        print(f"deleted {args.code}")

    def log(self, args: argparse.Namespace) -> None:
        with self.reads() as session:
            rows = ops.read_log(session, args.code, args.limit)
        print(
            render_table(
                ("run", "attempt", "started", "ended", "status", "counters", "error"),
                [
                    (
                        f"{r.entry_id}:{r.run_seq}",
                        r.attempt,
                        _fmt(r.started_at, self.settings),
                        _fmt(r.ended_at, self.settings),
                        r.status.value,
                        ",".join(f"{k}={v}" for k, v in (r.counters or {}).items()),
                        (r.error_message or "")[:80],
                    )
                    for r in rows
                ],
            )
        )

    def categories_add(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            ops.add_category(session, args.code, args.description or "")
        print(f"added category {args.code}")

    def jobs_list(self, _args: argparse.Namespace) -> None:
        rows = [(name, registry.get(name).description.split("\n")[0]) for name in registry.names()]
        print(render_table(("job", "what it does"), rows))

    def scheduler(self, _args: argparse.Namespace) -> None:
        from admin.processes import run_scheduler

        if self.settings.embedded:
            raise CommandError(
                "the scheduler alone needs REDIS_URL; use `jobqueue run` for one process"
            )
        configure_logging(self.settings.log_level, process="scheduler")
        run_scheduler(self.settings, stop_event_on_signals())

    def worker(self, args: argparse.Namespace) -> None:
        from admin.processes import run_worker_pool

        if self.settings.embedded:
            raise CommandError("workers alone need REDIS_URL; use `jobqueue run` for one process")
        configure_logging(self.settings.log_level, process="worker-main")
        raise SystemExit(run_worker_pool(self.settings, args.processes, args.threads))

    def run(self, args: argparse.Namespace) -> None:
        from admin.processes import run_embedded

        configure_logging(self.settings.log_level, process="jobqueue")
        run_embedded(self.settings, stop_event_on_signals(), threads=args.threads)

    def demo(self, args: argparse.Namespace) -> None:
        from pathlib import Path

        from admin.demo import DemoOptions, run_demo

        options = DemoOptions(
            database=Path(args.database),
            customers=args.customers,
            rate_limit=args.rate_limit,
            timeout=args.timeout,
            keep_running=args.keep_running,
            summary_json=Path(args.summary_json) if args.summary_json else None,
        ).check()
        # The progress lines and the summary are the demo's output; JSON logs on request.
        configure_logging(self.settings.log_level if args.logs else "WARNING", process="demo")
        raise SystemExit(run_demo(self.settings, options, stop_event_on_signals()))


def build_parser(settings: Settings) -> _Parser:
    c = Commands(settings)
    parser = _Parser(prog="jobqueue", description="Business Central-style job queue.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        parent: Any, name: str, handler: Callable[[argparse.Namespace], None], help_: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        p.set_defaults(handler=handler, command_name=name)
        return p

    def with_code(parent: Any, name: str, handler: Any, help_: str) -> argparse.ArgumentParser:
        p = command(parent, name, handler, help_)
        p.add_argument("code")
        return p

    command(sub, "migrate", c.migrate, "create or upgrade the database schema")

    entries = sub.add_parser("entries", help="job-queue entries").add_subparsers(
        dest="entries_command", required=True, parser_class=_Parser
    )
    p = command(entries, "list", c.entries_list, "list entries")
    p.add_argument("--status", choices=[s.value for s in EntryStatus])
    with_code(entries, "show", c.entries_show, "show one entry")
    p = with_code(entries, "add", c.entries_add, "add an entry")
    p.add_argument("--job", required=True, help="registered job name (see `jobqueue jobs`)")
    _add_schedule_options(p)
    p = with_code(entries, "set", c.entries_set, "edit an entry's schedule and settings")
    p.add_argument("--job", help="registered job name")
    _add_schedule_options(p)
    with_code(entries, "delete", c.delete, "delete an entry (not while it runs)")
    with_code(sub, "run-once", c.run_once, "run the job once here; the entry is not changed")
    for parent in (entries, sub):
        with_code(parent, "hold", c.hold, "set on hold")
        with_code(parent, "ready", c.ready, "set ready (restart)")
        with_code(parent, "run-now", c.run_now, "run as soon as possible")
        with_code(parent, "log", c.log, "the entry's run log").add_argument(
            "--limit", type=whole("limit", 1, 10_000), default=20
        )

    log_entries = sub.add_parser("log-entries", help="job-queue log entries").add_subparsers(
        dest="log_entries_command", required=True, parser_class=_Parser
    )
    p = command(log_entries, "delete", c.log_delete, "delete old or failed log entries")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--older-than", type=whole("days", 1, 36_500), metavar="DAYS",
                       help="runs that ended more than DAYS days ago")  # fmt: skip
    which.add_argument("--failed", action="store_true", help="the runs that failed")

    categories = sub.add_parser("categories", help="job-queue categories").add_subparsers(
        dest="categories_command", required=True, parser_class=_Parser
    )
    with_code(categories, "add", c.categories_add, "add a category").add_argument("--description")
    command(sub, "jobs", c.jobs_list, "list the registered jobs")
    add_mail_commands(sub, settings, lambda: c.sessions, _Parser)
    add_sales_commands(sub, settings, lambda: c.sessions, _Parser)
    add_email_logging_commands(sub, settings, lambda: c.sessions, _Parser)
    add_user_commands(sub, settings, lambda: c.sessions, _Parser)
    add_data_commands(sub, settings, lambda: c.sessions, _Parser)
    command(sub, "scheduler", c.scheduler, "run the scheduler (APScheduler) process")
    p = command(sub, "worker", c.worker, "run a Dramatiq worker pool")
    p.add_argument(
        "--processes", type=whole("processes", 1, 256), default=settings.worker_processes
    )
    p.add_argument("--threads", type=whole("threads", 1, 1024), default=settings.worker_threads)
    p = command(sub, "run", c.run, "scheduler and workers in one process")
    p.add_argument("--threads", type=whole("threads", 1, 1024), default=4)
    p = command(sub, "demo", c.demo, "run the whole system on a sandbox company")
    p.add_argument("--customers", type=whole("customers", 1, 10_000), default=6)
    p.add_argument(
        "--rate-limit",
        type=whole("rate limit", 0, 100_000),
        default=20,
        help="SMTP emails per minute",
    )
    p.add_argument(
        "--timeout", type=whole("timeout", 10, 86_400), default=180, help="seconds, 10 to 86400"
    )
    p.add_argument("--database", default="jobqueue-demo.db", help="a SQLite file, made anew")
    p.add_argument("--keep-running", action="store_true", help="stay up until SIGTERM/Ctrl-C")
    p.add_argument("--summary-json", help="also write the summary to this file as JSON")
    p.add_argument("--logs", action="store_true", help="print the JSON logs too")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"jobqueue: error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (EntryError, CommandError, ValueError) as exc:
        sys.stderr.write(f"jobqueue: error: {_one_line(str(exc))}\n")
        raise SystemExit(EXIT_USAGE) from None
    except DBAPIError as exc:
        sys.stderr.write(f"jobqueue: error: {describe(exc, settings.database_url)}\n")
        raise SystemExit(EXIT_USAGE) from None


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    main()
