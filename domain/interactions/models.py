"""Tables of email logging: its setup (one row; secrets encrypted), contacts, the
interaction log, and the opportunities made from logged messages.

An interaction is unique per (internet message id, contact, salesperson): a message read
again, by a rerun after a crash or a second reader, adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime, enum_type

# The CRM's contacts and opportunities are owned by the sales tables (the sync reads them).
from domain.sales.models import Contact as Contact
from domain.sales.models import Opportunity as Opportunity
from domain.sales.models import OpportunityStatus as OpportunityStatus

EMAIL_TEMPLATE = "EMAIL"


class Experience(StrEnum):
    GRAPH = "graph"  # Microsoft Graph, Exchange Online only
    EWS = "ews"  # Exchange Web Services, Exchange Online or on-premises


class EwsAuthentication(StrEnum):
    OAUTH2 = "oauth2"
    BASIC = "basic"


class InformationFlow(StrEnum):
    INBOUND = "Inbound"  # a contact wrote to a salesperson
    OUTBOUND = "Outbound"  # a salesperson wrote to a contact


class EmailLoggingSetup(Base):
    """One row: which shared mailbox, through which experience, signed in as whom."""

    __tablename__ = "email_logging_setup"
    __table_args__ = (CheckConstraint("id = 1", name="ck_email_logging_setup_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    mailbox: Mapped[str] = mapped_column(String(250))
    experience: Mapped[Experience] = mapped_column(
        enum_type(Experience, "email_logging_experience")
    )
    ews_url: Mapped[str] = mapped_column(String(250), default="")
    ews_authentication: Mapped[EwsAuthentication] = mapped_column(
        enum_type(EwsAuthentication, "email_logging_ews_auth"), default=EwsAuthentication.OAUTH2
    )
    queue_folder: Mapped[str] = mapped_column(String(250), default="Inbox")
    storage_folder: Mapped[str] = mapped_column(String(250), default="Archive")
    batch_size: Mapped[int] = mapped_column(Integer, default=100)
    tenant: Mapped[str] = mapped_column(String(250), default="")
    client_id: Mapped[str] = mapped_column(String(100), default="")
    # The client secret (OAuth2) or the account's password (EWS basic), Fernet-encrypted.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    account: Mapped[str] = mapped_column(String(250))  # the account the job signs in as
    authority_host: Mapped[str] = mapped_column(
        String(250), default="https://login.microsoftonline.com"
    )
    graph_url: Mapped[str] = mapped_column(String(250), default="https://graph.microsoft.com/v1.0")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    entry_code: Mapped[str] = mapped_column(String(20), default="EMAIL-LOGGING")


class InteractionLogEntry(Base):
    __tablename__ = "interaction_log_entries"
    __table_args__ = (
        UniqueConstraint(
            "message_key", "contact_no", "salesperson_code", name="uq_interaction_message_pair"
        ),
        Index("ix_interaction_log_entries_contact", "contact_no"),
    )

    entry_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_no: Mapped[str] = mapped_column(String(20), ForeignKey("contacts.no"))
    salesperson_code: Mapped[str] = mapped_column(String(20), ForeignKey("salespersons.code"))
    information_flow: Mapped[InformationFlow] = mapped_column(
        enum_type(InformationFlow, "interaction_information_flow", length=10)
    )
    template_code: Mapped[str] = mapped_column(String(10), default=EMAIL_TEMPLATE)
    subject: Mapped[str] = mapped_column(String(250), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    message_id: Mapped[str] = mapped_column(Text)  # the internet message id, whole
    # Its SHA-256 (hex): a Message-ID from the internet can be any length, an index key not.
    message_key: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(Text, default="")  # opens the message where it is stored
    attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    opportunity_no: Mapped[str | None] = mapped_column(String(20), nullable=True)
