"""opportunities as the OPPORTUNITY mapping needs them: made here or in Sales (not only
from a logged email), with an estimated value and closing date and a modification stamp

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23 19:10:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A batch copy is safe here: no table refers to opportunities.
    with op.batch_alter_table("opportunities") as batch:
        batch.alter_column("interaction_entry_no", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("estimated_value", sa.Numeric(18, 4), nullable=False,
                                   server_default="0"))  # fmt: skip
        batch.add_column(sa.Column("estimated_close_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("modified_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("modified_by", sa.String(50), nullable=False,
                                   server_default=""))  # fmt: skip
    opportunities = sa.table("opportunities", sa.column("modified_at", UTCDateTime(timezone=True)))
    op.execute(opportunities.update().values(modified_at=datetime.now(UTC)))
    op.create_index("ix_opportunities_modified_at", "opportunities", ["modified_at"])


def downgrade() -> None:
    op.drop_index("ix_opportunities_modified_at", table_name="opportunities")
    with op.batch_alter_table("opportunities") as batch:
        for column in ("modified_by", "modified_at", "estimated_close_date", "estimated_value"):
            batch.drop_column(column)
        batch.alter_column("interaction_entry_no", existing_type=sa.Integer(), nullable=False)
