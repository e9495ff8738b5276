"""One scheduler tick: wake sleepers, recover lost runs, dispatch due entries.

Dispatch claims entries in the database first (status In Process, run_seq + 1)
and sends the Dramatiq messages after the commit. A message that cannot be sent
puts its entry back to Ready at once; a message lost in the broker (Redis
restarted) is sent again after the dispatch timeout. Duplicates are harmless:
a run starts only once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dramatiq import Broker
from sqlalchemy import Connection, Engine, Row, and_, func, select, update

from domain.models import CATEGORIES, ENTRIES
from domain.runs import RunResult, finish_run, lost_run
from domain.status import EntryStatus
from domain.transitions import plan_of, wake
from runtime.logs import get_logger
from runtime.settings import Settings
from workers.broker import run_message

E = ENTRIES
C = CATEGORIES
log = get_logger("scheduler.dispatcher")


@dataclass
class TickReport:
    dispatched: int = 0
    resent: int = 0
    recovered: int = 0
    woken: int = 0
    expired: int = 0
    send_failures: int = 0
    next_due: datetime | None = None
    dispatched_ids: list[int] = field(default_factory=list)


class Dispatcher:
    def __init__(self, engine: Engine, broker: Broker, settings: Settings) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings

    def tick(self, now: datetime) -> TickReport:
        report = TickReport()
        report.woken = self.wake_sleepers(now)
        report.recovered = self.recover_lost_runs(now)
        report.resent = self.resend_undelivered(now)
        while True:
            claimed = self.dispatch_due(now, report)
            if claimed < self.settings.dispatch_batch:
                break
        report.next_due = self.next_due(now)
        return report

    def next_due(self, now: datetime) -> datetime | None:
        """The next moment an entry becomes due, so the next tick can be exactly then."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.min(E.c.earliest_start)).where(
                    E.c.status.in_((EntryStatus.READY, EntryStatus.ON_HOLD_INACTIVITY)),
                    E.c.earliest_start > now,
                )
            ).scalar_one_or_none()

    def wake_sleepers(self, now: datetime) -> int:
        """Entries whose inactivity timeout has passed become Ready again."""
        with self.engine.begin() as conn:
            sleepers = conn.execute(
                select(E).where(
                    E.c.status == EntryStatus.ON_HOLD_INACTIVITY, E.c.earliest_start <= now
                )
            ).all()
            for entry in sleepers:
                decision = wake(plan_of(entry, self.settings.tz), now)
                conn.execute(
                    update(E)
                    .where(E.c.id == entry.id, E.c.status == EntryStatus.ON_HOLD_INACTIVITY)
                    .values(status=decision.status, earliest_start=decision.earliest_start)
                )
        if sleepers:
            log.info("entries.woken", codes=[s.code for s in sleepers], reason="inactivity timeout")
        return len(sleepers)

    def recover_lost_runs(self, now: datetime) -> int:
        """A started run whose lease ran out lost its worker: log it failed, apply retry rules."""
        with self.engine.connect() as conn:
            lost = conn.execute(
                select(E.c.id, E.c.run_seq).where(
                    E.c.status == EntryStatus.IN_PROCESS,
                    E.c.started_at.is_not(None),
                    E.c.lease_expires_at < now,
                )
            ).all()
        recovered = 0
        for entry_id, run_seq in lost:
            with self.engine.begin() as conn:
                claimed = lost_run(conn, entry_id, run_seq, now)
                if claimed is None:  # finished or renewed meanwhile
                    continue
                worker = claimed.entry.worker_id
                result = RunResult.failure(
                    f"worker {worker} stopped answering; the run was recovered as lost"
                )
                finished = finish_run(conn, claimed, result, now, self.settings.tz)
            recovered += 1
            log.warning(
                "run.recovered",
                entry_id=entry_id,
                entry_code=claimed.entry.code,
                run_id=claimed.run_id,
                worker=worker,
                next_status=finished.decision.status if finished.decision else None,
            )
        return recovered

    def resend_undelivered(self, now: datetime) -> int:
        """Dispatched but never started within the dispatch timeout: send the message again."""
        cutoff = now - timedelta(seconds=self.settings.dispatch_timeout_seconds)
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(E)
                .where(
                    E.c.status == EntryStatus.IN_PROCESS,
                    E.c.started_at.is_(None),
                    E.c.dispatched_at < cutoff,
                )
                .values(dispatched_at=now)
                .returning(E.c.id, E.c.run_seq, E.c.code)
            ).all()
        if rows:
            log.warning("runs.resent", count=len(rows), codes=[r.code for r in rows[:20]])
            self._send(rows, now)
        return len(rows)

    def dispatch_due(self, now: datetime, report: TickReport) -> int:
        batch = self.settings.dispatch_batch
        with self.engine.begin() as conn:
            report.expired += conn.execute(
                update(E)
                .where(E.c.status == EntryStatus.READY, E.c.expiration < now)
                .values(status=EntryStatus.FINISHED)
            ).rowcount
            due = E.c.status == EntryStatus.READY, E.c.earliest_start <= now
            order = (E.c.priority.desc(), E.c.earliest_start, E.c.id)
            free = conn.execute(
                select(E.c.id, E.c.priority, E.c.earliest_start)
                .where(*due, E.c.category_code.is_(None))
                .order_by(*order)
                .limit(batch)
            ).all()
            candidates = list(free) + self._category_heads(conn, due, order)
            candidates.sort(key=lambda r: (-r.priority, r.earliest_start, r.id))
            ids = [r.id for r in candidates[:batch]]
            if not ids:
                return 0
            claimed = conn.execute(
                update(E)
                .where(E.c.id.in_(ids), E.c.status == EntryStatus.READY)
                .values(
                    status=EntryStatus.IN_PROCESS,
                    run_seq=E.c.run_seq + 1,
                    dispatched_at=now,
                    started_at=None,
                    lease_expires_at=None,
                    worker_id=None,
                )
                .returning(E.c.id, E.c.run_seq, E.c.code, E.c.priority, E.c.earliest_start)
            ).all()
        claimed = sorted(claimed, key=lambda r: (-r.priority, r.earliest_start, r.id))
        report.dispatched += len(claimed)
        report.dispatched_ids.extend(r.id for r in claimed)
        report.send_failures += self._send(claimed, now)
        return len(claimed)

    def _category_heads(
        self, conn: Connection, due: tuple[Any, ...], order: tuple[Any, ...]
    ) -> list[Row[Any]]:
        """The first due entry of each category with nothing In Process.

        The categories are locked (FOR UPDATE) before they are checked for busy
        entries, so two schedulers that both believe they lead still cannot start
        two entries of one category.
        """
        rank = func.row_number().over(partition_by=E.c.category_code, order_by=order).label("rank")
        ranked = (
            select(E.c.id, E.c.priority, E.c.earliest_start, E.c.category_code, rank)
            .where(*due, E.c.category_code.is_not(None))
            .subquery()
        )
        heads = conn.execute(select(ranked).where(ranked.c.rank == 1)).all()
        if not heads:
            return []
        codes = sorted({h.category_code for h in heads})
        conn.execute(
            select(C.c.code).where(C.c.code.in_(codes)).order_by(C.c.code).with_for_update()
        ).all()
        busy = set(
            conn.execute(
                select(E.c.category_code)
                .where(and_(E.c.category_code.in_(codes), E.c.status == EntryStatus.IN_PROCESS))
                .distinct()
            ).scalars()
        )
        return [h for h in heads if h.category_code not in busy]

    def _send(self, runs: Sequence[Row[Any]], now: datetime) -> int:
        """Send one message per run; a run whose message fails goes back to Ready."""
        failed: list[Row[Any]] = []
        for position, run in enumerate(runs):
            try:
                self.broker.enqueue(run_message(self.settings, run.id, run.run_seq))
            except Exception as exc:  # broker down: the rest would fail the same way
                failed = list(runs[position:])
                log.error("dispatch.send_failed", unsent=len(failed), error=str(exc))
                break
        if failed:
            with self.engine.begin() as conn:
                for run in failed:
                    conn.execute(
                        update(E)
                        .where(
                            E.c.id == run.id,
                            E.c.run_seq == run.run_seq,
                            E.c.status == EntryStatus.IN_PROCESS,
                            E.c.started_at.is_(None),
                        )
                        .values(status=EntryStatus.READY, dispatched_at=None)
                    )
        return len(failed)
