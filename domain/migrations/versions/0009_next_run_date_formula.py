"""next run date formula and reference starting time: Business Central's date formula
deciding a recurring entry's next run date, and the moment its minutes between runs
count from

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.add_column(sa.Column("next_run_date_formula", sa.String(30), nullable=True))
        batch.add_column(sa.Column("reference_starting_time", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.drop_column("reference_starting_time")
        batch.drop_column("next_run_date_formula")
