"""Tables of outbound email. Secrets (SMTP passwords) are stored encrypted."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime, enum_type
from domain.mail.kinds import (
    Connector,
    OutboxStatus,
    SecureConnection,
    SenderType,
    SmtpAuthentication,
    ViewPolicy,
)


class EmailAccount(Base):
    __tablename__ = "email_accounts"
    __table_args__ = (
        # At most one default, enforced by the database; "at least one" is the rules' job.
        Index(
            "ux_email_accounts_default",
            "is_default",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
        CheckConstraint("rate_limit_per_minute >= 0", name="ck_email_accounts_rate_limit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(250), unique=True)
    address: Mapped[str] = mapped_column(String(250))
    connector: Mapped[Connector] = mapped_column(enum_type(Connector, "email_connector"))
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=0)  # 0 = no limit
    # Exchange Online's sending limits (documented defaults): recipients in one message,
    # and recipients in any 24 hours. 0 = no limit.
    max_recipients_per_message: Mapped[int] = mapped_column(Integer, default=500)
    max_recipients_per_day: Mapped[int] = mapped_column(Integer, default=10_000)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    mailbox: Mapped[str | None] = mapped_column(String(250), nullable=True)  # Microsoft 365


class SmtpSettings(Base):
    __tablename__ = "email_smtp_settings"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    server: Mapped[str] = mapped_column(String(250))
    port: Mapped[int] = mapped_column(Integer, default=587)
    secure_connection: Mapped[SecureConnection] = mapped_column(
        enum_type(SecureConnection, "smtp_secure_connection"), default=SecureConnection.STARTTLS
    )
    authentication: Mapped[SmtpAuthentication] = mapped_column(
        enum_type(SmtpAuthentication, "smtp_authentication"), default=SmtpAuthentication.BASIC
    )
    user_name: Mapped[str] = mapped_column(String(250), default="")
    password_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    sender_type: Mapped[SenderType] = mapped_column(
        enum_type(SenderType, "smtp_sender_type"), default=SenderType.SPECIFIC_USER
    )


class GraphSettings(Base):
    """Microsoft 365 / Current User: the app registration that signs in (client credentials)."""

    __tablename__ = "email_graph_settings"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(250))
    client_id: Mapped[str] = mapped_column(String(100))
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    graph_url: Mapped[str] = mapped_column(String(250), default="https://graph.microsoft.com/v1.0")
    authority_host: Mapped[str] = mapped_column(
        String(250), default="https://login.microsoftonline.com"
    )


class SubstituteSender(Base):
    """Send As / Send on Behalf: one substitute account for all processes (one row)."""

    __tablename__ = "email_substitute_sender"
    __table_args__ = (CheckConstraint("id = 1", name="ck_email_substitute_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    account_id: Mapped[int] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    send_as: Mapped[str] = mapped_column(String(250))


class EmailScenario(Base):
    """A scenario is assigned to one account at a time; unassigned ones use the default."""

    __tablename__ = "email_scenarios"

    scenario: Mapped[str] = mapped_column(String(100), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))


class DefaultAttachment(Base):
    __tablename__ = "email_default_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario: Mapped[str] = mapped_column(String(100), index=True)
    filename: Mapped[str] = mapped_column(String(250))
    content_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxMessage(Base):
    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_status_send_after", "status", "send_after"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4
    message_id: Mapped[str] = mapped_column(String(250), unique=True)  # RFC 5322 Message-ID
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="SET NULL"), nullable=True
    )
    scenario: Mapped[str] = mapped_column(String(100), default="Default")
    created_by: Mapped[str] = mapped_column(String(50), default="")
    status: Mapped[OutboxStatus] = mapped_column(
        enum_type(OutboxStatus, "outbox_status"), default=OutboxStatus.DRAFT
    )
    subject: Mapped[str] = mapped_column(String(998), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[bool] = mapped_column(Boolean, default=False)
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    # When set, the recipients still to deliver to (the others have it): a retry after
    # some recipients were refused for now goes to them only, with the same headers.
    envelope_to: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # An attempt ended without knowing whether the server had the message (the
    # connection dropped mid-send): the next one may deliver it twice.
    possibly_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    send_after: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set, and committed, before the message is handed to the provider: after a crash the
    # dispatcher knows a send may have happened and reconciles instead of sending blindly.
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxAttachment(Base):
    __tablename__ = "email_outbox_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[str] = mapped_column(
        ForeignKey("email_outbox.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(250))
    content_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class SentEmail(Base):
    __tablename__ = "email_sent"
    __table_args__ = (Index("ix_email_sent_created_by", "created_by", "sent_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the outbox id it came from
    message_id: Mapped[str] = mapped_column(String(250), unique=True)
    account_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    account_name: Mapped[str] = mapped_column(String(250), default="")
    scenario: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(50))
    sender: Mapped[str] = mapped_column(String(250))
    subject: Mapped[str] = mapped_column(String(998))
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    size: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Recipients the server refused (address -> its reply); a temporary refusal stays
    # here until a later attempt delivers to that recipient.
    refused_recipients: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The hand-over was retried after one whose outcome was unknown: the recipient may
    # have it twice.
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)


class EmailRelatedRecord(Base):
    """The records a message concerns (a posted invoice, its customer): view policies use them."""

    __tablename__ = "email_related_records"
    __table_args__ = (Index("ix_email_related_message", "email_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email_id: Mapped[str] = mapped_column(String(36))  # outbox id, kept when it moves to sent
    table_name: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(100))


class EmailViewPolicy(Base):
    __tablename__ = "email_view_policies"

    user_id: Mapped[str] = mapped_column(String(50), primary_key=True)  # '' = all users
    policy: Mapped[ViewPolicy] = mapped_column(enum_type(ViewPolicy, "email_view_policy"))


class EmailRateSend(Base):
    """One send of an account, when its hand-over started (and, once it is done, when it
    ended): what the rolling-window limit counts, shared by every worker on every
    machine. Rows older than a day are removed as new ones come."""

    __tablename__ = "email_rate_sends"
    __table_args__ = (Index("ix_email_rate_sends_account_sent_at", "account_id", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recipients: Mapped[int] = mapped_column(Integer, default=1)


RATE_SENDS: Table = cast(Table, EmailRateSend.__table__)
ACCOUNTS: Table = cast(Table, EmailAccount.__table__)
OUTBOX: Table = cast(Table, OutboxMessage.__table__)
OUTBOX_ATTACHMENTS: Table = cast(Table, OutboxAttachment.__table__)
SENT: Table = cast(Table, SentEmail.__table__)
SUBSTITUTE: Table = cast(Table, SubstituteSender.__table__)
