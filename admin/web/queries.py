"""What the console's pages and the API read: a page of entries (filtered, sorted,
counted), one entry with its log and audit trail, the home figures."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from fastapi import HTTPException
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from domain.audit.models import AuditEntry
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.queue.status import EntryStatus

PAGE_SIZE = 50
SORTS = {
    "code": JobQueueEntry.code,
    "status": JobQueueEntry.status,
    "next_run": JobQueueEntry.earliest_start,
    "category": JobQueueEntry.category_code,
    "job": JobQueueEntry.job_name,
}


@dataclass(frozen=True)
class EntryFilter:
    status: EntryStatus | None = None
    category: str = ""
    text: str = ""
    sort: str = "code"
    descending: bool = False
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str]) -> EntryFilter:
        """Query parameters as typed into the filter bar; a bad value is a 400 naming it."""
        status_text = params.get("status", "").strip()
        try:
            status = EntryStatus(status_text) if status_text else None
        except ValueError:
            known = ", ".join(s.value for s in EntryStatus)
            raise ValueError(f"status: one of {known}, not {status_text!r}") from None
        sort = params.get("sort", "code").strip() or "code"
        descending = sort.startswith("-")
        if sort.lstrip("-") not in SORTS:
            raise ValueError(f"sort: one of {', '.join(SORTS)} (with - to reverse)")
        try:
            page = int(params.get("page", "1") or 1)
        except ValueError:
            raise ValueError("page: a whole number from 1") from None
        if not 1 <= page <= 1_000_000:
            raise ValueError("page: a whole number from 1")
        category, text = params.get("category", "").strip()[:20], params.get("q", "").strip()
        return cls(status, category, text[:100], sort.lstrip("-"), descending, page)


def entries_page(session: Session, f: EntryFilter) -> tuple[list[JobQueueEntry], int]:
    """One page of entries and how many match: two indexed statements (a third says
    which are Waiting)."""
    stmt = select(JobQueueEntry)
    if f.status is not None:
        stmt = stmt.where(JobQueueEntry.status == f.status)
    if f.category:
        stmt = stmt.where(JobQueueEntry.category_code == f.category)
    if f.text:
        like = f"%{f.text.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(
            or_(
                JobQueueEntry.code.ilike(like),
                JobQueueEntry.description.ilike(like),
                JobQueueEntry.job_name.ilike(like),
            )
        )
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    column = SORTS[f.sort]
    order: list[Any] = [column.desc() if f.descending else column.asc(), JobQueueEntry.code.asc()]
    rows = session.execute(
        stmt.order_by(*order).limit(PAGE_SIZE).offset((f.page - 1) * PAGE_SIZE)
    ).scalars()
    return list(rows), int(total)


def requested_page(
    sessions: sessionmaker[Session], params: dict[str, str]
) -> tuple[EntryFilter, list[JobQueueEntry], int]:
    """The page the query parameters ask for; a bad parameter is a 400 naming it."""
    try:
        f = EntryFilter.parse(params)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    with sessions() as session:
        rows, total = entries_page(session, f)
    return f, rows, total


def figures(session: Session) -> dict[str, int]:
    """Job Queue Tasks: entries per status."""
    counts = {s.value: 0 for s in EntryStatus}
    for status, n in session.execute(
        select(JobQueueEntry.status, func.count()).group_by(JobQueueEntry.status)
    ):
        counts[EntryStatus(status).value] = int(n)
    return counts


def log_of(session: Session, entry: JobQueueEntry, limit: int = 20) -> list[JobQueueLogEntry]:
    return list(
        session.execute(
            select(JobQueueLogEntry)
            .where(JobQueueLogEntry.entry_id == entry.id)
            .order_by(JobQueueLogEntry.id.desc())
            .limit(limit)
        ).scalars()
    )


def audit_of(session: Session, code: str, limit: int = 50) -> list[AuditEntry]:
    return list(
        session.execute(
            select(AuditEntry)
            .where(AuditEntry.object_type == "job_queue_entry", AuditEntry.object_key == code)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        ).scalars()
    )


def statuses(session: Session, codes: list[str]) -> dict[str, dict[str, Any]]:
    """What the live view shows of each entry on a page (Waiting: held back by its
    category, as Business Central shows it)."""
    if not codes:
        return {}
    from domain.clock import utcnow
    from domain.queue.entries import WAITING, waiting

    held = waiting(session, codes[:200], utcnow())
    rows = session.execute(
        select(
            JobQueueEntry.code,
            JobQueueEntry.status,
            JobQueueEntry.attempts,
            JobQueueEntry.last_run_status,
            JobQueueEntry.earliest_start,
        ).where(JobQueueEntry.code.in_(codes[:200]))
    )
    return {
        r.code: {
            "status": WAITING if r.code in held else EntryStatus(r.status).value,
            "attempts": r.attempts,
            "last_result": r.last_run_status or "",
            "next_run": r.earliest_start.isoformat() if r.earliest_start else "",
        }
        for r in rows
    }


def log_page(session: Session, params: dict[str, str]) -> tuple[list[JobQueueLogEntry], int, int]:
    """Job Queue Log Entries for all entries: filtered by status and entry code, newest
    first, a page at a time; returns (rows, total, page)."""
    from domain.queue.status import LogStatus

    stmt = select(JobQueueLogEntry)
    status = params.get("status", "").strip()
    if status:
        stmt = stmt.where(JobQueueLogEntry.status == _status(LogStatus, status))
    code = params.get("code", "").strip()[:40]
    if code:
        stmt = stmt.where(JobQueueLogEntry.entry_code == code)
    try:
        page = max(1, min(int(params.get("page", "1") or 1), 1_000_000))
    except ValueError:
        raise HTTPException(400, "page: a whole number from 1") from None
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(
        stmt.order_by(JobQueueLogEntry.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    ).scalars()
    return list(rows), int(total), page


def audit_page(session: Session, page: int) -> list[AuditEntry]:
    return list(
        session.execute(
            select(AuditEntry)
            .order_by(AuditEntry.id.desc())
            .limit(PAGE_SIZE)
            .offset((max(page, 1) - 1) * PAGE_SIZE)
        ).scalars()
    )


def mail(session: Session, status: str) -> tuple[list[Any], list[Any]]:
    """The outbox (newest first, by status) and the sent emails (newest first): the
    envelope, never the bodies (view policies decide who reads those)."""
    from domain.mail.kinds import OutboxStatus
    from domain.mail.models import OutboxMessage, SentEmail

    outbox = select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(PAGE_SIZE)
    if status:
        outbox = outbox.where(OutboxMessage.status == _status(OutboxStatus, status))
    sent = select(SentEmail).order_by(SentEmail.sent_at.desc()).limit(PAGE_SIZE)
    return list(session.execute(outbox).scalars()), list(session.execute(sent).scalars())


def sales(session: Session) -> dict[str, Any]:
    """The integration table mappings in dependency order, the latest runs with their
    counters, the latest errors (records by business key, with time), what is pending."""
    from domain.sales.defaults import DEFAULTS
    from domain.sales.integration import (
        Coupling,
        IntegrationTableMapping,
        PendingRecord,
        SyncError,
        SyncRun,
    )

    order = {spec.name: n for n, spec in enumerate(DEFAULTS)}
    mappings = sorted(
        session.execute(select(IntegrationTableMapping)).scalars(),
        key=lambda m: order.get(m.name, len(order)),
    )
    runs = session.execute(select(SyncRun).order_by(SyncRun.id.desc()).limit(PAGE_SIZE))
    errors = session.execute(select(SyncError).order_by(SyncError.id.desc()).limit(PAGE_SIZE))
    pending = session.execute(select(func.count()).select_from(PendingRecord)).scalar_one()
    couplings = session.execute(
        select(Coupling.local_table, Coupling.dataverse_table, Coupling.last_result, func.count())
        .group_by(Coupling.local_table, Coupling.dataverse_table, Coupling.last_result)
        .order_by(Coupling.local_table, Coupling.dataverse_table)
    ).all()
    return {
        "couplings": [(t, d, getattr(r, "value", r), int(n)) for t, d, r, n in couplings],
        "mappings": mappings,
        "runs": list(runs.scalars()),
        "errors": list(errors.scalars()),
        "pending": int(pending),
    }


def email_logging(session: Session) -> dict[str, Any]:
    """The setup as the page shows it (a secret only as "set") and the latest interactions."""
    from admin.email_logging import setup_pairs
    from domain.interactions.models import EmailLoggingSetup, InteractionLogEntry

    row = session.execute(select(EmailLoggingSetup)).scalars().first()
    setup = setup_pairs(row) if row is not None else []
    entries = session.execute(
        select(InteractionLogEntry).order_by(InteractionLogEntry.entry_no.desc()).limit(PAGE_SIZE)
    )
    return {"setup": setup, "interactions": list(entries.scalars())}


E = TypeVar("E", bound=Enum)


def _status(kind: type[E], text: str) -> E:
    """A status filter as typed; a 400 naming the choices otherwise."""
    try:
        return kind(text)
    except ValueError:
        known = ", ".join(str(s.value) for s in kind)
        raise HTTPException(400, f"status: one of {known}, not {text!r}") from None
