"""Composing email into the outbox: every check happens here, before anything is queued,
so a bad address or an oversized attachment is refused at once and nothing half-made stays."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.utils import make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.mail.kinds import OutboxStatus
from domain.mail.models import (
    DefaultAttachment,
    EmailAccount,
    EmailRelatedRecord,
    OutboxAttachment,
    OutboxMessage,
)
from domain.mail.rules import (
    MAX_CREATED_BY,
    MAX_SCENARIO,
    MAX_SUBJECT,
    MailRuleError,
    RelatedRecord,
    account_for_scenario,
    check_attachment,
    check_attachment_sizes,
    check_header_text,
    parse_addresses,
)
from jobs.mail.accounts import default_account_id, get_account, scenario_assignments
from jobs.wakeup import data_changed

OUTBOX_KIND = "email-outbox"  # the data kind the email-dispatch job watches


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


def compose(
    session: Session,
    *,
    created_by: str,
    scenario: str,
    to: str | Iterable[str],
    subject: str,
    body: str,
    now: datetime,
    cc: str | Iterable[str] = (),
    bcc: str | Iterable[str] = (),
    html: bool = False,
    attachments: Sequence[Attachment] = (),
    related: Sequence[RelatedRecord] = (),
    queue: bool = True,
    max_attempts: int = 5,
    tz: tzinfo = UTC,
    account_name: str | None = None,
) -> OutboxMessage:
    """A message in the outbox (Queued, or Draft with queue=False), routed by its scenario
    and carrying the scenario's default attachments."""
    to_list, cc_list, bcc_list = parse_addresses(to), parse_addresses(cc), parse_addresses(bcc)
    if not (to_list or cc_list or bcc_list):
        raise MailRuleError("an email needs at least one recipient")
    check_header_text("subject", subject, MAX_SUBJECT)
    check_header_text("scenario", scenario, MAX_SCENARIO)
    check_header_text("created by", created_by, MAX_CREATED_BY)
    if account_name is not None:  # an explicit account (a test message) wins over routing
        account = get_account(session, account_name)
        account_id = account.id
    else:
        account_id = account_for_scenario(
            scenario, scenario_assignments(session), default_account_id(session)
        )
        found = session.get(EmailAccount, account_id)
        assert found is not None
        account = found
    cap = account.max_recipients_per_message
    count = len(to_list) + len(cc_list) + len(bcc_list)
    if cap and count > cap:
        raise MailRuleError(
            f"{count} recipients; the account {account.name!r} takes at most {cap} in one "
            "message (To, Cc and Bcc together)"
        )
    defaults = session.execute(
        select(DefaultAttachment).where(DefaultAttachment.scenario == scenario)
    ).scalars()
    files = [Attachment(d.filename, d.data, d.content_type) for d in defaults] + list(attachments)
    for f in files:
        check_attachment(f.filename, f.content_type)
    check_attachment_sizes([(f.filename, len(f.data)) for f in files])
    outbox_id = str(uuid.uuid4())
    message = OutboxMessage(
        id=outbox_id,
        message_id=make_msgid(idstring=outbox_id[:8], domain=account.address.partition("@")[2]),
        account_id=account_id,
        scenario=scenario,
        created_by=created_by,
        status=OutboxStatus.QUEUED if queue else OutboxStatus.DRAFT,
        subject=subject,
        body=body,
        body_html=html,
        to_addresses=to_list,
        cc_addresses=cc_list,
        bcc_addresses=bcc_list,
        attempts=0,
        max_attempts=max_attempts,
        send_after=now,
        created_at=now,
    )
    session.add(message)
    session.flush()
    for f in files:
        session.add(
            OutboxAttachment(
                outbox_id=outbox_id,
                filename=f.filename,
                content_type=f.content_type,
                size=len(f.data),
                data=f.data,
            )
        )
    for record in related:
        session.add(
            EmailRelatedRecord(
                email_id=outbox_id, table_name=record.table, record_id=record.record_id
            )
        )
    if queue:
        data_changed(session, OUTBOX_KIND, tz, now=now)  # wake a sleeping email-dispatch entry
    return message


def retry(session: Session, outbox_id: str, now: datetime) -> OutboxMessage:
    """An admin sends a Failed (or Draft) message again, with a fresh count of attempts."""
    message = session.get(OutboxMessage, outbox_id)
    if message is None:
        raise MailRuleError(f"no outbox message {outbox_id!r}")
    if message.status not in (OutboxStatus.FAILED, OutboxStatus.DRAFT):
        raise MailRuleError(f"message {outbox_id!r} is {message.status.value}, not Failed or Draft")
    message.status = OutboxStatus.QUEUED
    message.attempts = 0
    message.send_after = now
    message.send_started_at = None
    return message
