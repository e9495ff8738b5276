"""Which interactions a message makes: pure rules, no I/O.

A salesperson writing to a contact is outbound; a contact writing to a salesperson is
inbound. Every contact and salesperson pair gets one interaction; addresses compare
case-insensitively; a message between no salesperson and no contact makes none.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain.interactions.models import InformationFlow

_ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+")


class BadMessage(ValueError):
    """The message cannot be logged as it is (no sender, no id, an invalid address)."""


def address(value: str | None, role: str) -> str:
    """A usable, lower-cased email address, or BadMessage saying which one is wrong."""
    text = (value or "").strip()
    if not text:
        raise BadMessage(f"the {role} has no address")
    if not _ADDRESS.fullmatch(text):
        raise BadMessage(f"the {role} address {text!r} is not an email address")
    return text.lower()


@dataclass(frozen=True)
class MailMessage:
    """A message as read from the shared mailbox, whichever experience read it."""

    item_id: str  # the mailbox's own id of the item, used to move it
    message_id: str  # the internet message id, the same wherever the message is
    sender: str
    recipients: tuple[str, ...]  # to, cc and bcc
    subject: str
    received_at: datetime
    has_attachments: bool = False
    link: str = ""


def message(
    *,
    item_id: str,
    message_id: str | None,
    sender: str | None,
    to: Iterable[str | None] = (),
    cc: Iterable[str | None] = (),
    bcc: Iterable[str | None] = (),
    subject: str | None,
    received_at: datetime | None,
    has_attachments: bool = False,
    link: str = "",
) -> MailMessage:
    """Checks a message read from a mailbox; raises BadMessage with the reason."""
    if not (message_id or "").strip():
        raise BadMessage("the message has no internet message id")
    if received_at is None:
        raise BadMessage("the message has no received date")
    recipients: list[str] = []
    for role, values in (("To", to), ("Cc", cc), ("Bcc", bcc)):
        for value in values:
            found = address(value, f"{role} recipient")
            if found not in recipients:
                recipients.append(found)
    return MailMessage(
        item_id=item_id,
        message_id=(message_id or "").strip(),
        sender=address(sender, "sender"),
        recipients=tuple(recipients),
        subject=(subject or "")[:250],
        received_at=_utc(received_at),
        has_attachments=has_attachments,
        link=link,
    )


def message_key(message_id: str) -> str:
    """The fixed-length key a Message-ID of any length is found by (SHA-256, hex)."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(moment: datetime) -> datetime:
    """A plain UTC datetime (naive ones are taken as UTC; library subclasses dropped)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


@dataclass(frozen=True)
class Interaction:
    contact_no: str
    salesperson_code: str
    flow: InformationFlow


@dataclass
class Directory:
    """Salespeople and contacts by lower-cased address (several contacts may share one)."""

    salespeople: dict[str, list[str]] = field(default_factory=dict)
    contacts: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, salespeople: Mapping[str, str | None], contacts: Mapping[str, str | None]
    ) -> Directory:
        """From code → email and contact no → email; blank addresses match nothing."""
        directory = cls()
        for code, email in sorted(salespeople.items()):
            if email and email.strip():
                directory.salespeople.setdefault(email.strip().lower(), []).append(code)
        for no, email in sorted(contacts.items()):
            if email and email.strip():
                directory.contacts.setdefault(email.strip().lower(), []).append(no)
        return directory


def interactions(msg: MailMessage, directory: Directory) -> list[Interaction]:
    """The interactions `msg` makes, one per contact and salesperson pair, in a stable
    order. A sender who is a salesperson makes it outbound, even if the address is also
    a contact's."""
    found: dict[tuple[str, str], InformationFlow] = {}
    sender_salespeople = directory.salespeople.get(msg.sender, [])
    sender_contacts = directory.contacts.get(msg.sender, [])
    for recipient in msg.recipients:
        if sender_salespeople:
            for contact in directory.contacts.get(recipient, []):
                for code in sender_salespeople:
                    found.setdefault((contact, code), InformationFlow.OUTBOUND)
        elif sender_contacts:
            for code in directory.salespeople.get(recipient, []):
                for contact in sender_contacts:
                    found.setdefault((contact, code), InformationFlow.INBOUND)
    return [Interaction(contact, code, flow) for (contact, code), flow in found.items()]


def new_pairs(
    candidates: Sequence[tuple[str, Interaction]], logged: Iterable[tuple[str, str, str]]
) -> list[tuple[str, Interaction]]:
    """(message id, interaction) pairs not yet in the log, given the logged
    (message id, contact, salesperson) triples: a message read again adds nothing."""
    seen = set(logged)
    fresh = []
    for message_id, item in candidates:
        key = (message_id, item.contact_no, item.salesperson_code)
        if key not in seen:
            seen.add(key)
            fresh.append((message_id, item))
    return fresh
