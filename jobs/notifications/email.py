"""A notice by email: composed into the outbox under the "Job Queue" scenario, so the
admin decides the account that sends it, and the email-dispatch job delivers it with
its retries and rate limits."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain.mail.models import OutboxMessage
from domain.notifications.rules import SCENARIO, Notice, body, subject
from domain.users.models import Role, User
from jobs.mail.compose import compose

SENDER = "jobqueue"  # the outbox's "created by" of notifications


def recipients(session: Session, notice: Notice) -> list[str]:
    """The email addresses the notice goes to: the entry's user's and/or the admins'
    (users without an address are skipped), each once."""
    wanted = []
    if notice.to_user and notice.user:
        wanted.append(User.name == notice.user)
    if notice.to_admins:
        wanted.append(User.role == Role.ADMIN)
    if not wanted:
        return []
    rows = session.execute(
        select(User.email).where(or_(*wanted), User.email.is_not(None)).order_by(User.name)
    ).scalars()
    return list(dict.fromkeys(r for r in rows if r))


def queue_email(
    session: Session, notice: Notice, now: datetime, tz: tzinfo
) -> OutboxMessage | None:
    """The notice in the outbox, or None when nobody it is for has an address."""
    to = recipients(session, notice)
    if not to:
        return None
    return compose(
        session,
        created_by=SENDER,
        scenario=SCENARIO,
        to=to,
        subject=subject(notice),
        body=body(notice),
        now=now,
        tz=tz,
    )
