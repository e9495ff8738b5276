"""notifications: when an entry notifies (on failure after its last attempt or after N
failed attempts in a row, on success), whom (its user, the admins), and users' email
addresses to reach them

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.add_column(
            sa.Column("notify_on_failure", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column("notify_after_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("notify_on_success", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("notify_recipients", sa.String(20), nullable=False, server_default="user")
        )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(250), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
    with op.batch_alter_table("job_queue_entries") as batch:
        for column in (
            "notify_recipients",
            "notify_on_success",
            "notify_after_failures",
            "notify_on_failure",
        ):
            batch.drop_column(column)
