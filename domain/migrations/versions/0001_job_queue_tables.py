"""job queue tables

Revision ID: 0001
Revises:
Create Date: 2026-11-22 21:37:30.217863
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "job_queue_categories",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=250), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=120), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "job_queue_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=250), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("parameter_string", sa.String(length=2048), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "Ready",
                "In Process",
                "Error",
                "On Hold",
                "On Hold with Inactivity Timeout",
                "Finished",
                name="entry_status",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("recurring", sa.Boolean(), nullable=False),
        sa.Column("minutes_between_runs", sa.Integer(), nullable=False),
        sa.Column("run_on_mondays", sa.Boolean(), nullable=False),
        sa.Column("run_on_tuesdays", sa.Boolean(), nullable=False),
        sa.Column("run_on_wednesdays", sa.Boolean(), nullable=False),
        sa.Column("run_on_thursdays", sa.Boolean(), nullable=False),
        sa.Column("run_on_fridays", sa.Boolean(), nullable=False),
        sa.Column("run_on_saturdays", sa.Boolean(), nullable=False),
        sa.Column("run_on_sundays", sa.Boolean(), nullable=False),
        sa.Column("starting_time", sa.Time(), nullable=True),
        sa.Column("ending_time", sa.Time(), nullable=True),
        sa.Column("earliest_start", UTCDateTime(), nullable=False),
        sa.Column("expiration", UTCDateTime(), nullable=True),
        sa.Column("maximum_attempts", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rerun_delay_seconds", sa.Integer(), nullable=False),
        sa.Column("job_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("inactivity_timeout_minutes", sa.Integer(), nullable=False),
        sa.Column("category_code", sa.String(length=20), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=50), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("run_seq", sa.Integer(), nullable=False),
        sa.Column("dispatched_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("worker_id", sa.String(length=120), nullable=True),
        sa.Column("last_run_status", sa.String(length=20), nullable=True),
        sa.Column("last_run_ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["job_queue_categories.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        postgresql_with={"fillfactor": 70},
    )
    with op.batch_alter_table("job_queue_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jqe_category_status",
            ["category_code", "status"],
            unique=False,
            postgresql_where=sa.text("category_code IS NOT NULL"),
            sqlite_where=sa.text("category_code IS NOT NULL"),
        )
        batch_op.create_index("ix_jqe_status_earliest", ["status", "earliest_start"], unique=False)

    op.create_table(
        "job_queue_log_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("entry_code", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=250), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("run_seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=50), nullable=False),
        sa.Column("worker_id", sa.String(length=120), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "In Process", "Success", "Error", name="log_status", native_enum=False, length=40
            ),
            nullable=False,
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_call_stack", sa.Text(), nullable=True),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_queue_log_entries", schema=None) as batch_op:
        batch_op.create_index("ix_jqle_entry_started", ["entry_id", "started_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("job_queue_log_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_jqle_entry_started")

    op.drop_table("job_queue_log_entries")
    with op.batch_alter_table("job_queue_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_jqe_status_earliest")
        batch_op.drop_index("ix_jqe_category_status")

    op.drop_table("job_queue_entries")
    op.drop_table("scheduler_leases")
    op.drop_table("job_queue_categories")
