"""The HTTP API under /api/: entries (list, get, create, update, actions), their log and
the categories. Scripts send `Authorization: Bearer <token>` (`jobqueue users token`);
the browser's session works too, with its CSRF token in X-CSRF-Token. Bad input is a
422 with the same one-line reason as the command line, and changes nothing."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from admin.web import actions, queries
from admin.web.auth import Principal, check_csrf, principal
from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.limits import EntryError, EntryFieldError
from domain.queue.models import JobQueueCategory, JobQueueEntry
from domain.queue.transitions import describe_weekdays_of
from jobs.sales.data_import import ImportRefused
from runtime.settings import Settings


class EntryOut(BaseModel):
    code: str
    description: str
    job_name: str
    parameter_string: str
    status: str
    category: str | None
    recurring: bool
    next_run_date_formula: str | None
    minutes_between_runs: int
    weekdays: str
    window: str
    next_run: datetime
    expiration: datetime | None
    maximum_attempts: int
    attempts: int
    priority: int
    last_result: str | None
    notify_on_failure: bool
    notify_after_failures: int
    notify_on_success: bool
    notify_recipients: str


class Imported(BaseModel):
    table: str
    inserted: int
    updated: int


class EntryPage(BaseModel):
    total: int
    page: int
    page_size: int
    entries: list[EntryOut]


class EntryChanges(BaseModel):
    """Fields as text, as the command line takes them (window "08:00-18:00", weekdays
    "mon-fri", numbers as digits); only those sent change."""

    description: str | None = None
    job_name: str | None = None
    parameter_string: str | None = None
    recurring: str | None = Field(None, description="yes or no")
    next_run_date_formula: str | None = Field(None, description="<1D>, <CM+1D>, <WD1>")
    minutes_between_runs: str | None = None
    weekdays: str | None = None
    window: str | None = None
    earliest_start: str | None = None
    expiration: str | None = None
    category: str | None = None
    maximum_attempts: str | None = None
    rerun_delay_seconds: str | None = None
    job_timeout_seconds: str | None = None
    inactivity_timeout_minutes: str | None = None
    priority: str | None = None
    notify_on_failure: str | None = Field(None, description="yes or no")
    notify_after_failures: str | None = Field(None, description="0 = after the last attempt")
    notify_on_success: str | None = Field(None, description="yes or no")
    notify_recipients: str | None = Field(None, description="user, admins or user+admins")

    def texts(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class NewEntry(EntryChanges):
    code: str
    job_name: str


class LogOut(BaseModel):
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    error_message: str | None


class LogEntryOut(LogOut):
    entry_code: str
    job_name: str
    counters: dict[str, Any]


class LogPage(BaseModel):
    total: int
    page: int
    log_entries: list[LogEntryOut]


class OutboxOut(BaseModel):
    id: str
    status: str
    subject: str
    to: list[str]
    attempts: int
    last_error: str | None
    created_at: datetime


class SentOut(BaseModel):
    id: str
    sender: str
    subject: str
    to: list[str]
    sent_at: datetime
    refused_recipients: dict[str, str]
    possible_duplicate: bool


class Mail(BaseModel):
    outbox: list[OutboxOut]
    sent: list[SentOut]


class SyncRunOut(BaseModel):
    id: int
    mapping: str
    started_at: datetime
    finished_at: datetime | None
    inserted: int
    modified: int
    deleted: int
    unchanged: int
    skipped: int
    failed: int
    conflicts: int


class SyncErrorOut(BaseModel):
    at: datetime
    mapping: str
    record: str
    result: str
    message: str


class Category(BaseModel):
    code: str
    description: str


def entry_out(e: JobQueueEntry, held: set[str] | None = None) -> EntryOut:
    """`held`: the codes shown as Waiting (held back by their category)."""
    return EntryOut(
        code=e.code,
        description=e.description,
        job_name=e.job_name,
        parameter_string=e.parameter_string,
        status=ops.shown_status(e, held or set()),
        category=e.category_code,
        recurring=e.recurring,
        next_run_date_formula=e.next_run_date_formula,
        minutes_between_runs=e.minutes_between_runs,
        weekdays=describe_weekdays_of(e),
        window=ops.describe_window(e.starting_time, e.ending_time),
        next_run=e.earliest_start,
        expiration=e.expiration,
        maximum_attempts=e.maximum_attempts,
        attempts=e.attempts,
        priority=e.priority,
        last_result=e.last_run_status,
        notify_on_failure=e.notify_on_failure,
        notify_after_failures=e.notify_after_failures,
        notify_on_success=e.notify_on_success,
        notify_recipients=e.notify_recipients,
    )


def api_router(sessions: sessionmaker[Session], settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api")

    def who(request: Request) -> Principal:
        found = principal(request, sessions)
        if found is None:
            raise HTTPException(401, "sign in, or send an API token")
        check_csrf(request, found)
        return found

    def refused(exc: Exception) -> HTTPException:
        if isinstance(exc, actions.Forbidden):
            return HTTPException(403, str(exc))
        if isinstance(exc, EntryFieldError):
            return HTTPException(422, {"field": exc.field, "reason": str(exc)})
        return HTTPException(422, {"field": "", "reason": str(exc)})

    @router.get("/entries", response_model=EntryPage)
    def list_entries(request: Request, _me: Annotated[Principal, Depends(who)]) -> EntryPage:
        f, rows, total = queries.requested_page(sessions, dict(request.query_params))
        with sessions() as session:
            held = ops.waiting(session, [e.code for e in rows], utcnow())
        entries = [entry_out(e, held) for e in rows]
        return EntryPage(total=total, page=f.page, page_size=queries.PAGE_SIZE, entries=entries)

    @router.get("/entries/{code}", response_model=EntryOut)
    def get_entry(code: str, _me: Annotated[Principal, Depends(who)]) -> EntryOut:
        with sessions() as session:
            try:
                return entry_out(ops.get_entry(session, code))
            except EntryError as exc:
                raise HTTPException(404, str(exc)) from None

    @router.post("/entries", response_model=EntryOut, status_code=201)
    async def create_entry(body: NewEntry, me: Annotated[Principal, Depends(who)]) -> EntryOut:
        texts = body.texts()
        texts.pop("code", None)
        job = texts.pop("job_name")
        try:
            entry = await run_in_threadpool(
                actions.create, sessions, me, body.code, job, texts, settings.tz
            )
        except (actions.Forbidden, EntryError) as exc:
            raise refused(exc) from None
        return entry_out(entry)

    @router.patch("/entries/{code}", response_model=EntryOut)
    async def update_entry(
        code: str, body: EntryChanges, me: Annotated[Principal, Depends(who)]
    ) -> EntryOut:
        try:
            entry = await run_in_threadpool(
                actions.edit, sessions, me, code, body.texts(), settings.tz
            )
        except (actions.Forbidden, EntryError) as exc:
            raise refused(exc) from None
        return entry_out(entry)

    @router.post("/entries/{code}/actions/{action}", response_model=dict[str, str])
    async def entry_action(
        code: str, action: str, me: Annotated[Principal, Depends(who)]
    ) -> dict[str, Any]:
        try:
            await run_in_threadpool(actions.act, sessions, me, code, action, settings.tz)
        except (actions.Forbidden, EntryError) as exc:
            raise refused(exc) from None
        return {"code": code, "action": action, "result": "done"}

    @router.get("/entries/{code}/log", response_model=list[LogOut])
    def entry_log(code: str, _me: Annotated[Principal, Depends(who)]) -> list[LogOut]:
        with sessions() as session:
            try:
                entry = ops.get_entry(session, code)
            except EntryError as exc:
                raise HTTPException(404, str(exc)) from None
            return [
                LogOut(
                    status=str(getattr(r.status, "value", r.status)),
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    error_message=r.error_message,
                )
                for r in queries.log_of(session, entry)
            ]

    @router.get("/log", response_model=LogPage)
    def all_log(request: Request, _me: Annotated[Principal, Depends(who)]) -> LogPage:
        with sessions() as session:
            rows, total, number = queries.log_page(session, dict(request.query_params))
            return LogPage(total=total, page=number, log_entries=[
                LogEntryOut(entry_code=r.entry_code, job_name=r.job_name,
                            status=str(r.status.value), started_at=r.started_at,
                            ended_at=r.ended_at, error_message=r.error_message,
                            counters=dict(r.counters or {}))
                for r in rows])  # fmt: skip

    @router.get("/outbox", response_model=Mail)
    def outbox(_me: Annotated[Principal, Depends(who)], status: str = "") -> Mail:
        with sessions() as session:
            queued, sent = queries.mail(session, status.strip())
            return Mail(
                outbox=[OutboxOut(id=m.id, status=m.status.value, subject=m.subject,
                                  to=list(m.envelope_to or m.to_addresses), attempts=m.attempts,
                                  last_error=m.last_error, created_at=m.created_at)
                        for m in queued],
                sent=[SentOut(id=m.id, sender=m.sender, subject=m.subject,
                              to=list(m.to_addresses), sent_at=m.sent_at,
                              refused_recipients=dict(m.refused_recipients or {}),
                              possible_duplicate=m.possible_duplicate)
                      for m in sent],
            )  # fmt: skip

    @router.post("/outbox/{outbox_id}/retry", response_model=dict[str, str])
    async def retry(outbox_id: str, me: Annotated[Principal, Depends(who)]) -> dict[str, str]:
        try:
            await run_in_threadpool(actions.retry_email, sessions, me, outbox_id)
        except actions.Forbidden as exc:
            raise refused(exc) from None
        except ValueError as exc:
            raise HTTPException(422, {"field": "id", "reason": str(exc)}) from None
        return {"id": outbox_id, "result": "queued"}

    @router.get("/sales/runs", response_model=list[SyncRunOut])
    def sync_runs(_me: Annotated[Principal, Depends(who)]) -> list[SyncRunOut]:
        with sessions() as session:
            return [SyncRunOut(id=r.id, mapping=r.mapping_name, started_at=r.started_at,
                               finished_at=r.finished_at, inserted=r.inserted,
                               modified=r.modified, deleted=r.deleted, unchanged=r.unchanged,
                               skipped=r.skipped, failed=r.failed, conflicts=r.conflicts)
                    for r in queries.sales(session)["runs"]]  # fmt: skip

    @router.get("/sales/errors", response_model=list[SyncErrorOut])
    def sync_errors(_me: Annotated[Principal, Depends(who)]) -> list[SyncErrorOut]:
        with sessions() as session:
            return [SyncErrorOut(at=e.at, mapping=e.mapping_name,
                                 record=e.local_id or e.dataverse_id, result=e.result.value,
                                 message=e.message)
                    for e in queries.sales(session)["errors"]]  # fmt: skip

    @router.post("/data/{table}", response_model=Imported)
    async def import_data(
        table: str,
        rows: Annotated[list[dict[str, Any]], Body(max_length=100_000)],
        me: Annotated[Principal, Depends(who)],
    ) -> Imported:
        """Add or update local records by their key (as `jobqueue data import`): every
        row is checked first; with a bad one nothing is written and the answer lists a
        reason per bad row ("line" is the row's position, from 1)."""
        try:
            saved = await run_in_threadpool(
                actions.import_data, sessions, me, table, rows, settings.tz
            )
        except actions.Forbidden as exc:
            raise refused(exc) from None
        except ImportRefused as exc:
            raise HTTPException(422, {"field": "rows", "reason": exc.errors}) from None
        return Imported(table=table, inserted=saved.inserted, updated=saved.updated)

    @router.get("/categories", response_model=list[Category])
    def categories(_me: Annotated[Principal, Depends(who)]) -> list[Category]:
        with sessions() as session:
            rows = session.execute(select(JobQueueCategory).order_by(JobQueueCategory.code))
            return [Category(code=c.code, description=c.description or "") for c in rows.scalars()]

    return router
