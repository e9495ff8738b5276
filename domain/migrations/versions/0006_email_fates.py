"""email fates: a rolling-window sending limit (one row per send instead of per minute),
recipients' own outcomes and caps, possible duplicates, Message-IDs of any length

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:00:00

The per-clock-minute counters let twice the limit through across a minute boundary;
the sends of the last minute are counted instead. The old counters are dropped (they
only ever described the last hour). An outbox message may go to some of its recipients
only (`envelope_to`, after others were refused for now); a sent record keeps what the
server refused and whether a retried hand-over may have delivered twice. Interaction
log entries keep the whole internet message id and are unique by its SHA-256.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_rate_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_email_rate_sends_account_sent_at", "email_rate_sends", ["account_id", "sent_at"]
    )
    op.drop_table("email_rate_windows")
    with op.batch_alter_table("email_accounts") as batch:
        batch.add_column(
            sa.Column(
                "max_recipients_per_message", sa.Integer(), nullable=False, server_default="500"
            )
        )
        batch.add_column(
            sa.Column(
                "max_recipients_per_day", sa.Integer(), nullable=False, server_default="10000"
            )
        )
    with op.batch_alter_table("email_outbox") as batch:
        batch.add_column(sa.Column("envelope_to", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("possibly_delivered", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("email_sent") as batch:
        batch.add_column(
            sa.Column("refused_recipients", sa.JSON(), nullable=False, server_default="{}")
        )
        batch.add_column(
            sa.Column("possible_duplicate", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("interaction_log_entries") as batch:
        batch.add_column(sa.Column("message_key", sa.String(length=64), nullable=True))
    entries = sa.table(
        "interaction_log_entries",
        sa.column("entry_no", sa.Integer()),
        sa.column("message_id", sa.Text()),
        sa.column("message_key", sa.String()),
    )
    connection = op.get_bind()
    for entry_no, message_id in connection.execute(
        sa.select(entries.c.entry_no, entries.c.message_id)
    ).all():
        key = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()
        connection.execute(
            entries.update().where(entries.c.entry_no == entry_no).values(message_key=key)
        )
    with op.batch_alter_table("interaction_log_entries") as batch:
        batch.drop_constraint("uq_interaction_message_pair", type_="unique")
        batch.alter_column("message_key", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("message_id", existing_type=sa.String(length=250), type_=sa.Text())
        batch.create_unique_constraint(
            "uq_interaction_message_pair", ["message_key", "contact_no", "salesperson_code"]
        )


def downgrade() -> None:
    with op.batch_alter_table("email_accounts") as batch:
        batch.drop_column("max_recipients_per_day")
        batch.drop_column("max_recipients_per_message")
    with op.batch_alter_table("interaction_log_entries") as batch:
        batch.drop_constraint("uq_interaction_message_pair", type_="unique")
        batch.alter_column("message_id", existing_type=sa.Text(), type_=sa.String(length=250))
        batch.drop_column("message_key")
        batch.create_unique_constraint(
            "uq_interaction_message_pair", ["message_id", "contact_no", "salesperson_code"]
        )
    with op.batch_alter_table("email_sent") as batch:
        batch.drop_column("possible_duplicate")
        batch.drop_column("refused_recipients")
    with op.batch_alter_table("email_outbox") as batch:
        batch.drop_column("possibly_delivered")
        batch.drop_column("envelope_to")
    op.create_table(
        "email_rate_windows",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "window_start"),
    )
    op.drop_index("ix_email_rate_sends_account_sent_at", table_name="email_rate_sends")
    op.drop_table("email_rate_sends")
