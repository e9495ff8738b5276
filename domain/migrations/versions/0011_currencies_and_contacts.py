"""currencies, and contacts as the CONTACT mapping needs them: a currency table, and the
contact's name parts, phone, job title, customer, salesperson and modification stamp

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 18:40:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TEXTS = (("first_name", 30), ("surname", 30), ("phone_no", 30), ("job_title", 30),
          ("customer_no", 20), ("salesperson_code", 20), ("modified_by", 50))  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "currencies",
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("description", sa.String(length=30), nullable=False),
        sa.Column("symbol", sa.String(length=10), nullable=False),
        sa.Column("exchange_rate", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_currencies_modified_at", "currencies", ["modified_at"], unique=False)
    # Plain ADD COLUMN (not a batch copy): on SQLite a copy of contacts would have to
    # drop the table that interaction log entries and opportunities refer to.
    for name, length in _TEXTS:
        op.add_column(
            "contacts", sa.Column(name, sa.String(length), nullable=False, server_default="")
        )
    op.add_column("contacts", sa.Column("modified_at", UTCDateTime(timezone=True), nullable=True))
    # Contacts made before now count as changed now: the first CONTACT run sees them all.
    contacts = sa.table("contacts", sa.column("modified_at", UTCDateTime(timezone=True)))
    op.execute(contacts.update().values(modified_at=datetime.now(UTC)))
    op.create_index("ix_contacts_modified_at", "contacts", ["modified_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_contacts_modified_at", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("modified_at")
        for name, _length in reversed(_TEXTS):
            batch.drop_column(name)
    op.drop_index("ix_currencies_modified_at", table_name="currencies")
    op.drop_table("currencies")
