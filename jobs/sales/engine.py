"""The synchronization engine: runs one integration table mapping in its direction.

Reading from Dataverse (`jobs.sales.pull`) comes first for mappings that read, then
the local records to send (`jobs.sales.candidates`) go a chunk at a time through
`jobs.sales.push`, and each chunk's bookkeeping (`jobs.sales.books`) is written in a
few statements. The payload rules are pure (`domain.sales.payload`); what a mapping
does beyond them lives in `jobs.sales.behaviours`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.sales.integration import Direction, IntegrationTableMapping, SyncRun
from domain.sales.models import table
from domain.sales.outcome import Counters
from jobs.dataverse.client import DataverseClient
from jobs.sales import candidates
from jobs.sales.behaviours import behaviour_for
from jobs.sales.books import Books
from jobs.sales.context import SyncContext
from jobs.sales.lookups import Lookups
from jobs.sales.mapping import Mapping, load_mapping, reloaded
from jobs.sales.pull import Puller
from jobs.sales.push import Pusher
from jobs.wakeup import data_changed
from runtime.logs import get_logger

__all__ = ["Counters", "SyncEngine", "load_mapping"]
log = get_logger("sales.sync")
M, R = table(IntegrationTableMapping), table(SyncRun)


class SyncEngine:
    def __init__(
        self,
        db: Engine,
        client: DataverseClient,
        integration_user_id: str,
        *,
        tz: tzinfo,
        clock: Callable[[], datetime] = utcnow,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db, self.client, self.integration_user_id = db, client, integration_user_id
        self.tz, self.clock, self.cancelled = tz, clock, cancelled

    def run(self, name: str, job_run_id: str = "") -> Counters:
        with self.db.begin() as conn:
            mapping = load_mapping(conn, name)
            run_id = conn.execute(
                insert(R)
                .values(mapping_name=name, job_run_id=job_run_id, started_at=self.clock())
                .returning(R.c.id)
            ).scalar_one()
        ctx = SyncContext(
            self.db,
            self.client,
            self.integration_user_id,
            self.clock,
            Lookups(self.db, base_currency=self.client.base_currency),
        )
        books = Books(self.db, name, mapping.local_table, mapping.entity_set, run_id, self.clock)
        counters = Counters()
        direction = mapping.row.direction
        if direction in (Direction.FROM_DATAVERSE, Direction.BIDIRECTIONAL):
            behaviour = behaviour_for(name)
            pulled = behaviour.intake(ctx, mapping, books)
            if pulled is None:
                pulled = Puller(ctx, mapping, behaviour, books, self.cancelled).pull()
            if pulled.inserted:
                self._wake(f"coupled:{mapping.local_table}")
            counters.add(pulled)
        whole = behaviour_for(name).whole_run
        if direction in (Direction.TO_DATAVERSE, Direction.BIDIRECTIONAL) and not whole:
            pushed = self._push(ctx, mapping, books)
            counters.add(pushed)
            if direction == Direction.BIDIRECTIONAL and (pushed.inserted or pushed.modified):
                # The run's own writes come back through change tracking: read them now,
                # so the next run reads only what others changed.
                mapping = reloaded(self.db, mapping)  # from where the first read left off
                behaviour = behaviour_for(name)
                echo = Puller(ctx, mapping, behaviour, books, self.cancelled, read_waiting=False)
                counters.add(echo.pull())
        with self.db.begin() as conn:
            recorded = counters.as_dict()  # the run's row counts every failure as failed
            recorded["failed"] += recorded.pop("failed_again")
            conn.execute(
                update(R).where(R.c.id == run_id).values(finished_at=self.clock(), **recorded)
            )
        log.info("sales.sync_run", mapping=name, run_id=run_id, **counters.as_dict())
        return counters

    def _push(self, ctx: SyncContext, mapping: Mapping, books: Books) -> Counters:
        counters = Counters()
        behaviour = behaviour_for(mapping.name)
        today = candidates.today_in(self.clock(), self.tz)
        with self.db.connect() as conn:
            selection = candidates.select_rows(
                conn, mapping, behaviour.extra_candidates(mapping, today)
            )
            chunks = list(candidates.in_chunks(conn, mapping, selection))
        pusher = Pusher(
            ctx, mapping, behaviour, books, mapping.fields_toward(Direction.TO_DATAVERSE), today
        )
        watermark = selection.watermark
        for chunk in chunks:
            if self.cancelled():
                watermark = None  # not all were sent; the next run starts where this one did
                break
            results = pusher.push(chunk)
            books.record(results)
            for r in results:
                counters.count(r.outcome)
        if watermark is not None and watermark != mapping.row.local_watermark:
            with self.db.begin() as conn:
                conn.execute(
                    update(M).where(M.c.name == mapping.name).values(local_watermark=watermark)
                )
        if counters.inserted:
            self._wake(f"coupled:{mapping.local_table}")
        return counters

    def _wake(self, kind: str) -> None:
        """Entries that skipped records waiting for these couplings run again now."""
        with Session(self.db) as session, session.begin():
            data_changed(session, kind, self.tz)
