"""The web application: the console's pages (Jinja2, autoescaped; HTMX and a small
script served from the package), the JSON API under /api/ with its OpenAPI document,
live status updates (Server-Sent Events), sign-in, and the security headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from admin.web import actions, chart, odata, queries
from admin.web.api import api_router
from admin.web.auth import (
    CSRF_FIELD,
    Principal,
    SignInThrottle,
    check_csrf,
    csrf_token,
    principal,
    role_from_claims,
    sign_in,
)
from domain.clock import utcnow
from domain.db import make_session_factory
from domain.queue import entries as ops
from domain.queue.form import changes_from_text
from domain.queue.limits import RECIPIENTS, EntryError, EntryFieldError
from domain.queue.recurrence import next_runs
from domain.queue.transitions import describe_weekdays_of, recurrence_of
from domain.users.accounts import authenticate
from domain.users.models import Role
from jobs.dataverse.client import DataverseError
from jobs.microsoft.client import MicrosoftError
from jobs.microsoft.identity import SignInError, UserSignIn
from jobs.registry import registry
from runtime.secrets import Secret, SecretBox
from runtime.settings import Settings

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
LIVE_INTERVAL = 0.5  # seconds between the live view's looks at the entries on a page


class SignInRequired(Exception):
    pass


def create_web_app(
    settings: Settings,
    engine: Engine,
    *,
    secure_cookies: bool = False,
    entra: UserSignIn | None = None,
) -> FastAPI:
    """`entra`: sign-in with Microsoft Entra ID besides local users (roles from the
    token's app roles)."""
    sessions = make_session_factory(engine)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["tz"] = settings.tz
    throttle = SignInThrottle()
    app = FastAPI(
        title="jobqueue",
        description="Job Queue Entries and everything an admin does through the command line.",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.sessions = sessions
    app.state.settings = settings

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    key = SecretBox.from_env().derive("web-session")
    app.add_middleware(
        SessionMiddleware,
        secret_key=key.hex(),
        session_cookie="jobqueue_session",
        same_site="lax",
        https_only=secure_cookies,
        max_age=12 * 3600,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api_router(sessions, settings))
    odata.install(app, sessions)  # the item availability web service

    def who(request: Request) -> Principal:
        found = principal(request, sessions)
        if found is None:
            raise SignInRequired()
        return found

    async def posted(request: Request) -> tuple[Principal, Any]:
        """Who sends this form, and the form, once its CSRF token is checked."""
        me = who(request)
        form = await request.form()
        check_csrf(request, me, str(form.get(CSRF_FIELD, "")))
        return me, form

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        found = principal(request, sessions)
        context |= {"request": request, "me": found, "csrf": csrf_token(request),
                    "csrf_field": CSRF_FIELD, "Role": Role, "entra": entra is not None}  # fmt: skip
        return templates.TemplateResponse(request, name, context, status_code=status)

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in, or send an API token"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return page(request, "error.html", exc.status_code, message=str(exc.detail))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    # -- health ----------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # any failure means not ready
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    # -- sign-in ---------------------------------------------------------------------------
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=_local(next), error="")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        target = _local(str(form.get("next", "/")))
        client = request.client.host if request.client else "?"
        if throttle.blocked(f"name:{name}", f"ip:{client}"):
            return page(request, "login.html", 429, next=target,
                        error="Too many failed sign-ins; wait a few minutes.")  # fmt: skip
        with sessions.begin() as session:
            user = await run_in_threadpool(authenticate, session, name, password)
            if user is None:
                throttle.failed(f"name:{name}", f"ip:{client}")
                return page(request, "login.html", 401, next=target,
                            error="Unknown name or wrong password.")  # fmt: skip
            sign_in(request, user.name, user.role)
        return RedirectResponse(target, status_code=303)

    @app.get("/login/entra", include_in_schema=False)
    def entra_begin(request: Request) -> Response:
        if entra is None:
            raise HTTPException(404, "sign-in with Microsoft Entra ID is not configured")
        flow = entra.begin(str(request.url_for("entra_callback")))
        request.session["entra_flow"] = flow
        return RedirectResponse(str(flow["auth_uri"]), status_code=303)

    @app.get("/login/entra/callback", include_in_schema=False, name="entra_callback")
    def entra_callback(request: Request) -> Response:
        flow = request.session.pop("entra_flow", None)
        if entra is None or flow is None:
            raise HTTPException(400, "no sign-in with Microsoft is under way; start again")
        try:
            claims = entra.finish(flow, dict(request.query_params))
        except SignInError as exc:
            return page(request, "login.html", 401, next="/", error=str(exc))
        role = role_from_claims(claims)
        name = str(claims.get("preferred_username") or claims.get("oid") or "")
        if role is None:
            return page(request, "login.html", 403, next="/",
                        error=f"{name} has no role in this application (ask an admin to "
                        "assign JobQueue.Viewer, .Operator or .Admin)")  # fmt: skip
        sign_in(request, name, role, until=float(claims.get("exp", 0)) or None)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await posted(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- pages -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        who(request)
        now = utcnow()
        with sessions() as session:
            counts = queries.figures(session)
            drawn = chart.svg(chart.runs_by_hour(session, now), settings.tz)
            running = chart.processes(session, now)
        return page(request, "home.html", figures=counts, chart=Markup(drawn), **running)

    @app.get("/entries", include_in_schema=False)
    def entries(request: Request) -> HTMLResponse:
        who(request)
        f, rows, total = queries.requested_page(sessions, dict(request.query_params))
        pages = max(1, -(-total // queries.PAGE_SIZE))
        with sessions() as session:
            held = ops.waiting(session, [e.code for e in rows], utcnow())
        return page(request, "entries.html", rows=rows, total=total, f=f, pages=pages,
                    query=dict(request.query_params), held=held)  # fmt: skip

    @app.get("/entries/new", include_in_schema=False)
    def new_entry_form(request: Request) -> HTMLResponse:
        me = who(request)
        if not me.may(Role.ADMIN):
            raise HTTPException(403, "adding an entry needs the admin role")
        return page(request, "new_entry.html", jobs=registry.names(), typed={}, error="")

    @app.post("/entries/new", include_in_schema=False)
    async def new_entry(request: Request) -> Response:
        me, form = await posted(request)
        typed = {k: str(v) for k, v in form.items() if k in _FORM_FIELDS | {"code"}}
        texts = {k: v for k, v in typed.items() if k not in ("code", "job_name") and v != ""}
        texts["recurring"] = typed.get("recurring", "off")
        code = typed.get("code", "")
        try:
            await run_in_threadpool(actions.create, sessions, me, code, typed.get("job_name", ""),
                                    texts, settings.tz)  # fmt: skip
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except EntryError as exc:
            return page(request, "new_entry.html", 422, jobs=registry.names(), typed=typed,
                        error=str(exc))  # fmt: skip
        return RedirectResponse(f"/entries/{code.strip()}", status_code=303)

    @app.get("/log", include_in_schema=False)
    def log_entries(request: Request) -> HTMLResponse:
        who(request)
        with sessions() as session:
            rows, total, number = queries.log_page(session, dict(request.query_params))
        return page(request, "log.html", rows=rows, total=total, number=number,
                    query=dict(request.query_params), message="")  # fmt: skip

    @app.post("/log/cleanup", include_in_schema=False)
    async def log_cleanup(request: Request) -> Response:
        me, form = await posted(request)
        try:
            gone = await run_in_threadpool(
                actions.clean_log, sessions, me, str(form.get("days", ""))
            )
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except EntryError as exc:
            raise HTTPException(422, str(exc)) from None
        with sessions() as session:
            rows, total, number = queries.log_page(session, {})
        return page(request, "log.html", rows=rows, total=total, number=number, query={},
                    message=f"{gone} log entries deleted")  # fmt: skip

    @app.get("/categories", include_in_schema=False)
    def categories(request: Request) -> HTMLResponse:
        who(request)
        return _categories_page(request, 200, "")

    def _categories_page(request: Request, status: int, error: str) -> HTMLResponse:
        from domain.queue.models import JobQueueCategory

        with sessions() as session:
            rows = list(session.query(JobQueueCategory).order_by(JobQueueCategory.code))
        return page(request, "categories.html", status, rows=rows, error=error)

    @app.post("/categories", include_in_schema=False)
    async def add_category(request: Request) -> Response:
        me, form = await posted(request)
        try:
            code, description = str(form.get("code", "")), str(form.get("description", ""))
            await run_in_threadpool(actions.add_category, sessions, me, code, description)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except EntryError as exc:
            return _categories_page(request, 422, str(exc))
        return RedirectResponse("/categories", status_code=303)

    @app.get("/email", include_in_schema=False)
    def email(request: Request, status: str = "") -> HTMLResponse:
        who(request)
        with sessions() as session:
            outbox, sent = queries.mail(session, status.strip())
        return page(request, "email.html", outbox=outbox, sent=sent, chosen=status)

    @app.post("/email/outbox/{outbox_id}/retry", include_in_schema=False)
    async def retry_email(request: Request, outbox_id: str) -> Response:
        me, _form = await posted(request)
        try:
            await run_in_threadpool(actions.retry_email, sessions, me, outbox_id)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return RedirectResponse("/email", status_code=303)

    @app.get("/sales", include_in_schema=False)
    def sales(request: Request) -> HTMLResponse:
        who(request)
        return _sales_page(request, 200, "")

    def _sales_page(request: Request, status: int, message: str) -> HTMLResponse:
        with sessions() as session:
            state = queries.sales(session)
        return page(request, "sales.html", status, message=message, **state)

    async def _sales_request(request: Request, fn: Any, *args: Any) -> Response:
        """An admin's request on the Sales page, run off the event loop: the page with
        what was done, or with why it was refused (403 raised, 422, 502 when Sales could
        not be asked)."""
        try:
            said = await run_in_threadpool(fn, *args)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            return _sales_page(request, 422, str(exc))
        except (DataverseError, MicrosoftError) as exc:
            return _sales_page(request, 502, f"Dynamics 365 Sales: {exc}")
        return _sales_page(request, 200, str(said))

    @app.post("/sales/resolve", include_in_schema=False)
    async def settle(request: Request) -> Response:
        me, form = await posted(request)
        mapping, local_id = str(form.get("mapping", "")), str(form.get("local_id", ""))
        return await _sales_request(request, actions.settle_conflict, sessions, me, mapping,
                                    local_id, str(form.get("keep", "")))  # fmt: skip

    @app.post("/sales/tools/{action}", include_in_schema=False)
    async def sales_tool(request: Request, action: str) -> Response:
        """Retry failed records, a full synchronization, one record now, uncouple."""
        me, form = await posted(request)
        texts = {k: str(v) for k, v in form.items()}
        return await _sales_request(request, actions.sales_requests, sessions, me, action, texts)

    @app.post("/sales/match", include_in_schema=False)
    async def match(request: Request) -> Response:
        """Match-based coupling: preview (a plan is shown, nothing written), then apply
        exactly that plan."""
        me, form = await posted(request)
        if form.get("plan"):
            return await _sales_request(request, actions.match_apply, sessions, me,
                                        settings.verify, str(form["plan"]))  # fmt: skip
        try:
            mapping, on = str(form.get("mapping", "")), str(form.get("on", ""))
            plan = await run_in_threadpool(
                actions.match_preview, sessions, me, settings.verify, mapping, on
            )
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            return _sales_page(request, 422, str(exc))
        except (DataverseError, MicrosoftError) as exc:  # Sales could not be asked
            return _sales_page(request, 502, f"Dynamics 365 Sales: {exc}")
        with sessions() as session:
            state = queries.sales(session)
        return page(request, "sales.html", 200, message="", plan=plan, **state)

    @app.get("/users", include_in_schema=False)
    def users(request: Request) -> HTMLResponse:
        if not who(request).may(Role.ADMIN):
            raise HTTPException(403, "managing users needs the admin role")
        return _users_page(request, 200, "", "")

    def _users_page(request: Request, status: int, message: str, error: str) -> HTMLResponse:
        from domain.users.models import User

        with sessions() as session:
            rows = list(session.query(User).order_by(User.name))
        return page(request, "users.html", status, rows=rows, message=message, error=error,
                    roles=[r.value for r in Role])  # fmt: skip

    @app.post("/users", include_in_schema=False)
    async def manage_users(request: Request) -> Response:
        me, form = await posted(request)
        fields = {k: str(v) for k, v in form.items() if k in ("name", "role", "password", "do")}
        try:
            said = await run_in_threadpool(actions.manage_user, sessions, me, fields)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            return _users_page(request, 422, "", str(exc))
        return _users_page(request, 200, said, "")

    @app.get("/email-logging", include_in_schema=False)
    def email_logging(request: Request) -> HTMLResponse:
        who(request)
        return _email_logging_page(request, 200, "", "")

    def _email_logging_page(
        request: Request, status: int, message: str, error: str
    ) -> HTMLResponse:
        with sessions() as session:
            state = queries.email_logging(session)
        return page(request, "email_logging.html", status, message=message, error=error, **state)

    @app.post("/email-logging", include_in_schema=False)
    async def email_logging_action(request: Request) -> Response:
        me, form = await posted(request)
        what, entry_no = str(form.get("do", "")), str(form.get("entry", ""))
        try:
            said = await run_in_threadpool(actions.email_logging, sessions, me, what, settings,
                                           entry_no)  # fmt: skip
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except (ValueError, RuntimeError) as exc:
            return _email_logging_page(request, 422, "", str(exc))
        return _email_logging_page(request, 200, said, "")

    @app.get("/audit", include_in_schema=False)
    def audit(request: Request, page_number: int = 1) -> HTMLResponse:
        who(request)
        with sessions() as session:
            rows = queries.audit_page(session, page_number)
        return page(request, "audit.html", rows=rows)

    def card(request: Request, code: str, status: int = 200, **extra: Any) -> HTMLResponse:
        with sessions() as session:
            try:
                entry = ops.get_entry(session, code)
            except EntryError as exc:
                raise HTTPException(404, str(exc)) from None
            log = queries.log_of(session, entry)
            audit = queries.audit_of(session, code)
            weekdays = describe_weekdays_of(entry)
        return page(request, "entry.html", status, entry=entry, log=log, audit=audit,
                    weekdays=weekdays, window=ops.describe_window(entry.starting_time,
                    entry.ending_time), jobs=registry.names(), recipients=RECIPIENTS,
                    **extra)  # fmt: skip

    @app.get("/entries/{code}", include_in_schema=False)
    def entry_card(request: Request, code: str) -> HTMLResponse:
        who(request)
        return card(request, code, error="", field="")

    @app.post("/entries/{code}", include_in_schema=False)
    async def entry_edit(request: Request, code: str) -> Response:
        me, form = await posted(request)
        texts = _card_fields(form)
        if "recurring" not in texts:
            texts["recurring"] = "off"  # an unticked box sends nothing
        try:
            await run_in_threadpool(actions.edit, sessions, me, code, texts, settings.tz)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except EntryFieldError as exc:
            return card(request, code, 422, error=str(exc), field=exc.field, typed=texts)
        except EntryError as exc:
            return card(request, code, 422, error=str(exc), field="", typed=texts)
        return RedirectResponse(f"/entries/{code}", status_code=303)

    @app.post("/entries/{code}/preview", include_in_schema=False)
    async def preview(request: Request, code: str) -> HTMLResponse:
        who(request)
        form = await request.form()
        texts = _card_fields(form)
        texts.setdefault("recurring", "off")
        with sessions() as session:
            try:
                entry = ops.get_entry(session, code)
                changes = changes_from_text(texts, settings.tz)
                runs = _preview(entry, changes, settings)
                error = "" if runs else "the schedule leaves no moment to run"
            except EntryError as exc:
                runs, error = [], str(exc)
        return page(request, "preview.html", runs=runs, error=error)

    @app.post("/entries/{code}/actions/{action}", include_in_schema=False)
    async def entry_action(request: Request, code: str, action: str) -> Response:
        me, _form = await posted(request)
        try:
            await run_in_threadpool(actions.act, sessions, me, code, action, settings.tz)
        except actions.Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        except EntryError as exc:
            return card(request, code, 422, error=str(exc), field="")
        target = "/entries" if action == "delete" else f"/entries/{code}"
        return RedirectResponse(target, status_code=303)

    @app.get("/events", include_in_schema=False)
    async def events(request: Request, codes: str = "") -> StreamingResponse:
        who(request)
        wanted = [c for c in codes.split(",") if c][:200]

        async def stream() -> AsyncIterator[str]:
            last: dict[str, dict[str, Any]] = {}
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                now = await run_in_threadpool(_statuses, sessions, wanted)
                changed = {k: v for k, v in now.items() if last.get(k) != v}
                if changed:
                    yield f"event: entries\ndata: {json.dumps(changed)}\n\n"
                    last.update(changed)
                await asyncio.sleep(LIVE_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip

    return app


_FORM_FIELDS = frozenset(
    {
        "description", "job_name", "parameter_string", "recurring", "minutes_between_runs",
        "weekdays", "window", "earliest_start", "expiration", "category", "maximum_attempts",
        "rerun_delay_seconds", "job_timeout_seconds", "inactivity_timeout_minutes", "priority",
        "user_id", "next_run_date_formula", "notify_on_failure", "notify_after_failures",
        "notify_on_success", "notify_recipients",
    }
)  # fmt: skip


def _card_fields(form: Any) -> dict[str, str]:
    """The card's fields as typed. The card shows every field, so with a next run date
    formula filled in, its weekdays and minutes between runs are not sent: the formula
    decides (Business Central clears them)."""
    texts = {k: str(v) for k, v in form.items() if k in _FORM_FIELDS}
    if texts.get("next_run_date_formula", "").strip():
        texts.pop("weekdays", None)
        texts.pop("minutes_between_runs", None)
    return texts


def _statuses(sessions: sessionmaker[Session], codes: list[str]) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        return queries.statuses(session, codes)


def _preview(entry: Any, changes: dict[str, Any], settings: Settings) -> list[Any]:
    """The next five runs of the entry as it would be with these changes (not saved)."""
    from types import SimpleNamespace

    from domain.clock import utcnow
    from domain.queue.transitions import WEEKDAY_COLUMNS

    names = ("minutes_between_runs", "starting_time", "ending_time", "expiration", "recurring",
             "next_run_date_formula")  # fmt: skip
    values = {c: getattr(entry, c) for c in (*names, "earliest_start", *WEEKDAY_COLUMNS)}
    for key, value in changes.items():
        if key == "weekdays":
            values |= {c: i in value for i, c in enumerate(WEEKDAY_COLUMNS)}
        elif key in values:
            values[key] = value
    shaped = SimpleNamespace(**values)
    start = max(shaped.earliest_start, utcnow())
    return next_runs(recurrence_of(shaped, settings.tz), start, 5, bool(shaped.recurring))


ENTRA_ENV = ("JOBQUEUE_ENTRA_TENANT", "JOBQUEUE_ENTRA_CLIENT_ID", "JOBQUEUE_ENTRA_CLIENT_SECRET")


def entra_from_env(env: Mapping[str, str], settings: Settings) -> UserSignIn | None:
    """Sign-in with Microsoft Entra ID when its three variables are set; one set without
    the others is an error naming what is missing."""
    given = [name for name in ENTRA_ENV if env.get(name, "").strip()]
    if not given:
        return None
    missing = [name for name in ENTRA_ENV if name not in given]
    if missing:
        raise ValueError(f"{missing[0]} is not set (sign-in with Entra ID needs all of "
                         f"{', '.join(ENTRA_ENV)})")  # fmt: skip
    return UserSignIn(
        env["JOBQUEUE_ENTRA_TENANT"].strip(),
        env["JOBQUEUE_ENTRA_CLIENT_ID"].strip(),
        Secret(env["JOBQUEUE_ENTRA_CLIENT_SECRET"]),
        authority_host=env.get("JOBQUEUE_ENTRA_AUTHORITY_HOST", "").strip()
        or "https://login.microsoftonline.com",
        verify=settings.ca_file or True,
    )


def web_app_from_env(settings: Settings, engine: Engine, env: Mapping[str, str]) -> FastAPI:
    """The console as every process that serves it configures it: Secure cookies behind
    TLS (JOBQUEUE_WEB_TLS=1), sign-in with Entra ID when its variables are set."""
    return create_web_app(
        settings,
        engine,
        secure_cookies=env.get("JOBQUEUE_WEB_TLS") == "1",
        entra=entra_from_env(env, settings),
    )


def _local(target: str) -> str:
    """Only a path on this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
