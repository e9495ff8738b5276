"""What the demo shows: progress read from the database while the job queue works (runs
starting and ending with their counters, entries going to sleep), and the summary at the
end, checked against what the sandbox company held for the jobs to do."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from admin.demo_setup import SMTP_ACCOUNT, Expected
from admin.tables import render_table
from domain.interactions.models import InteractionLogEntry
from domain.mail.models import RATE_SENDS, EmailAccount
from domain.mail.rate import busiest_window
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.queue.status import EntryStatus, LogStatus
from domain.sales.defaults import DEFAULTS
from domain.sales.models import DocumentType, SalesHeader
from sandbox.services import SALES_MAILBOX, SHARED_MAILBOX, SandboxServices

SYNC_ORDER = [spec.entry_code for spec in DEFAULTS]
DATAVERSE_TABLES = (
    "systemusers",
    "uomschedules",
    "products",
    "pricelevels",
    "productpricelevels",
    "accounts",
    "invoices",
    "invoicedetails",
)


def _clock(moment: datetime | None, tz: tzinfo) -> str:
    """As the command line shows times: in JOBQUEUE_TIMEZONE."""
    return moment.astimezone(tz).strftime("%H:%M:%S %Z") if moment else ""


def _counters(counters: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counters.items() if isinstance(v, int) and v)


@dataclass(frozen=True)
class Snapshot:
    finished: dict[str, int]  # entry code -> runs ended
    statuses: dict[str, EntryStatus]


class Progress:
    """Prints each run as it starts and ends, and each entry that goes to sleep."""

    def __init__(self, sessions: sessionmaker[Session], out: TextIO, tz: tzinfo) -> None:
        self.sessions, self.out, self.tz = sessions, out, tz
        self.started_at = time.monotonic()
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.sleeping: set[str] = set()

    def _say(self, code: str, what: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.started_at
        self.out.write(f"{elapsed:6.1f}s  {code:<20} {what:<9} {detail}".rstrip() + "\n")
        self.out.flush()

    def poll(self) -> Snapshot:
        """Prints what changed since the last poll; returns the state it read."""
        with self.sessions() as session:
            runs = session.scalars(
                select(JobQueueLogEntry).order_by(JobQueueLogEntry.started_at)
            ).all()
            entries = session.scalars(select(JobQueueEntry)).all()
        for run in runs:
            if run.id not in self.started:
                self.started.add(run.id)
                self._say(run.entry_code, "started", f"{run.job_name}, attempt {run.attempt}")
            if run.ended_at is not None and run.id not in self.ended:
                self.ended.add(run.id)
                seconds = (run.ended_at - run.started_at).total_seconds()
                detail = (
                    _counters(run.counters)
                    if run.status == LogStatus.SUCCESS
                    else (run.error_message or "")
                )
                self._say(run.entry_code, run.status.value, f"{seconds:.2f} s  {detail}")
        for entry in entries:
            asleep = entry.status == EntryStatus.ON_HOLD_INACTIVITY
            if asleep and entry.code not in self.sleeping:
                self._say(
                    entry.code,
                    "sleeping",
                    f"nothing to do; wakes by {_clock(entry.earliest_start, self.tz)} "
                    f"(inactivity timeout {entry.inactivity_timeout_minutes} min) "
                    "or when its data changes",
                )
            if asleep:
                self.sleeping.add(entry.code)
            else:
                self.sleeping.discard(entry.code)
        finished: dict[str, int] = {}
        for run in runs:
            if run.ended_at is not None:
                finished[run.entry_code] = finished.get(run.entry_code, 0) + 1
        return Snapshot(finished, {entry.code: entry.status for entry in entries})


@dataclass
class EntrySummary:
    code: str
    job: str
    status: str
    runs: int
    failed_runs: int
    synced: int  # Dataverse records inserted, modified or deleted
    sent: int  # emails
    logged: int  # interactions
    sleeping: bool
    inactivity_timeout_minutes: int
    next_run: str


@dataclass
class Summary:
    entries: list[EntrySummary]
    sync_order: list[str]  # the synchronization entries in the order of their first runs
    emails_queued: int
    emails_sent: int
    smtp_received: int
    graph_sent: int
    rate_limit: int
    busiest_minute: int  # the most the SMTP account sent in one minute
    messages: int  # in the shared mailbox when the demo began
    inbox_left: int
    archived: int
    interactions: int
    interactions_expected: int
    dataverse: dict[str, int]
    # Documents made in Sales that arrived here (sales order integration).
    orders_from_sales: list[str] = field(default_factory=list)
    quotes_from_sales: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _runs(session: Session) -> dict[str, list[JobQueueLogEntry]]:
    by_code: dict[str, list[JobQueueLogEntry]] = {}
    for run in session.scalars(select(JobQueueLogEntry).order_by(JobQueueLogEntry.started_at)):
        by_code.setdefault(run.entry_code, []).append(run)
    return by_code


def _total(runs: list[JobQueueLogEntry], *keys: str) -> int:
    return sum(int(run.counters.get(key, 0) or 0) for run in runs for key in keys)


def _entries(session: Session) -> list[EntrySummary]:
    runs = _runs(session)
    rows = []
    for entry in session.scalars(select(JobQueueEntry).order_by(JobQueueEntry.code)):
        own = runs.get(entry.code, [])
        asleep = entry.status == EntryStatus.ON_HOLD_INACTIVITY
        rows.append(
            EntrySummary(
                code=entry.code,
                job=entry.job_name,
                status=entry.status.value,
                runs=len(own),
                failed_runs=sum(1 for r in own if r.status == LogStatus.ERROR),
                synced=_total(own, "inserted", "modified", "deleted"),
                sent=_total(own, "sent"),
                logged=_total(own, "logged"),
                sleeping=asleep,
                inactivity_timeout_minutes=entry.inactivity_timeout_minutes,
                next_run=entry.earliest_start.isoformat()
                if entry.status in (EntryStatus.READY, EntryStatus.ON_HOLD_INACTIVITY)
                else "",
            )
        )
    return rows


def _problems(summary: Summary, expected: Expected) -> list[str]:
    problems = [f"{e.code} is in Error" for e in summary.entries if e.status == "Error"]
    if summary.sync_order != SYNC_ORDER:
        problems.append(f"synchronization ran as {summary.sync_order}, not {SYNC_ORDER}")
    if summary.emails_sent != expected.emails:
        problems.append(f"{summary.emails_sent} of {expected.emails} emails sent")
    if summary.smtp_received != expected.smtp_emails:
        problems.append(f"the SMTP server received {summary.smtp_received} emails")
    if expected.rate_limit and summary.busiest_minute > expected.rate_limit:
        problems.append(f"{summary.busiest_minute} emails in one minute over the limit")
    if summary.interactions != expected.interactions:
        problems.append(f"{summary.interactions} of {expected.interactions} interactions logged")
    if summary.inbox_left:
        problems.append(f"{summary.inbox_left} messages left in the shared mailbox's Inbox")
    for what, made, wanted in (
        ("orders", summary.orders_from_sales, expected.orders_from_sales),
        ("quotes", summary.quotes_from_sales, expected.quotes_from_sales),
    ):
        if len(made) != wanted:
            problems.append(f"{len(made)} of {wanted} {what} made in Sales arrived")
    return problems


def collect(
    sessions: sessionmaker[Session], services: SandboxServices, expected: Expected
) -> Summary:
    with sessions() as session:
        entries = _entries(session)
        firsts = {
            code: runs[0].started_at for code, runs in _runs(session).items() if code in SYNC_ORDER
        }
        smtp_id = session.scalar(select(EmailAccount.id).where(EmailAccount.name == SMTP_ACCOUNT))
        busiest = busiest_window(
            list(
                session.scalars(
                    select(RATE_SENDS.c.sent_at).where(RATE_SENDS.c.account_id == smtp_id)
                )
            )
        )
        interactions = session.scalar(select(func.count()).select_from(InteractionLogEntry))
        from_sales = session.execute(
            select(SalesHeader.document_type, SalesHeader.no)
            .where(SalesHeader.dataverse_id.is_not(None))
            .order_by(SalesHeader.no)
        ).all()
    shared = services.graph.mailboxes[SHARED_MAILBOX]
    summary = Summary(
        entries=entries,
        sync_order=sorted(firsts, key=lambda code: firsts[code]),
        emails_queued=expected.emails,
        emails_sent=sum(e.sent for e in entries),
        smtp_received=len(services.smtp.handler.accepted),
        graph_sent=len(services.graph.mailboxes[SALES_MAILBOX].sent),
        rate_limit=expected.rate_limit,
        busiest_minute=int(busiest or 0),
        messages=expected.messages,
        inbox_left=len(shared.messages("inbox")),
        archived=len(shared.messages("archive")),
        interactions=int(interactions or 0),
        interactions_expected=expected.interactions,
        dataverse={table: len(services.dataverse.rows(table)) for table in DATAVERSE_TABLES},
        orders_from_sales=[no for kind, no in from_sales if kind == DocumentType.ORDER],
        quotes_from_sales=[no for kind, no in from_sales if kind == DocumentType.QUOTE],
    )
    summary.problems = _problems(summary, expected)
    return summary


def _note(entry: EntrySummary, tz: tzinfo) -> str:
    if entry.sleeping:
        return f"sleeping (inactivity timeout {entry.inactivity_timeout_minutes} min)"
    if entry.status == "Ready" and entry.next_run:
        return "next run " + _clock(datetime.fromisoformat(entry.next_run), tz)
    return ""


def render(summary: Summary, tz: tzinfo) -> str:
    table = render_table(
        ("entry", "job", "status", "runs", "failed", "synced", "sent", "logged", "note"),
        [
            (
                e.code,
                e.job,
                e.status,
                e.runs,
                e.failed_runs,
                e.synced or "",
                e.sent or "",
                e.logged or "",
                _note(e, tz),
            )
            for e in summary.entries
        ],
    )
    dataverse = ", ".join(f"{n} {t}" for t, n in summary.dataverse.items())
    limit = f"{summary.rate_limit}/min" if summary.rate_limit else "no limit"
    lines = [
        table,
        "",
        f"Synchronization order: {' > '.join(summary.sync_order)}",
        f"Dataverse now holds: {dataverse}",
        f"Emails: {summary.emails_sent} of {summary.emails_queued} sent; the SMTP server "
        f"received {summary.smtp_received} (busiest minute {summary.busiest_minute}, "
        f"limit {limit}), Graph sendMail {summary.graph_sent}",
        f"Shared mailbox: {summary.messages} messages, {summary.archived} archived, "
        f"{summary.inbox_left} left in the Inbox; {summary.interactions} interactions logged "
        f"(expected {summary.interactions_expected})",
        f"From Dynamics 365 Sales: orders {', '.join(summary.orders_from_sales) or 'none'}; "
        f"quotes {', '.join(summary.quotes_from_sales) or 'none'}",
        f"Sleeping: {', '.join(e.code for e in summary.entries if e.sleeping) or 'none'}",
    ]
    if summary.problems:
        lines += ["", "Problems:", *(f"  - {p}" for p in summary.problems)]
    else:
        lines += ["", "Every check passed."]
    return "\n".join(lines)
