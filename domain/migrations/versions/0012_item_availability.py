"""item availability: an item's inventory, and users' web service access keys (hashed)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "items",
        sa.Column(
            "inventory", sa.Numeric(precision=18, scale=4), nullable=False, server_default="0"
        ),
    )
    op.add_column("users", sa.Column("web_service_key_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("web_service_key_hash")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("inventory")
