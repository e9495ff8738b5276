"""What people do to entries through the console and the API: the domain's operations
(`domain.queue.entries`), in a transaction marked with who did it, so every change
leaves its audit rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from admin.web.auth import Principal
from domain.audit.record import acting_as
from domain.clock import utcnow
from domain.queue import entries as ops
from domain.queue.form import changes_from_text
from domain.queue.limits import EntryError, EntryFieldError
from domain.queue.models import JobQueueEntry
from domain.users.models import Role
from jobs.registry import registry


class Forbidden(Exception):
    """The user's role does not allow this."""


def _require(who: Principal, role: Role, what: str) -> None:
    if not who.may(role):
        raise Forbidden(f"{what} needs the {role.value} role")


def _ready(session: Session, code: str, tz: tzinfo) -> None:
    ops.set_ready(session, code, utcnow(), tz)


def _hold(session: Session, code: str, tz: tzinfo) -> None:
    ops.set_on_hold(session, code)


def _run_now(session: Session, code: str, tz: tzinfo) -> None:
    ops.run_now(session, code, utcnow())


def _restart(session: Session, code: str, tz: tzinfo) -> None:
    """Business Central's Restart: On Hold, then Ready, in one go (a run in progress
    finishes; its message becomes stale and the entry is scheduled afresh)."""
    ops.set_on_hold(session, code)
    ops.set_ready(session, code, utcnow(), tz)


def _delete(session: Session, code: str, tz: tzinfo) -> None:
    ops.delete_entry(session, code)


# name -> (the role it needs, what it does)
ACTIONS: dict[str, tuple[Role, Callable[[Session, str, tzinfo], None]]] = {
    "ready": (Role.OPERATOR, _ready),
    "hold": (Role.OPERATOR, _hold),
    "run-now": (Role.OPERATOR, _run_now),
    "restart": (Role.OPERATOR, _restart),
    "delete": (Role.ADMIN, _delete),
}


def act(
    sessions: sessionmaker[Session], who: Principal, code: str, action: str, tz: tzinfo
) -> None:
    if action not in ACTIONS:
        raise EntryError(f"unknown action {action!r} (actions: {', '.join(ACTIONS)})")
    needed, do = ACTIONS[action]
    _require(who, needed, action)
    with sessions.begin() as session:
        do(acting_as(session, who.name, who.via), code, tz)


def edit(
    sessions: sessionmaker[Session], who: Principal, code: str, texts: Mapping[str, str], tz: tzinfo
) -> JobQueueEntry:
    _require(who, Role.ADMIN, "editing an entry")
    changes = changes_from_text(texts, tz)
    job = changes.get("job_name")
    if job is not None and not job:
        raise EntryError("job_name: choose a job")
    with sessions.begin() as session:
        return ops.edit_entry(
            acting_as(session, who.name, who.via), code, changes, registry, utcnow(), tz
        )


def create(
    sessions: sessionmaker[Session],
    who: Principal,
    code: str,
    job_name: str,
    texts: Mapping[str, str],
    tz: tzinfo,
) -> JobQueueEntry:
    _require(who, Role.ADMIN, "adding an entry")
    changes = changes_from_text(texts, tz)
    with sessions.begin() as session:
        session = acting_as(session, who.name, who.via)
        return ops.add_entry(session, code, job_name, changes, registry, utcnow(), tz)


def clean_log(sessions: sessionmaker[Session], who: Principal, days_text: str) -> int:
    """`days_text` "failed": the failed runs' entries; else those older than that many days."""
    _require(who, Role.ADMIN, "deleting log entries")
    if days_text == "failed":
        with sessions.begin() as session:
            return ops.delete_failed_log_entries(session)
    try:
        days = int(days_text.strip())
    except ValueError:
        raise EntryFieldError("days", f"{days_text!r} is not a whole number") from None
    with sessions.begin() as session:
        return ops.delete_log_older_than(session, days, utcnow())


def add_category(
    sessions: sessionmaker[Session], who: Principal, code: str, description: str
) -> None:
    _require(who, Role.ADMIN, "adding a category")
    with sessions.begin() as session:
        ops.add_category(acting_as(session, who.name, who.via), code, description)


def retry_email(sessions: sessionmaker[Session], who: Principal, outbox_id: str) -> None:
    """Sends a Failed message again (the command line's `email outbox retry`)."""
    from jobs.mail.compose import retry

    _require(who, Role.OPERATOR, "retrying an email")
    with sessions.begin() as session:
        retry(session, outbox_id, utcnow())


def import_data(
    sessions: sessionmaker[Session], who: Principal, table: str, rows: list[Any], tz: tzinfo
) -> Any:
    """The command line's `data import`, for records sent as a JSON array."""
    from jobs.sales.data_import import import_rows

    _require(who, Role.ADMIN, "importing data")
    with sessions.begin() as session:
        acting_as(session, who.name, who.via)
        numbered = list(enumerate(rows, start=1))
        return import_rows(session, table, numbered, user=who.name[:50], tz=tz)


def settle_conflict(
    sessions: sessionmaker[Session], who: Principal, mapping: str, local_id: str, keep: str
) -> str:
    """An admin's answer to a recorded update conflict (`jobqueue sales resolve`)."""
    from jobs.sales.conflicts import resolve

    _require(who, Role.ADMIN, "settling a conflict")
    with sessions.begin() as session:
        return resolve(session, mapping, local_id, keep, utcnow())


def manage_user(sessions: sessionmaker[Session], who: Principal, form: Mapping[str, str]) -> str:
    """Add a user, change a role or delete a user (admin); returns what was done."""
    from domain.users import accounts

    _require(who, Role.ADMIN, "managing users")
    name, what = form.get("name", ""), form.get("do", "")
    with sessions.begin() as session:
        session = acting_as(session, who.name, who.via)
        if what == "add":
            role = accounts.check_role(form.get("role", ""))
            accounts.add_user(session, name, role, form.get("password", ""), utcnow())
            return f"user {name} added ({role.value})"
        if what == "role":
            role = accounts.check_role(form.get("role", ""))
            accounts.set_role(session, name, role)
            return f"{name} is now {role.value}"
        if what == "delete":
            if name == who.name:
                raise accounts.AccountError("you cannot delete yourself")
            accounts.delete_user(session, name)
            return f"user {name} deleted"
    raise accounts.AccountError(f"unknown user action {what!r}")


def email_logging(
    sessions: sessionmaker[Session], who: Principal, what: str, settings: Any, entry_no: str = ""
) -> str:
    """Enable, disable or validate email logging (admin), or make an opportunity of a
    logged message (operator): the command line's operations."""
    from admin.email_logging import switch, to_opportunity, validate_setup

    needed = Role.OPERATOR if what == "opportunity" else Role.ADMIN
    _require(who, needed, "this")
    if what == "validate":
        mailbox, checked = validate_setup(sessions, settings)
        return f"{mailbox} is set up correctly: " + "; ".join(checked)
    with sessions.begin() as session:
        session = acting_as(session, who.name, who.via)
        if what in ("enable", "disable"):
            row = switch(session, what == "enable", settings.tz)
            return f"email logging {what}d; entry {row.entry_code}"
        if what == "opportunity":
            try:
                number = int(entry_no)
            except ValueError:
                raise EntryFieldError("entry", f"{entry_no!r} is not an entry number") from None
            made = to_opportunity(session, number)
            return f"opportunity {made.no} made of entry {number}"
    raise EntryError(f"unknown email logging action {what!r}")


def sales_requests(
    sessions: sessionmaker[Session], who: Principal, action: str, form: Mapping[str, str]
) -> str:
    """The coupling tools that need no Dataverse call (`jobqueue sales sync|retry|
    full-sync|uncouple`); returns what was done, in a sentence."""
    from jobs.sales import matching, rerun

    _require(who, Role.ADMIN, action.replace("-", " "))
    mapping, local_id = form.get("mapping", "").strip(), form.get("local_id", "").strip()
    with sessions.begin() as session:
        acting_as(session, who.name, who.via)
        if action == "retry":
            counts = rerun.retry_failed(session, utcnow())
            return (
                f"{sum(counts.values())} failed record(s) retried now"
                if counts
                else "no failed records"
            )
        if action == "full-sync":
            codes = rerun.full_sync(session, utcnow())
            return f"full synchronization: {', '.join(codes)} run now, in this order"
        if action == "sync":
            code = rerun.sync_record(session, mapping, local_id, utcnow())
            return f"{local_id} queued; entry {code} runs now"
    if action == "uncouple":
        row = matching.uncouple(sessions.kw["bind"], mapping, local_id)
        return f"{local_id} uncoupled from {row} (neither was deleted)"
    raise ValueError(f"no sales action {action!r}")


def match_preview(
    sessions: sessionmaker[Session], who: Principal, verify: str | bool, mapping: str, on: str
) -> Any:
    """Match-based coupling's preview (nothing is written): the plan to apply."""
    from jobs.sales import matching
    from jobs.sales.connection import connect
    from runtime.secrets import SecretBox

    _require(who, Role.ADMIN, "match-based coupling")
    engine = sessions.kw["bind"]
    fields = [name.strip() for name in on.split(",") if name.strip()]
    with connect(engine, SecretBox.from_env(), verify).client as client:
        return matching.preview(engine, client, mapping, fields)


def match_apply(
    sessions: sessionmaker[Session], who: Principal, verify: str | bool, plan_json: str
) -> str:
    """Couples exactly the pairs of a previewed plan."""
    from jobs.sales import matching
    from jobs.sales.connection import connect
    from runtime.secrets import SecretBox

    _require(who, Role.ADMIN, "match-based coupling")
    plan = matching.Plan.from_json(plan_json)
    engine = sessions.kw["bind"]
    with connect(engine, SecretBox.from_env(), verify).client as client:
        left_out = matching.apply(engine, client, plan, utcnow())
    said = f"{len(plan.pairs) - len(left_out)} coupled"
    return said + (f"; left out: {'; '.join(left_out)}" if left_out else "")
