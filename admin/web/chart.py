"""Runs per hour over the last hours, as an SVG bar chart drawn on the server (no
script, no external library): successes and failures stacked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.queue.models import JobQueueEntry, JobQueueLogEntry, SchedulerLease
from domain.queue.status import EntryStatus, LogStatus


@dataclass(frozen=True)
class Bucket:
    start: datetime
    succeeded: int
    failed: int


def runs_by_hour(session: Session, now: datetime, hours: int = 12) -> list[Bucket]:
    """One indexed read of the last hours' runs, counted per hour in Python."""
    since = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    counts: dict[tuple[datetime, bool], int] = {}
    for started, status in session.execute(
        select(JobQueueLogEntry.started_at, JobQueueLogEntry.status).where(
            JobQueueLogEntry.started_at >= since
        )
    ):
        hour = started.replace(minute=0, second=0, microsecond=0)
        key = (hour, LogStatus(status) == LogStatus.ERROR)
        counts[key] = counts.get(key, 0) + 1
    return [
        Bucket(
            since + timedelta(hours=n),
            counts.get((since + timedelta(hours=n), False), 0),
            counts.get((since + timedelta(hours=n), True), 0),
        )
        for n in range(hours)
    ]


def svg(buckets: list[Bucket], tz: Any, width: int = 720, height: int = 160) -> str:
    top = max((b.succeeded + b.failed for b in buckets), default=0) or 1
    bar = width / max(len(buckets), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 20}" '
        f'role="img" aria-label="runs per hour, successes and failures">'
    ]
    for n, b in enumerate(buckets):
        x = n * bar + 2
        ok = (height - 10) * b.succeeded / top
        bad = (height - 10) * b.failed / top
        label = escape(b.start.astimezone(tz).strftime("%H:%M"))
        parts.append(
            f"<g><title>{label}: {b.succeeded} succeeded, {b.failed} failed</title>"
            f'<rect class="ok" x="{x:.1f}" y="{height - ok:.1f}" width="{bar - 4:.1f}" '
            f'height="{ok:.1f}"/>'
            f'<rect class="failed" x="{x:.1f}" y="{height - ok - bad:.1f}" '
            f'width="{bar - 4:.1f}" height="{bad:.1f}"/>'
            f'<text x="{x:.1f}" y="{height + 14}">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def processes(session: Session, now: datetime) -> dict[str, Any]:
    """The active scheduler (its lease), the workers running entries now, and the runs
    that started and failed in the last minute."""
    lease = session.execute(select(SchedulerLease)).scalars().first()
    workers = session.execute(
        select(JobQueueEntry.worker_id, func.count())
        .where(JobQueueEntry.status == EntryStatus.IN_PROCESS, JobQueueEntry.worker_id.is_not(None))
        .group_by(JobQueueEntry.worker_id)
    ).all()
    minute = session.execute(
        select(JobQueueLogEntry.status, func.count())
        .where(JobQueueLogEntry.started_at >= now - timedelta(minutes=1))
        .group_by(JobQueueLogEntry.status)
    ).all()
    per_status = {LogStatus(s): int(n) for s, n in minute}
    return {
        "scheduler": lease.holder if lease is not None and lease.expires_at > now else "",
        "workers": [(str(w), int(n)) for w, n in workers],
        "last_minute": sum(per_status.values()),
        "failed_last_minute": per_status.get(LogStatus.ERROR, 0),
    }
