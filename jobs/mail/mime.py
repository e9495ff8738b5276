"""The RFC 5322 message of an outbox entry (the Message-ID fixed at compose time)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from domain.mail.models import OutboxAttachment, OutboxMessage
from domain.mail.rules import MAX_SUBJECT, check_attachment, check_header_text, recipient_address


def build_mime(
    message: OutboxMessage,
    attachments: Sequence[OutboxAttachment],
    sender: str,
    now: datetime,
) -> EmailMessage:
    """Raises MailRuleError naming the field when a stored value cannot be a header (a row
    from before the compose checks, or written around them)."""
    check_header_text("subject", message.subject, MAX_SUBJECT)
    for attachment in attachments:
        check_attachment(attachment.filename, attachment.content_type)
    mime = EmailMessage()
    mime["From"] = sender
    if message.to_addresses:
        mime["To"] = ", ".join(message.to_addresses)
    if message.cc_addresses:
        mime["Cc"] = ", ".join(message.cc_addresses)
    mime["Subject"] = message.subject
    mime["Message-ID"] = message.message_id
    mime["Date"] = format_datetime(now)
    mime.set_content(message.body, subtype="html" if message.body_html else "plain")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mime.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return mime


def envelope_recipients(message: OutboxMessage) -> list[str]:
    """To, Cc and Bcc (Bcc travels in the envelope only, never in a header); after some
    were refused for now, only those still to deliver to."""
    if message.envelope_to:
        return list(message.envelope_to)
    everyone = [*message.to_addresses, *message.cc_addresses, *message.bcc_addresses]
    return [recipient_address(r) for r in everyone]
