"""outbound email tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:29:44.694377
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "email_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("address", sa.String(length=250), nullable=False),
        sa.Column(
            "connector",
            sa.Enum(
                "Microsoft 365",
                "Current User",
                "SMTP",
                name="email_connector",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("mailbox", sa.String(length=250), nullable=True),
        sa.CheckConstraint("rate_limit_per_minute >= 0", name="ck_email_accounts_rate_limit"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("email_accounts", schema=None) as batch_op:
        batch_op.create_index(
            "ux_email_accounts_default",
            ["is_default"],
            unique=True,
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        )

    op.create_table(
        "email_default_attachments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.String(length=250), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("email_default_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_default_attachments_scenario"), ["scenario"], unique=False
        )

    op.create_table(
        "email_rate_windows",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "window_start"),
    )
    op.create_table(
        "email_related_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email_id", sa.String(length=36), nullable=False),
        sa.Column("table_name", sa.String(length=100), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("email_related_records", schema=None) as batch_op:
        batch_op.create_index("ix_email_related_message", ["email_id"], unique=False)

    op.create_table(
        "email_sent",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=250), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("account_name", sa.String(length=250), nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=50), nullable=False),
        sa.Column("sender", sa.String(length=250), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("email_sent", schema=None) as batch_op:
        batch_op.create_index("ix_email_sent_created_by", ["created_by", "sent_at"], unique=False)

    op.create_table(
        "email_view_policies",
        sa.Column("user_id", sa.String(length=50), nullable=False),
        sa.Column(
            "policy",
            sa.Enum(
                "View own emails",
                "View all emails",
                "View if access to all related records",
                "View if access to any related records",
                name="email_view_policy",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=250), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=50), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "Draft",
                "Queued",
                "Processing",
                "Failed",
                name="outbox_status",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Boolean(), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("send_after", UTCDateTime(), nullable=False),
        sa.Column("send_started_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["email_accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_email_outbox_status_send_after", ["status", "send_after"], unique=False
        )

    op.create_table(
        "email_scenarios",
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scenario"),
    )
    op.create_table(
        "email_smtp_settings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("server", sa.String(length=250), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column(
            "secure_connection",
            sa.Enum(
                "None",
                "STARTTLS",
                "SSL/TLS",
                name="smtp_secure_connection",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column(
            "authentication",
            sa.Enum(
                "Anonymous",
                "Basic",
                "OAuth 2.0",
                name="smtp_authentication",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("user_name", sa.String(length=250), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column(
            "sender_type",
            sa.Enum(
                "Specific User",
                "Current User",
                name="smtp_sender_type",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["account_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "email_graph_settings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=250), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("graph_url", sa.String(length=250), nullable=False),
        sa.Column("authority_host", sa.String(length=250), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "email_substitute_sender",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("send_as", sa.String(length=250), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_email_substitute_single_row"),
        sa.ForeignKeyConstraint(["account_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "email_outbox_attachments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=250), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["email_outbox.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("email_outbox_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_outbox_attachments_outbox_id"), ["outbox_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("email_outbox_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_outbox_attachments_outbox_id"))

    op.drop_table("email_outbox_attachments")
    op.drop_table("email_substitute_sender")
    op.drop_table("email_graph_settings")
    op.drop_table("email_smtp_settings")
    op.drop_table("email_scenarios")
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_email_outbox_status_send_after")

    op.drop_table("email_outbox")
    op.drop_table("email_view_policies")
    with op.batch_alter_table("email_sent", schema=None) as batch_op:
        batch_op.drop_index("ix_email_sent_created_by")

    op.drop_table("email_sent")
    with op.batch_alter_table("email_related_records", schema=None) as batch_op:
        batch_op.drop_index("ix_email_related_message")

    op.drop_table("email_related_records")
    op.drop_table("email_rate_windows")
    with op.batch_alter_table("email_default_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_default_attachments_scenario"))

    op.drop_table("email_default_attachments")
    with op.batch_alter_table("email_accounts", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_email_accounts_default",
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        )

    op.drop_table("email_accounts")
