"""Issue 16: the console and the HTTP API (FastAPI, Starlette's test client), on SQLite
and PostgreSQL: sign-in, roles, CSRF, escaping, inline validation that changes nothing,
API tokens, the audit trail, the schedule preview."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from domain.audit.models import AuditEntry
from domain.clock import utcnow
from domain.queue.status import EntryStatus
from domain.users.accounts import add_user, create_token
from domain.users.models import Role
from runtime.settings import Settings
from tests.helpers import add, entry

PASSWORD = "correct horse battery"


@pytest.fixture
def console(settings: Settings, engine: Any, sessions: Any) -> TestClient:
    from admin.web.app import create_web_app

    with sessions.begin() as session:
        for name, role in (("ada", Role.ADMIN), ("otto", Role.OPERATOR), ("vic", Role.VIEWER)):
            add_user(session, name, role, PASSWORD, utcnow())
    add(sessions, settings, "NIGHTLY", "noop", description="<script>alert(1)</script>",
        recurring=True, minutes_between_runs=60)  # fmt: skip
    add(sessions, settings, "HOURLY", "noop", description="every hour")
    return TestClient(create_web_app(settings, engine), follow_redirects=False)


def sign_in(client: TestClient, name: str) -> str:
    answer = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/entries"})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/entries").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def token_for(sessions: Any, name: str) -> dict[str, str]:
    with sessions.begin() as session:
        return {"Authorization": f"Bearer {create_token(session, name, utcnow())}"}


def test_pages_need_a_sign_in_and_the_api_a_token(console: TestClient) -> None:
    assert console.get("/entries").status_code == 303
    assert console.get("/entries").headers["location"].startswith("/login")
    assert console.get("/api/entries").status_code == 401
    assert console.get("/api/entries", headers={"Authorization": "Bearer nope"}).status_code == 401
    wrong = console.post("/login", data={"name": "ada", "password": "not it at all"})
    assert wrong.status_code == 401 and "Unknown name or wrong password" in wrong.text


def test_the_entries_page_filters_sorts_and_shows_text_as_text(console: TestClient) -> None:
    sign_in(console, "vic")
    page = console.get("/entries").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "2 entries" in page
    held = console.get("/entries", params={"status": "On Hold"}).text
    assert "0 entries" in held
    found = console.get("/entries", params={"q": "hour"}).text
    assert "1 entries" in found and "HOURLY" in found
    bad = console.get("/entries", params={"status": "Sleeping"})
    assert bad.status_code == 400 and "status: one of Ready" in bad.text
    answer = console.get("/entries")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_an_invalid_window_is_shown_inline_and_changes_nothing(
    console: TestClient, sessions: Any
) -> None:
    csrf = sign_in(console, "ada")
    before = entry(sessions, "NIGHTLY")
    answer = console.post("/entries/NIGHTLY", data={"csrf_token": csrf, "window": "25:00-06:00",
                                                    "recurring": "on"})  # fmt: skip
    assert answer.status_code == 422
    assert "window" in answer.text and "must look like 08:00-18:00" in answer.text
    assert 'value="25:00-06:00"' in answer.text  # what was typed stays in the form
    after = entry(sessions, "NIGHTLY")
    assert (after.starting_time, after.revision) == (before.starting_time, before.revision)
    saved = console.post("/entries/NIGHTLY", data={"csrf_token": csrf, "window": "08:00-17:00",
                                                   "recurring": "on"})  # fmt: skip
    assert saved.status_code == 303
    assert str(entry(sessions, "NIGHTLY").starting_time) == "08:00:00"
    with sessions() as session:
        rows = session.execute(select(AuditEntry).where(AuditEntry.field == "starting_time"))
        [change] = rows.scalars().all()
    assert (change.actor, change.surface, change.old_value, change.new_value) == (
        "ada", "console", "", "08:00:00")  # fmt: skip


def test_a_form_without_its_csrf_token_is_refused(console: TestClient, sessions: Any) -> None:
    sign_in(console, "ada")
    answer = console.post("/entries/HOURLY/actions/hold", data={})
    assert answer.status_code == 403 and "CSRF" in answer.text
    forged = console.post("/entries/HOURLY/actions/hold", data={"csrf_token": "guess"})
    assert forged.status_code == 403
    assert entry(sessions, "HOURLY").status == EntryStatus.READY


def test_roles_decide_what_a_user_may_do(console: TestClient, sessions: Any) -> None:
    csrf = sign_in(console, "vic")
    assert (
        console.post("/entries/HOURLY/actions/hold", data={"csrf_token": csrf}).status_code == 403
    )
    viewer = token_for(sessions, "vic")
    assert console.post("/api/entries/HOURLY/actions/hold", headers=viewer).status_code == 403
    assert console.get("/api/entries/HOURLY", headers=viewer).json()["status"] == "Ready"
    operator = token_for(sessions, "otto")
    held = console.post("/api/entries/HOURLY/actions/hold", headers=operator)
    assert held.status_code == 200
    assert entry(sessions, "HOURLY").status == EntryStatus.ON_HOLD
    refused = console.patch("/api/entries/HOURLY", headers=operator, json={"priority": "5"})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    with sessions() as session:
        [audit] = session.execute(select(AuditEntry).where(AuditEntry.field == "status")).scalars()
    assert (audit.actor, audit.surface, audit.new_value) == ("otto", "api", "On Hold")


def test_the_api_validates_as_the_command_line_does(console: TestClient, sessions: Any) -> None:
    admin = token_for(sessions, "ada")
    bad = console.patch("/api/entries/HOURLY", headers=admin, json={"maximum_attempts": "0"})
    assert bad.status_code == 422
    assert bad.json()["detail"]["field"] == "maximum_attempts"
    made = console.post("/api/entries", headers=admin,
                        json={"code": "WEEKLY", "job_name": "noop", "recurring": "yes",
                              "weekdays": "mon", "window": "06:00-07:00"})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["weekdays"] == "mon" and made.json()["window"] == "06:00-07:00"
    unknown_job = console.post("/api/entries", headers=admin,
                               json={"code": "X", "job_name": "no-such-job"})  # fmt: skip
    assert unknown_job.status_code == 422 and unknown_job.json()["detail"]["field"] == "job_name"
    listed = console.get("/api/entries", headers=admin, params={"sort": "-code"}).json()
    assert [e["code"] for e in listed["entries"]] == ["WEEKLY", "NIGHTLY", "HOURLY"]
    schema = console.get("/api/openapi.json").json()
    assert {"/api/entries", "/api/entries/{code}", "/api/entries/{code}/actions/{action}"} <= set(
        schema["paths"]
    )


def test_a_session_call_to_the_api_needs_the_csrf_header(console: TestClient) -> None:
    csrf = sign_in(console, "otto")
    assert console.post("/api/entries/HOURLY/actions/hold").status_code == 403
    answer = console.post("/api/entries/HOURLY/actions/hold", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200


def test_the_schedule_preview_shows_the_next_five_runs(console: TestClient) -> None:
    csrf = sign_in(console, "ada")
    answer = console.post("/entries/NIGHTLY/preview", data={
        "csrf_token": csrf, "recurring": "on", "minutes_between_runs": "60",
        "window": "08:00-10:00", "weekdays": "mon-fri"})  # fmt: skip
    runs = re.findall(r"<li>(\w+) \d{4}-\d\d-\d\d (\d\d:\d\d)</li>", answer.text)
    assert len(runs) == 5
    assert all(day not in ("Sat", "Sun") and "08:00" <= at <= "10:00" for day, at in runs)
    broken = console.post("/entries/NIGHTLY/preview", data={"csrf_token": csrf, "window": "x"})
    assert "must look like 08:00-18:00" in broken.text


def test_repeated_failed_sign_ins_are_throttled(console: TestClient) -> None:
    for _ in range(5):
        assert (
            console.post("/login", data={"name": "ada", "password": "wrong wrong"}).status_code
            == 401
        )
    answer = console.post("/login", data={"name": "ada", "password": PASSWORD})
    assert answer.status_code == 429 and "Too many failed sign-ins" in answer.text


def test_the_session_cookie_is_http_only_and_same_site(console: TestClient) -> None:
    answer = console.post("/login", data={"name": "ada", "password": PASSWORD})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert console.get("/healthz").json() == {"status": "ok"}
    assert console.get("/readyz").json() == {"status": "ready"}


def test_users_and_tokens_from_the_command_line_and_its_changes_audited(
    settings: Settings, sessions: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from tests.helpers import cli_runner

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_USER", "root-at-console")
    run = cli_runner(capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    code, out, err = run("users", "add", "grace", "--role", "operator", "--password-stdin")
    assert code == 0 and "grace added (operator)" in out, err
    code, _out, err = run("users", "add", "bad", "--role", "root", "--password-stdin")
    assert code == 2 and "role: one of viewer, operator, admin" in err
    code, out, _err = run("users", "token", "grace")
    assert code == 0 and out.startswith("jq_")
    add(sessions, settings, "CLI1", "noop")
    code, _out, err = run("entries", "set", "CLI1", "--priority", "7")
    assert code == 0, err
    with sessions() as session:
        [row] = session.execute(select(AuditEntry).where(AuditEntry.object_key == "CLI1")).scalars()
    assert (row.actor, row.surface, row.field, row.new_value) == (
        "root-at-console",
        "cli",
        "priority",
        "7",
    )


def test_text_the_database_cannot_store_is_a_422_naming_the_field(
    console: TestClient, sessions: Any
) -> None:
    admin = token_for(sessions, "ada")
    answer = console.patch("/api/entries/HOURLY", headers=admin, json={"description": "a\x00b"})
    assert answer.status_code == 422
    assert answer.json()["detail"]["field"] == "description"
    assert entry(sessions, "HOURLY").description == "every hour"


def test_an_admin_adds_an_entry_and_a_category_and_cleans_the_log(
    console: TestClient, sessions: Any, settings: Settings
) -> None:
    from datetime import timedelta

    from domain.queue.models import JobQueueLogEntry
    from domain.queue.status import LogStatus

    csrf = sign_in(console, "ada")
    bad = console.post("/entries/new", data={"csrf_token": csrf, "code": "NEW1",
                                             "job_name": "noop", "window": "9-5"})  # fmt: skip
    assert bad.status_code == 422 and "window" in bad.text and 'value="NEW1"' in bad.text
    good = {"csrf_token": csrf, "code": "NEW1", "job_name": "noop", "window": "09:00-17:00"}
    made = console.post("/entries/new", data=good)
    assert made.status_code == 303 and made.headers["location"] == "/entries/NEW1"
    assert str(entry(sessions, "NEW1").starting_time) == "09:00:00"
    category = {"csrf_token": csrf, "code": "NIGHT", "description": "<b>night</b>"}
    assert console.post("/categories", data=category).status_code == 303
    page = console.get("/categories").text
    assert "NIGHT" in page and "&lt;b&gt;night&lt;/b&gt;" in page
    again = console.post("/categories", data={"csrf_token": csrf, "code": "NIGHT"})
    assert again.status_code == 422 and "exists already" in again.text
    old, new = utcnow() - timedelta(days=40), utcnow() - timedelta(days=1)
    with sessions.begin() as session:
        for when in (old, new):
            session.add(
                JobQueueLogEntry(
                    entry_id=None,
                    entry_code="HOURLY",
                    job_name="noop",
                    run_seq=1,
                    attempt=1,
                    started_at=when,
                    ended_at=when,
                    status=LogStatus.SUCCESS,
                    counters={},
                )
            )
    listed = console.get("/log", params={"code": "HOURLY"}).text
    assert "2 log entries" in listed
    cleaned = console.post("/log/cleanup", data={"csrf_token": csrf, "days": "30"})
    assert cleaned.status_code == 200 and "1 log entries deleted" in cleaned.text
    refused = console.post("/log/cleanup", data={"csrf_token": csrf, "days": "0"})
    assert refused.status_code == 422 and "days" in refused.text
    assert "NEW1" in console.get("/audit").text


def test_an_operator_cannot_add_entries_or_clean_the_log(console: TestClient) -> None:
    csrf = sign_in(console, "otto")
    assert console.get("/entries/new").status_code == 403
    denied = console.post("/log/cleanup", data={"csrf_token": csrf, "days": "30"})
    assert denied.status_code == 403


def test_the_home_page_shows_the_figures_the_scheduler_and_runs_per_hour(
    console: TestClient, sessions: Any
) -> None:
    from domain.queue.models import JobQueueLogEntry
    from domain.queue.status import LogStatus

    with sessions.begin() as session:
        for status in (LogStatus.SUCCESS, LogStatus.SUCCESS, LogStatus.ERROR):
            now = utcnow()
            session.add(JobQueueLogEntry(entry_id=None, entry_code="HOURLY", job_name="noop",
                                         run_seq=1, attempt=1, started_at=now, ended_at=now,
                                         status=status, counters={}))  # fmt: skip
    sign_in(console, "vic")
    home = console.get("/").text
    assert re.search(r'<span class="n">2</span> Ready', home)
    assert "none holds the lease" in home  # no scheduler runs in this test
    assert "2 succeeded, 1 failed" in home  # the current hour's bar
    assert re.search(r'id="per-minute">3</span>, of which failed: 1', home)
    assert home.count('<rect class="ok"') == 12


def test_a_failed_email_is_retried_by_an_operator_and_refusals_are_shown(
    console: TestClient, sessions: Any
) -> None:
    from domain.mail.kinds import OutboxStatus
    from domain.mail.models import OutboxMessage, SentEmail

    now = utcnow()
    with sessions.begin() as session:
        session.add(OutboxMessage(id="m1", message_id="<m1@x>", subject="Invoice <1>",
                                  status=OutboxStatus.FAILED, to_addresses=["a@b.example"],
                                  attempts=5, last_error="550 mailbox unavailable",
                                  send_after=now, created_at=now))  # fmt: skip
        session.add(SentEmail(id="s1", message_id="<s1@x>", scenario="Default", created_by="ADA",
                              sender="sales@cronus.example", subject="Statement",
                              to_addresses=["c@d.example", "e@f.example"], sent_at=now,
                              refused_recipients={"e@f.example": "452 try later"}))  # fmt: skip
    csrf = sign_in(console, "vic")
    page = console.get("/email").text
    assert "Invoice &lt;1&gt;" in page and "550 mailbox unavailable" in page
    assert "e@f.example: 452 try later" in page
    assert console.post("/email/outbox/m1/retry", data={"csrf_token": csrf}).status_code == 403
    console.post("/logout", data={"csrf_token": csrf})
    csrf = sign_in(console, "otto")
    assert console.post("/email/outbox/m1/retry", data={"csrf_token": csrf}).status_code == 303
    with sessions() as session:
        message = session.get(OutboxMessage, "m1")
        assert (message.status, message.attempts) == (OutboxStatus.QUEUED, 0)
    twice = console.post("/email/outbox/m1/retry", data={"csrf_token": csrf})
    assert twice.status_code == 422 and "not Failed or Draft" in twice.text


def test_the_sales_page_shows_runs_and_errors_and_settles_a_conflict(
    settings: Settings, engine: Any, sessions: Any, company: Any
) -> None:
    from admin.web.app import create_web_app
    from jobs.sales.local import save
    from tests.sales_fixtures import sync

    sync(engine, company, settings.tz)
    dv = company.dataverse
    product = next(p for p in dv.rows("products") if p["productnumber"] == "1000")
    dv.edit("products", product["productid"], {"name": "Bike (Sales)"}, by=dv.add_user("S", "s@x"))
    with sessions.begin() as session:
        save(session, "items", {"no": "1000", "description": "Bicycle 2027"}, user="ADMIN",
             tz=settings.tz)  # fmt: skip
        add_user(session, "ada", Role.ADMIN, PASSWORD, utcnow())
    sync(engine, company, settings.tz, "ITEM-PRODUCT")
    console = TestClient(create_web_app(settings, engine), follow_redirects=False)
    csrf = sign_in(console, "ada")
    page = console.get("/sales").text
    assert "ITEM-PRODUCT" in page and "update conflict" in page and "Keep local" in page
    assert "delta link" in page  # the pulling mappings read by change tracking
    assert re.search(r"<td>items</td><td>products</td><td>Success</td><td>1</td>", page)
    assert re.search(r"<td>items</td><td>products</td><td>Conflict</td><td>1</td>", page)
    keep_local = {
        "csrf_token": csrf,
        "mapping": "ITEM-PRODUCT",
        "local_id": "1000",
        "keep": "local",
    }
    settled = console.post("/sales/resolve", data=keep_local)
    assert settled.status_code == 200 and "will be sent to Dataverse" in settled.text
    again = console.post("/sales/resolve", data=keep_local)
    assert again.status_code == 422 and "no recorded conflict" in again.text
    assert sync(engine, company, settings.tz, "ITEM-PRODUCT")["ITEM-PRODUCT"].modified == 1


def test_the_api_lists_the_log_the_outbox_and_the_sync_runs(
    console: TestClient, sessions: Any
) -> None:
    viewer = token_for(sessions, "vic")
    assert console.get("/api/log", headers=viewer).json() == {
        "total": 0, "page": 1, "log_entries": []}  # fmt: skip
    assert console.get("/api/log", headers=viewer, params={"status": "Done"}).status_code == 400
    assert console.get("/api/outbox", headers=viewer).json() == {"outbox": [], "sent": []}
    assert console.get("/api/sales/runs", headers=viewer).json() == []
    assert console.get("/api/sales/errors", headers=viewer).json() == []
    missing = console.post("/api/outbox/nope/retry", headers=token_for(sessions, "otto"))
    assert missing.status_code == 422 and "no outbox message" in missing.json()["detail"]["reason"]


def test_an_admin_manages_users_and_the_last_admin_stays(
    console: TestClient, sessions: Any
) -> None:
    csrf = sign_in(console, "ada")
    added = console.post("/users", data={"csrf_token": csrf, "do": "add", "name": "bob",
                                         "role": "viewer", "password": PASSWORD})  # fmt: skip
    assert added.status_code == 200 and "user bob added (viewer)" in added.text
    short = console.post("/users", data={"csrf_token": csrf, "do": "add", "name": "eve",
                                         "role": "viewer", "password": "short"})  # fmt: skip
    assert short.status_code == 422 and "at least 10 characters" in short.text
    raised = console.post("/users", data={"csrf_token": csrf, "do": "role", "name": "bob",
                                          "role": "operator"})  # fmt: skip
    assert "bob is now operator" in raised.text
    last = console.post("/users", data={"csrf_token": csrf, "do": "role", "name": "ada",
                                        "role": "viewer"})  # fmt: skip
    assert last.status_code == 422 and "last admin" in last.text
    gone = console.post("/users", data={"csrf_token": csrf, "do": "delete", "name": "bob"})
    assert "user bob deleted" in gone.text
    with sessions() as session:
        rows = session.execute(select(AuditEntry).where(AuditEntry.object_type == "user"))
        trail = [(a.object_key, a.action, a.field, a.new_value) for a in rows.scalars()]
    assert trail == [("bob", "created", "", ""), ("bob", "changed", "role", "operator"),
                     ("bob", "deleted", "", "")]  # fmt: skip
    assert PASSWORD not in console.get("/audit").text
    console.post("/logout", data={"csrf_token": csrf})
    sign_in(console, "otto")
    assert console.get("/users").status_code == 403


def test_the_card_shows_the_last_error_and_edits_start_and_expiration(
    console: TestClient, sessions: Any, settings: Settings
) -> None:
    from sqlalchemy import update

    from domain.queue.models import JobQueueEntry, JobQueueLogEntry
    from domain.queue.status import LogStatus

    now = utcnow()
    with sessions.begin() as session:
        session.add(
            JobQueueLogEntry(
                entry_id=entry(sessions, "HOURLY").id,
                entry_code="HOURLY",
                job_name="noop",
                run_seq=1,
                attempt=1,
                started_at=now,
                ended_at=now,
                status=LogStatus.ERROR,
                error_message="the <b>server</b> said no",
                error_call_stack="Traceback: line 1",
                counters={"sent": 3},
            )
        )
        session.execute(update(JobQueueEntry).where(JobQueueEntry.code == "HOURLY")
                        .values(last_run_status="Error"))  # fmt: skip
    csrf = sign_in(console, "ada")
    card = console.get("/entries/HOURLY").text
    assert "Show error: the &lt;b&gt;server&lt;/b&gt; said no" in card
    assert "Traceback: line 1" in card and "sent 3" in card
    when = {"earliest_start": "2031-01-02T08:30", "expiration": "2031-02-01T00:00"}
    saved = console.post("/entries/HOURLY", data={"csrf_token": csrf, **when})
    assert saved.status_code == 303, saved.text
    changed = entry(sessions, "HOURLY")
    assert changed.earliest_start.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") == (
        "2031-01-02 08:30")  # fmt: skip
    assert changed.expiration is not None


def test_a_changed_role_or_a_deleted_user_takes_effect_at_once(
    console: TestClient, sessions: Any
) -> None:
    from domain.users.accounts import delete_user, set_role

    csrf = sign_in(console, "otto")
    with sessions.begin() as session:  # an admin demotes otto meanwhile
        set_role(session, "otto", Role.VIEWER)
    assert (
        console.post("/entries/HOURLY/actions/hold", data={"csrf_token": csrf}).status_code == 403
    )
    with sessions.begin() as session:
        delete_user(session, "otto")
    assert console.get("/entries").status_code == 303  # signed out


def test_restart_puts_an_entry_on_hold_and_ready_again(console: TestClient, sessions: Any) -> None:
    csrf = sign_in(console, "otto")
    before = entry(sessions, "HOURLY").revision
    answer = console.post("/entries/HOURLY/actions/restart", data={"csrf_token": csrf})
    assert answer.status_code == 303
    after = entry(sessions, "HOURLY")
    assert after.status == EntryStatus.READY and after.revision > before
    with sessions() as session:
        trail = [a.new_value for a in session.execute(
            select(AuditEntry).where(AuditEntry.field == "status")).scalars()]  # fmt: skip
    assert trail == ["On Hold", "Ready"]  # both steps of the restart are in the audit trail


def test_an_admin_removes_the_failed_log_entries(console: TestClient, sessions: Any) -> None:
    from tests.test_log_retention import count, seed_log

    seed_log(sessions)
    csrf = sign_in(console, "ada")
    answer = console.post("/log/cleanup", data={"csrf_token": csrf, "days": "failed"})
    assert answer.status_code == 200 and "2 log entries deleted" in answer.text
    assert count(sessions) == 3


def test_an_entry_runs_as_whoever_set_it_ready(
    console: TestClient, sessions: Any, settings: Settings, capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Issue 17, point 9: the console's user, or the command line's."""
    from tests.helpers import cli_runner

    csrf = sign_in(console, "otto")
    console.post("/entries/HOURLY/actions/hold", data={"csrf_token": csrf})
    console.post("/entries/HOURLY/actions/ready", data={"csrf_token": csrf})
    assert entry(sessions, "HOURLY").user_id == "otto"
    assert "<td>otto</td>" in console.get("/entries").text
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_USER", "night-operator")
    run = cli_runner(capsys)
    assert run("run-now", "HOURLY")[0] == 0
    assert entry(sessions, "HOURLY").user_id == "night-operator"
    code, out, _err = run("entries", "list")
    assert code == 0 and "night-operator" in out


def test_an_entry_held_back_by_its_category_shows_as_waiting(
    console: TestClient, sessions: Any, settings: Settings, capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Issue 17, point 7: shown as Waiting; stored (and dispatched) as Ready."""
    from sqlalchemy import update

    from domain.queue import entries as ops
    from domain.queue.models import JobQueueEntry
    from tests.helpers import cli_runner

    with sessions.begin() as session:
        ops.add_category(session, "ONE")
    add(sessions, settings, "RUNNING", "noop", category_code="ONE")
    add(sessions, settings, "NEXT", "noop", category_code="ONE")
    with sessions.begin() as session:
        session.execute(update(JobQueueEntry).where(JobQueueEntry.code == "RUNNING")
                        .values(status=EntryStatus.IN_PROCESS))  # fmt: skip
    sign_in(console, "vic")
    assert re.search(
        r'data-code="NEXT">.*?<td class="status">Waiting</td>', console.get("/entries").text, re.S
    )
    api = console.get("/api/entries", headers=token_for(sessions, "vic")).json()
    assert {e["code"]: e["status"] for e in api["entries"]}["NEXT"] == "Waiting"
    assert entry(sessions, "NEXT").status == EntryStatus.READY  # stored as Ready
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    code, out, _err = cli_runner(capsys)("entries", "list")
    assert code == 0 and re.search(r"NEXT\s+\S*\s*Waiting", out)


def test_the_card_and_the_api_edit_notifications_with_the_same_checks(
    console: TestClient, sessions: Any
) -> None:
    csrf = sign_in(console, "ada")
    card = console.get("/entries/HOURLY").text
    assert 'name="notify_recipients"' in card and 'name="notify_on_success"' in card
    bad = console.post("/entries/HOURLY", data={"csrf_token": csrf, "recurring": "off",
                                                "notify_after_failures": "11"})  # fmt: skip
    assert bad.status_code == 422 and "over the maximum of 10" in bad.text
    saved = console.post("/entries/HOURLY", data={"csrf_token": csrf, "recurring": "off",
                         "notify_on_success": "yes", "notify_on_failure": "no",
                         "notify_recipients": "admins"})  # fmt: skip
    assert saved.status_code == 303
    e = entry(sessions, "HOURLY")
    assert (e.notify_on_success, e.notify_on_failure, e.notify_recipients) == (
        True,
        False,
        "admins",
    )
    admin = token_for(sessions, "ada")
    refused = console.patch("/api/entries/HOURLY", headers=admin, json={"notify_recipients": "all"})
    assert refused.status_code == 422 and "notify" in refused.text
    assert console.get("/api/entries/HOURLY", headers=admin).json()["notify_recipients"] == "admins"


def test_the_api_imports_records_as_the_command_line_does(
    console: TestClient, sessions: Any
) -> None:
    from domain.sales.models import Item

    admin, viewer = token_for(sessions, "ada"), token_for(sessions, "vic")
    rows = [{"no": "1000", "description": "Bicycle", "unit_price": "4000.5"},
            {"no": "1001", "description": "Wheel", "unit_price": 120}]  # fmt: skip
    assert console.post("/api/data/items", headers=viewer, json=rows).status_code == 403
    bad = console.post(
        "/api/data/items", headers=admin, json=[*rows, {"no": "1002", "unit_price": "x"}]
    )
    assert bad.status_code == 422
    assert bad.json()["detail"]["reason"] == [
        "line 3: unit_price: 'x' is not a number (use a point: 12.50)"
    ]
    with sessions() as session:
        assert session.execute(select(Item)).first() is None  # nothing half-written
    done = console.post("/api/data/items", headers=admin, json=rows)
    assert done.status_code == 200 and done.json() == {
        "table": "items",
        "inserted": 2,
        "updated": 0,
    }
    again = console.post("/api/data/items", headers=admin, json=rows[:1])
    assert again.json()["updated"] == 1
    unknown = console.post("/api/data/secrets", headers=admin, json=rows)
    assert unknown.status_code == 422 and "no local table 'secrets'" in unknown.text


def test_an_admin_uses_the_coupling_tools_in_the_console(
    settings: Settings, engine: Any, sessions: Any, company: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from admin.web.app import create_web_app
    from domain.sales.integration import Coupling

    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", company.key)
    with sessions.begin() as session:
        add_user(session, "ada", Role.ADMIN, PASSWORD, utcnow())
        add_user(session, "otto", Role.OPERATOR, PASSWORD, utcnow())
    fabrikam = company.dataverse.add("accounts", {"name": "The Cannon Group"})  # C1's name
    console = TestClient(create_web_app(replace(settings, ca_file=company.bundle), engine),
                         follow_redirects=False)  # fmt: skip
    csrf = sign_in(console, "otto")
    refused = console.post("/sales/match", data={"csrf_token": csrf, "mapping": "CUSTOMER",
                                                 "on": "name"})  # fmt: skip
    assert refused.status_code == 403
    console.post("/logout", data={"csrf_token": csrf})
    csrf = sign_in(console, "ada")
    preview = console.post("/sales/match", data={"csrf_token": csrf, "mapping": "CUSTOMER",
                                                 "on": "name"})  # fmt: skip
    assert preview.status_code == 200 and "1 to couple" in preview.text and fabrikam in preview.text
    plan = re.search(r'name="plan" value="([^"]+)"', preview.text)
    assert plan is not None
    applied = console.post("/sales/match", data={"csrf_token": csrf,
                                                 "plan": unescape(plan.group(1))})  # fmt: skip
    assert applied.status_code == 200 and "1 coupled" in applied.text
    with sessions() as session:
        [coupled] = session.execute(select(Coupling).where(Coupling.local_id == "C1")).scalars()
    assert coupled.dataverse_id == fabrikam
    bad = console.post("/sales/match", data={"csrf_token": csrf, "mapping": "CUSTOMER",
                                             "on": "colour"})  # fmt: skip
    assert bad.status_code == 422 and "colour is not a plain field" in bad.text
    done = console.post("/sales/tools/uncouple", data={"csrf_token": csrf, "mapping": "CUSTOMER",
                                                       "local_id": "C1"})  # fmt: skip
    assert done.status_code == 200 and "C1 uncoupled" in done.text
    retried = console.post("/sales/tools/retry", data={"csrf_token": csrf})
    assert retried.status_code == 200 and "no failed records" in retried.text
    full = console.post("/sales/tools/full-sync", data={"csrf_token": csrf})
    assert full.status_code == 200 and "SALESPEOPLE, CURRENCY, CUSTOMER" in full.text
