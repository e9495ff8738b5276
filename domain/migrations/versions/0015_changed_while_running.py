"""job_queue_entries.changed_while_running: data an entry's job watches changed during
its run, so the run's "nothing to do" may be stale and the entry must not fall asleep

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23 20:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.add_column(
            sa.Column(
                "changed_while_running", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.drop_column("changed_while_running")
