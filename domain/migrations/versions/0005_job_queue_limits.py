"""job-queue entry limits as CHECK constraints; an index for expiry

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00

Existing values outside the limits are first brought inside them (the nearest
bound), so the constraints can be added to any database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

YEAR = 366 * 24 * 60
# column: (lowest, highest, allowed "off" value or None), as domain/queue/limits.py had them.
LIMITS = {
    "minutes_between_runs": (0, YEAR, None),
    "maximum_attempts": (1, 10, None),
    "rerun_delay_seconds": (0, 3600, None),
    "job_timeout_seconds": (1, 7 * 24 * 3600, None),
    "inactivity_timeout_minutes": (5, YEAR, 0),
    "priority": (-1000, 1000, None),
}


def upgrade() -> None:
    for column, (lowest, highest, off) in LIMITS.items():
        op.execute(f"UPDATE job_queue_entries SET {column} = {highest} WHERE {column} > {highest}")
        floor = off if off is not None else lowest
        op.execute(f"UPDATE job_queue_entries SET {column} = {floor} WHERE {column} < {lowest}")
    op.execute("UPDATE job_queue_entries SET attempts = 0 WHERE attempts < 0")
    with op.batch_alter_table("job_queue_entries") as batch:
        batch.create_check_constraint("ck_jqe_attempts", "attempts >= 0")
        for column, (lowest, highest, off) in LIMITS.items():
            rule = f"{column} BETWEEN {lowest} AND {highest}"
            if off is not None:
                rule = f"{column} = {off} OR {rule}"
            batch.create_check_constraint(f"ck_jqe_{column}", rule)
    op.create_index(
        "ix_jqe_status_expiration",
        "job_queue_entries",
        ["status", "expiration"],
        postgresql_where=sa.text("expiration IS NOT NULL"),
        sqlite_where=sa.text("expiration IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jqe_status_expiration", table_name="job_queue_entries")
    with op.batch_alter_table("job_queue_entries") as batch:
        for column in ["attempts", *LIMITS]:
            batch.drop_constraint(f"ck_jqe_{column}", type_="check")
