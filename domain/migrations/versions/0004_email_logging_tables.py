"""email logging tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 01:35:29.483370
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=80), nullable=False),
        sa.Column("company_name", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("no"),
    )
    op.create_index("ix_contacts_email", "contacts", ["email"], unique=False)
    op.create_table(
        "email_logging_setup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=250), nullable=False),
        sa.Column(
            "experience",
            sa.Enum("graph", "ews", name="email_logging_experience", native_enum=False, length=60),
            nullable=False,
        ),
        sa.Column("ews_url", sa.String(length=250), nullable=False),
        sa.Column(
            "ews_authentication",
            sa.Enum("oauth2", "basic", name="email_logging_ews_auth", native_enum=False, length=60),
            nullable=False,
        ),
        sa.Column("queue_folder", sa.String(length=250), nullable=False),
        sa.Column("storage_folder", sa.String(length=250), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=250), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("account", sa.String(length=250), nullable=False),
        sa.Column("authority_host", sa.String(length=250), nullable=False),
        sa.Column("graph_url", sa.String(length=250), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("entry_code", sa.String(length=20), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_email_logging_setup_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "interaction_log_entries",
        sa.Column("entry_no", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contact_no", sa.String(length=20), nullable=False),
        sa.Column("salesperson_code", sa.String(length=20), nullable=False),
        sa.Column(
            "information_flow",
            sa.Enum(
                "Inbound",
                "Outbound",
                name="interaction_information_flow",
                native_enum=False,
                length=10,
            ),
            nullable=False,
        ),
        sa.Column("template_code", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=250), nullable=False),
        sa.Column("occurred_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("logged_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=250), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("attachments", sa.Boolean(), nullable=False),
        sa.Column("opportunity_no", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_no"],
            ["contacts.no"],
        ),
        sa.ForeignKeyConstraint(
            ["salesperson_code"],
            ["salespersons.code"],
        ),
        sa.PrimaryKeyConstraint("entry_no"),
        sa.UniqueConstraint(
            "message_id", "contact_no", "salesperson_code", name="uq_interaction_message_pair"
        ),
    )
    op.create_index(
        "ix_interaction_log_entries_contact",
        "interaction_log_entries",
        ["contact_no"],
        unique=False,
    )
    op.create_table(
        "opportunities",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=250), nullable=False),
        sa.Column("contact_no", sa.String(length=20), nullable=False),
        sa.Column("salesperson_code", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "Not Started",
                "In Progress",
                "Won",
                "Lost",
                name="opportunity_status",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("interaction_entry_no", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_no"],
            ["contacts.no"],
        ),
        sa.ForeignKeyConstraint(
            ["interaction_entry_no"],
            ["interaction_log_entries.entry_no"],
        ),
        sa.ForeignKeyConstraint(
            ["salesperson_code"],
            ["salespersons.code"],
        ),
        sa.PrimaryKeyConstraint("no"),
        sa.UniqueConstraint("interaction_entry_no"),
    )


def downgrade() -> None:
    op.drop_table("opportunities")
    op.drop_index("ix_interaction_log_entries_contact", table_name="interaction_log_entries")
    op.drop_table("interaction_log_entries")
    op.drop_table("email_logging_setup")
    op.drop_index("ix_contacts_email", table_name="contacts")
    op.drop_table("contacts")
