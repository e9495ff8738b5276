"""integration_pending_rows: rows read from Dataverse that could not come in, read
again by later runs (not only when someone edits them in Sales)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-23 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_pending_rows",
        sa.Column(
            "mapping_name",
            sa.String(40),
            sa.ForeignKey("integration_table_mappings.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("dataverse_id", sa.String(36), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("integration_pending_rows")
