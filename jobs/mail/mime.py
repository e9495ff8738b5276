"""The RFC 5322 message of an outbox entry (the Message-ID fixed at compose time)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from domain.mail.models import OutboxAttachment, OutboxMessage


def build_mime(
    message: OutboxMessage,
    attachments: Sequence[OutboxAttachment],
    sender: str,
    now: datetime,
) -> EmailMessage:
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
    """To, Cc and Bcc: Bcc travels in the envelope only, never in a header."""
    return [*message.to_addresses, *message.cc_addresses, *message.bcc_addresses]
