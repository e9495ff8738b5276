"""The bookkeeping of a chunk of records: couplings, per-record sync state, pending
records and error rows, written in one transaction with a few set-based statements
(not one per record)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from domain.sales.integration import (
    Coupling,
    PendingRecord,
    PendingRow,
    RecordSyncState,
    SyncError,
    SyncResult,
)
from domain.sales.models import table
from domain.sales.outcome import Outcome
from runtime.logs import get_logger

log = get_logger("sales.sync")
C, P, S, ERR = table(Coupling), table(PendingRecord), table(RecordSyncState), table(SyncError)
PR = table(PendingRow)


@dataclass(frozen=True)
class Couple:
    """A coupling to record: `local_table`/`local_id` <-> `entity_set`/`row_id`."""

    local_table: str
    local_id: str
    entity_set: str
    row_id: str
    etag: str | None = None
    result: SyncResult = SyncResult.SUCCESS


@dataclass
class Result:
    """What one record's sync came to and what to record of it."""

    local_id: str
    outcome: Outcome
    reason: str = ""
    dataverse_id: str = ""
    couple: list[Couple] = field(default_factory=list)
    uncouple: bool = False
    # (local modification, Dataverse modification) as of this sync; None: leave it
    state: tuple[datetime | None, datetime | None] | None = None
    retry: bool = True  # a failure is pending, retried by later runs (not for rows read)
    reread: bool = False  # a row read that failed: read again by later runs (PendingRow)
    # A record the next push must send although it did not change (its row was deleted
    # in Dataverse and is to be restored): pending with this reason.
    resend: str = ""


class AlreadyCoupled(Exception):
    """Another run reserved a coupling for one of these records at the same time."""


class Books:
    def __init__(
        self,
        db: Engine,
        mapping_name: str,
        local_table: str,
        entity_set: str,
        run_id: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.db, self.mapping_name, self.run_id, self.clock = db, mapping_name, run_id, clock
        self.local_table, self.entity_set = local_table, entity_set

    def reserve(self, row_ids: dict[str, str]) -> None:
        """Records the ids creates will use before they are sent, so a crash between
        the two repeats the same creates instead of making second rows."""
        if not row_ids:
            return
        now = self.clock()
        try:
            with self.db.begin() as conn:
                conn.execute(
                    insert(C),
                    [
                        {
                            "local_table": self.local_table,
                            "local_id": local_id,
                            "dataverse_table": self.entity_set,
                            "dataverse_id": row_id,
                            "last_result": SyncResult.CREATING,
                            "last_synced_at": now,
                        }
                        for local_id, row_id in row_ids.items()
                    ],
                )
        except IntegrityError:
            raise AlreadyCoupled("a record was coupled by another run at the same time") from None

    def uncouple_by_dataverse(self, row_ids: list[str]) -> None:
        with self.db.begin() as conn:
            conn.execute(
                delete(C).where(
                    C.c.dataverse_table == self.entity_set, C.c.dataverse_id.in_(row_ids)
                )
            )

    def record(self, results: list[Result], rows_read: list[str] | None = None) -> None:
        """`rows_read`: the Dataverse rows these results came from; those that failed
        stay to be read again, the others are settled."""
        if not results and not rows_read:
            return
        now = self.clock()
        # Row ids in lower case, as GUIDs compare (jobs.sales.rereads reads them so).
        reread = {r.dataverse_id.lower(): r.reason for r in results if r.reread and r.dataverse_id}
        rows_read = [i.lower() for i in rows_read or []]
        couples = [c for r in results for c in r.couple]
        uncoupled = [r.local_id for r in results if r.uncouple]
        states = [r for r in results if r.state is not None]
        settled = [
            r.local_id for r in results if r.outcome != Outcome.UNCHANGED or r.state is not None
        ]
        pending = [
            r
            for r in results
            if r.resend
            or (r.retry and r.outcome in (Outcome.FAILED, Outcome.FAILED_AGAIN, Outcome.SKIPPED))
        ]
        errors = [
            r
            for r in results
            if r.outcome
            in (Outcome.FAILED, Outcome.FAILED_AGAIN, Outcome.SKIPPED, Outcome.CONFLICT)
        ]
        with self.db.begin() as conn:
            if rows_read or reread:
                self._pending_rows(conn, [i for i in rows_read if i not in reread], reread)
            if uncoupled:
                conn.execute(
                    delete(C).where(
                        C.c.local_table == self.local_table,
                        C.c.dataverse_table == self.entity_set,
                        C.c.local_id.in_(uncoupled),
                    )
                )
            if couples:
                by_pair: dict[tuple[str, str], list[str]] = {}
                for c in couples:
                    by_pair.setdefault((c.local_table, c.entity_set), []).append(c.local_id)
                for (local_table, entity_set), ids in by_pair.items():
                    conn.execute(
                        delete(C).where(
                            C.c.local_table == local_table,
                            C.c.dataverse_table == entity_set,
                            C.c.local_id.in_(ids),
                        )
                    )
                conn.execute(
                    insert(C),
                    [
                        {
                            "local_table": c.local_table,
                            "local_id": c.local_id,
                            "dataverse_table": c.entity_set,
                            "dataverse_id": c.row_id,
                            "dataverse_etag": c.etag,
                            "last_result": c.result,
                            "last_synced_at": now,
                        }
                        for c in couples
                    ],
                )
            if states:
                self._states(conn, states)
            if settled:
                conn.execute(
                    delete(P).where(
                        P.c.mapping_name == self.mapping_name, P.c.local_id.in_(settled)
                    )
                )
            if pending:
                conn.execute(
                    insert(P),
                    [
                        {
                            "mapping_name": self.mapping_name,
                            "local_id": r.local_id,
                            "result": SyncResult.CREATING if r.resend else _result_of(r.outcome),
                            "reason": r.resend or r.reason,
                            "since": now,
                        }
                        for r in pending
                    ],
                )
            if errors:
                conn.execute(
                    insert(ERR),
                    [
                        {
                            "run_id": self.run_id,
                            "mapping_name": self.mapping_name,
                            "local_id": r.local_id,
                            "dataverse_id": r.dataverse_id,
                            "result": _result_of(r.outcome),
                            "message": r.reason,
                            "at": now,
                        }
                        for r in errors
                    ],
                )
        for r in errors:
            if r.outcome != Outcome.FAILED_AGAIN:  # no news: logged when it first failed
                log.warning(
                    f"sales.record_{_result_of(r.outcome).value.lower()}",
                    mapping=self.mapping_name,
                    local_id=r.local_id,
                    dataverse_id=r.dataverse_id,
                    reason=r.reason,
                )

    def _pending_rows(self, conn: Any, settled: list[str], failed: dict[str, str]) -> None:
        """Rows read that came in are settled; those that failed wait to be read again,
        keeping the time they first failed."""
        mine = PR.c.mapping_name == self.mapping_name
        if settled:
            conn.execute(delete(PR).where(mine, PR.c.dataverse_id.in_(settled)))
        if failed:
            waiting = select(PR.c.dataverse_id).where(mine, PR.c.dataverse_id.in_(list(failed)))
            known = set(conn.execute(waiting).scalars())
            if known:
                conn.execute(
                    update(PR)
                    .where(mine, PR.c.dataverse_id == bindparam("b_row"))
                    .values(reason=bindparam("b_reason")),
                    [{"b_row": i, "b_reason": failed[i]} for i in known],
                )
            if fresh := [i for i in failed if i not in known]:
                conn.execute(
                    insert(PR),
                    [
                        {"mapping_name": self.mapping_name, "dataverse_id": row_id,
                         "reason": failed[row_id], "since": self.clock()}
                        for row_id in fresh
                    ],
                )  # fmt: skip

    def _states(self, conn: Any, states: list[Result]) -> None:
        ids = [r.local_id for r in states]
        conn.execute(delete(S).where(S.c.mapping_name == self.mapping_name, S.c.local_id.in_(ids)))
        conn.execute(
            insert(S),
            [
                {
                    "mapping_name": self.mapping_name,
                    "local_id": r.local_id,
                    "last_local_modified": r.state[0] if r.state else None,
                    "last_dataverse_modified": r.state[1] if r.state else None,
                }
                for r in states
            ],
        )


def _result_of(outcome: Outcome) -> SyncResult:
    return {
        Outcome.SKIPPED: SyncResult.SKIPPED,
        Outcome.CONFLICT: SyncResult.CONFLICT,
    }.get(outcome, SyncResult.FAILED)
