"""sales change tracking: the delta link each mapping that reads from Dataverse keeps

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 16:00:00

NULL: never read with change tracking (the next run reads everything and gets a link);
an empty string: the table does not track changes, and the `modifiedon` watermark is
used instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_table_mappings") as batch:
        batch.add_column(sa.Column("dataverse_delta_link", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_table_mappings") as batch:
        batch.drop_column("dataverse_delta_link")
