"""The job-queue tables: entries, their run log, categories and the scheduler lease."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime, enum_type
from domain.queue.limits import NUMBER_BOUNDS
from domain.queue.status import EntryStatus, LogStatus


def _status_enum(enum: type[Any], name: str) -> Enum:
    return enum_type(enum, name, length=40)


def entry_checks() -> list[CheckConstraint]:
    """The numeric limits of `limits.NUMBER_BOUNDS` as CHECK constraints (migration 0005)."""
    checks = [CheckConstraint("attempts >= 0", name="ck_jqe_attempts")]
    for column, bound in NUMBER_BOUNDS.items():
        rule = f"{column} BETWEEN {bound.lowest} AND {bound.highest}"
        if bound.off is not None:
            rule = f"{column} = {bound.off} OR {rule}"
        checks.append(CheckConstraint(rule, name=f"ck_jqe_{column}"))
    return checks


class JobQueueCategory(Base):
    """Entries sharing a category never run at the same time."""

    __tablename__ = "job_queue_categories"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    description: Mapped[str] = mapped_column(String(250), default="")


class JobQueueEntry(Base):
    __tablename__ = "job_queue_entries"
    __table_args__ = (
        Index("ix_jqe_status_earliest", "status", "earliest_start"),
        # Partial: entries without a category (most) never touch it when they change status.
        Index(
            "ix_jqe_category_status",
            "category_code",
            "status",
            postgresql_where=text("category_code IS NOT NULL"),
            sqlite_where=text("category_code IS NOT NULL"),
        ),
        # The expiry step of an idle tick reads only Ready entries that can expire.
        Index(
            "ix_jqe_status_expiration",
            "status",
            "expiration",
            postgresql_where=text("expiration IS NOT NULL"),
            sqlite_where=text("expiration IS NOT NULL"),
        ),
        *entry_checks(),
        # Room on each page lets the claim (no indexed column changes) be a HOT update.
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    description: Mapped[str] = mapped_column(String(250), default="")
    job_name: Mapped[str] = mapped_column(String(100))
    parameter_string: Mapped[str] = mapped_column(String(2048), default="")
    status: Mapped[EntryStatus] = mapped_column(
        _status_enum(EntryStatus, "entry_status"), default=EntryStatus.READY
    )
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    minutes_between_runs: Mapped[int] = mapped_column(Integer, default=0)
    run_on_mondays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_tuesdays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_wednesdays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_thursdays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_fridays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_saturdays: Mapped[bool] = mapped_column(Boolean, default=True)
    run_on_sundays: Mapped[bool] = mapped_column(Boolean, default=True)
    # Business Central's Next Run Date Formula (`<1D>`, `<CM+1D>`, `<WD1>`): when set, it
    # decides the next run's date (the weekday flags and minutes between runs are cleared).
    next_run_date_formula: Mapped[str | None] = mapped_column(String(30), nullable=True)
    # Business Central's Reference Starting Time: the minutes between runs count from it,
    # so runs stay on its grid (every 15 min from 08:05) however late one ran.
    reference_starting_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    starting_time: Mapped[time | None] = mapped_column(Time, nullable=True)
    ending_time: Mapped[time | None] = mapped_column(Time, nullable=True)
    earliest_start: Mapped[datetime] = mapped_column(UTCDateTime)
    expiration: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    maximum_attempts: Mapped[int] = mapped_column(Integer, default=3)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    rerun_delay_seconds: Mapped[int] = mapped_column(Integer, default=60)
    job_timeout_seconds: Mapped[int] = mapped_column(Integer, default=12 * 3600)
    inactivity_timeout_minutes: Mapped[int] = mapped_column(Integer, default=0)
    category_code: Mapped[str | None] = mapped_column(
        ForeignKey("job_queue_categories.code"), nullable=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)
    user_id: Mapped[str] = mapped_column(String(50), default="")
    # Notifications (domain/notifications): on failure after the last attempt (0) or
    # after that many failed attempts in a row; on success when asked; to the entry's
    # user, the admins, or both, by email and to the configured webhooks.
    notify_on_failure: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_after_failures: Mapped[int] = mapped_column(Integer, default=0)
    notify_on_success: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_recipients: Mapped[str] = mapped_column(String(20), default="user")
    # Bumped by every admin change, so a finishing run knows whether its snapshot still holds.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    # Data the job watches changed while a run was going on (domain/queue/wakeups): the run
    # may have read it before the change, so it does not end in an inactivity sleep.
    changed_while_running: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Run bookkeeping: run_seq numbers each dispatch; a message names the run it is for.
    run_seq: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    last_run_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_run_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobQueueLogEntry(Base):
    """One row per run: what ran, when, how it ended, and the job's counters."""

    __tablename__ = "job_queue_log_entries"
    __table_args__ = (Index("ix_jqle_entry_started", "entry_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key on purpose: the log outlives deleted entries (as in Business Central),
    # and the per-run constraint check is measurable on the hot path.
    entry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry_code: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(250), default="")
    job_name: Mapped[str] = mapped_column(String(100))
    run_seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(50), default="")
    worker_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[LogStatus] = mapped_column(_status_enum(LogStatus, "log_status"))
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_call_stack: Mapped[str | None] = mapped_column(Text, nullable=True)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SchedulerLease(Base):
    """Which scheduler process is the active one; the others stand by (Oban's peer table)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Typed handles on the tables for Core statements in the hot paths.
ENTRIES: Table = cast(Table, JobQueueEntry.__table__)
LOG_ENTRIES: Table = cast(Table, JobQueueLogEntry.__table__)
CATEGORIES: Table = cast(Table, JobQueueCategory.__table__)
LEASES: Table = cast(Table, SchedulerLease.__table__)
