"""The scheduler's steps on the entries table: wake, recover, expire, claim, hand back.

The scheduler keeps the loop, the leader lease and the broker; every statement
that changes an entry on its behalf is here, and each step isolates its entries:
one entry whose rules cannot be applied (a corrupt row, a schedule that
overflows) is put in Error with the reason and logged, and the step goes on with
the others.

Claiming marks entries In Process with a fresh run_seq before their messages are
sent (after the commit); a message that cannot be sent returns its entry to
Ready at once; a message lost in the broker is sent again after the dispatch
timeout. Duplicates are harmless: a run starts only once (see `runs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, bindparam, func, select
from sqlalchemy import update as update_

from domain.db import reading
from domain.queue.models import CATEGORIES, ENTRIES
from domain.queue.runs import (
    RunResult,
    dispatched_not_started,
    fail_entry,
    finish_run,
    lost_run,
    started_run,
)
from domain.queue.status import EntryStatus
from domain.queue.transitions import plan_of, wake

entries = ENTRIES
categories = CATEGORIES


@dataclass(frozen=True)
class Woken:
    code: str
    status: EntryStatus


@dataclass(frozen=True)
class Failed:
    """An entry a step could not handle: it is in Error now, with this reason."""

    entry_id: int
    code: str
    reason: str


@dataclass(frozen=True)
class Recovered:
    entry_id: int
    code: str
    run_id: str
    worker: str | None
    next_status: EntryStatus | None
    entry: Any = None  # the entry as the lost run held it


@dataclass(frozen=True)
class Dispatched:
    """A run claimed for dispatch: its message names (id, run_seq)."""

    id: int
    run_seq: int
    code: str
    priority: int
    earliest_start: datetime
    # For the "enqueued" trace (Business Central's telemetry dimensions).
    job_name: str
    recurring: bool
    attempts: int
    maximum_attempts: int


def _isolated(engine: Engine, entry: Any, step: str, exc: Exception, now: datetime) -> Failed:
    """Put the entry in Error with the true reason, in a transaction of its own."""
    reason = f"{step} failed for this entry: {type(exc).__name__}: {exc}"
    with engine.begin() as conn:
        fail_entry(conn, entry.id, reason, now)
    return Failed(entry.id, entry.code, reason)


def wake_sleepers(engine: Engine, now: datetime, tz: tzinfo) -> tuple[list[Woken], list[Failed]]:
    """Entries whose inactivity timeout has passed become Ready again (or Finished)."""
    with engine.connect() as conn:
        sleepers = conn.execute(
            select(entries).where(
                entries.c.status == EntryStatus.ON_HOLD_INACTIVITY,
                entries.c.earliest_start <= now,
            )
        ).all()
    woken: list[Woken] = []
    failed: list[Failed] = []
    for entry in sleepers:
        try:
            with engine.begin() as conn:
                status = wake_entry(conn, entry, now, tz, EntryStatus.ON_HOLD_INACTIVITY)
        except Exception as exc:
            failed.append(_isolated(engine, entry, "waking", exc, now))
            continue
        if status is not None:
            woken.append(Woken(entry.code, status))
    return woken, failed


def wake_entry(
    conn: Connection, entry: Any, now: datetime, tz: tzinfo, from_status: EntryStatus
) -> EntryStatus | None:
    """Wake one entry by the rules (`transitions.wake`), if it is still `from_status`.

    The one way an entry is woken: its inactivity timeout passed, its data changed.
    """
    decision = wake(plan_of(entry, tz), now)
    moved = conn.execute(
        update_(entries)
        .where(entries.c.id == entry.id, entries.c.status == from_status)
        .values(status=decision.status, earliest_start=decision.earliest_start, attempts=0)
    ).rowcount
    return decision.status if moved else None


def recover_lost_runs(
    engine: Engine, now: datetime, tz: tzinfo
) -> tuple[list[Recovered], list[Failed]]:
    """A started run whose lease ran out lost its worker: log it failed, apply retry rules."""
    with engine.connect() as conn:
        lost = conn.execute(
            select(entries.c.id, entries.c.run_seq, entries.c.code).where(
                *started_run(), entries.c.lease_expires_at < now
            )
        ).all()
    recovered: list[Recovered] = []
    failed: list[Failed] = []
    for entry in lost:
        try:
            with engine.begin() as conn:
                claimed = lost_run(conn, entry.id, entry.run_seq, now)
                if claimed is None:  # finished or renewed meanwhile
                    continue
                held = claimed.entry
                result = RunResult.failure(
                    f"the run's lease expired at {held.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC "
                    f"without its worker ({held.worker_id}) renewing it or recording the end "
                    "of the run; recovered as lost"
                )
                finished = finish_run(conn, claimed, result, now, tz)
        except Exception as exc:
            failed.append(_isolated(engine, entry, "recovering the lost run", exc, now))
            continue
        recovered.append(
            Recovered(
                entry.id,
                held.code,
                claimed.run_id,
                held.worker_id,
                finished.decision.status if finished.decision else None,
                held,
            )
        )
    return recovered, failed


def claim_undelivered(engine: Engine, now: datetime, timeout_seconds: float) -> list[Dispatched]:
    """Dispatched but never started within the dispatch timeout: to be sent again."""
    cutoff = now - timedelta(seconds=timeout_seconds)
    with engine.begin() as conn:
        rows = conn.execute(
            update_(entries)
            .where(*dispatched_not_started(), entries.c.dispatched_at < cutoff)
            .values(dispatched_at=now)
            .returning(*_DISPATCHED)
        ).all()
    return [Dispatched(*row) for row in rows]


def expire(conn: Connection, now: datetime) -> int:
    """Ready entries past their expiration are Finished (they will not run again)."""
    return int(
        conn.execute(
            update_(entries)
            .where(
                entries.c.status == EntryStatus.READY,
                entries.c.expiration.is_not(None),
                entries.c.expiration < now,
            )
            .values(status=EntryStatus.FINISHED)
        ).rowcount
    )


_DISPATCHED = (
    entries.c.id,
    entries.c.run_seq,
    entries.c.code,
    entries.c.priority,
    entries.c.earliest_start,
    entries.c.job_name,
    entries.c.recurring,
    entries.c.attempts,
    entries.c.maximum_attempts,
)
_ORDER = (entries.c.priority.desc(), entries.c.earliest_start, entries.c.id)


def claim_due(engine: Engine, now: datetime, batch: int) -> tuple[int, list[Dispatched]]:
    """Expire what has expired, then claim up to `batch` due entries, best first.

    Returns (expired, claimed). Entries without a category are claimed by
    priority, earliest start and id; of each category only its first due entry,
    and only when nothing of the category is In Process.
    """
    with engine.begin() as conn:
        expired = expire(conn, now)
        due = entries.c.status == EntryStatus.READY, entries.c.earliest_start <= now
        free = conn.execute(
            select(entries.c.id, entries.c.priority, entries.c.earliest_start)
            .where(*due, entries.c.category_code.is_(None))
            .order_by(*_ORDER)
            .limit(batch)
        ).all()
        candidates = list(free) + _category_heads(conn, due)
        candidates.sort(key=lambda r: (-r.priority, r.earliest_start, r.id))
        ids = [r.id for r in candidates[:batch]]
        if not ids:
            return expired, []
        # Rows another transaction holds (a data change waking its watchers, an admin's
        # edit) are left for the next tick rather than waited for: one held entry never
        # stalls the dispatch of the others (PostgreSQL; SQLite writers are serialised).
        free_rows = (
            select(entries.c.id)
            .where(entries.c.id.in_(ids), entries.c.status == EntryStatus.READY)
            .with_for_update(skip_locked=True)
        )
        claimed = conn.execute(
            update_(entries)
            .where(
                entries.c.id.in_(free_rows.scalar_subquery()),
                entries.c.status == EntryStatus.READY,
            )
            .values(
                status=EntryStatus.IN_PROCESS,
                run_seq=entries.c.run_seq + 1,
                dispatched_at=now,
                started_at=None,
                lease_expires_at=None,
                worker_id=None,
            )
            .returning(*_DISPATCHED)
        ).all()
    runs = sorted((Dispatched(*row) for row in claimed), key=_best_first)
    return expired, runs


def _best_first(run: Dispatched) -> tuple[int, datetime, int]:
    return (-run.priority, run.earliest_start, run.id)


def _category_heads(conn: Connection, due: tuple[Any, ...]) -> list[Row[Any]]:
    """The first due entry of each category with nothing In Process.

    The categories are locked (FOR UPDATE) before they are checked for busy
    entries, so two schedulers that both believe they lead still cannot start
    two entries of one category.
    """
    rank = func.row_number().over(partition_by=entries.c.category_code, order_by=_ORDER)
    ranked = (
        select(
            entries.c.id,
            entries.c.priority,
            entries.c.earliest_start,
            entries.c.category_code,
            rank.label("rank"),
        )
        .where(*due, entries.c.category_code.is_not(None))
        .subquery()
    )
    heads = conn.execute(select(ranked).where(ranked.c.rank == 1)).all()
    if not heads:
        return []
    codes = sorted({h.category_code for h in heads})
    conn.execute(
        select(categories.c.code)
        .where(categories.c.code.in_(codes))
        .order_by(categories.c.code)
        .with_for_update()
    ).all()
    busy = set(
        conn.execute(
            select(entries.c.category_code)
            .where(
                and_(
                    entries.c.category_code.in_(codes),
                    entries.c.status == EntryStatus.IN_PROCESS,
                )
            )
            .distinct()
        ).scalars()
    )
    return [h for h in heads if h.category_code not in busy]


def return_unsent(engine: Engine, runs: Sequence[Dispatched]) -> None:
    """Runs whose message could not be sent go back to Ready at once (attempt not spent)."""
    if not runs:
        return
    with engine.begin() as conn:
        for run in runs:
            conn.execute(
                update_(entries)
                .where(
                    entries.c.id == run.id,
                    entries.c.run_seq == run.run_seq,
                    *dispatched_not_started(),
                )
                .values(status=EntryStatus.READY, dispatched_at=None)
            )


@dataclass(frozen=True)
class Probe:
    """What a tick has to do, read in one statement: an idle tick does nothing else."""

    sleepers: bool
    lost: bool
    undelivered: bool
    expired: bool
    due: bool
    next_due: datetime | None

    @property
    def idle(self) -> bool:
        return not (self.sleepers or self.lost or self.undelivered or self.expired or self.due)


def _exists(*where: Any) -> Any:
    return select(entries.c.id).where(*where).limit(1).exists()


def _earliest(status: EntryStatus) -> Any:
    return (
        select(func.min(entries.c.earliest_start))
        .where(entries.c.status == status, entries.c.earliest_start > _NOW)
        .scalar_subquery()
    )


_NOW = bindparam("b_now", type_=entries.c.earliest_start.type)
_CUTOFF = bindparam("b_cutoff", type_=entries.c.dispatched_at.type)


@cache
def _probe_statement() -> Any:
    """Built once: constructing it costs more than running it."""
    asleep, ready = EntryStatus.ON_HOLD_INACTIVITY, EntryStatus.READY
    return select(
        _exists(entries.c.status == asleep, entries.c.earliest_start <= _NOW).label("sleepers"),
        _exists(*started_run(), entries.c.lease_expires_at < _NOW).label("lost"),
        _exists(*dispatched_not_started(), entries.c.dispatched_at < _CUTOFF).label("undelivered"),
        _exists(
            entries.c.status == ready,
            entries.c.expiration.is_not(None),
            entries.c.expiration < _NOW,
        ).label("expired"),
        _exists(entries.c.status == ready, entries.c.earliest_start <= _NOW).label("due"),
        _earliest(ready).label("next_ready"),
        _earliest(asleep).label("next_asleep"),
    )


def probe(engine: Engine, now: datetime, dispatch_timeout_seconds: float) -> Probe:
    """One indexed look at each step's condition and at the next due moment, outside a
    write transaction: one round trip on PostgreSQL, no wait for a writer on SQLite."""
    cutoff = now - timedelta(seconds=dispatch_timeout_seconds)
    with reading(engine).connect() as conn:
        row = conn.execute(_probe_statement(), {"b_now": now, "b_cutoff": cutoff}).one()
    return Probe(
        bool(row.sleepers),
        bool(row.lost),
        bool(row.undelivered),
        bool(row.expired),
        bool(row.due),
        _earliest_of(row.next_ready, row.next_asleep),
    )


@cache
def _next_due_statement() -> Any:
    asleep, ready = EntryStatus.ON_HOLD_INACTIVITY, EntryStatus.READY
    return select(_earliest(ready).label("next_ready"), _earliest(asleep).label("next_asleep"))


def next_due(engine: Engine, now: datetime) -> datetime | None:
    """The next moment an entry becomes due, so the next tick can be exactly then: the
    probe's two indexed minimums (one per status), without the rest of the probe."""
    with reading(engine).connect() as conn:
        row = conn.execute(_next_due_statement(), {"b_now": now}).one()
    return _earliest_of(row.next_ready, row.next_asleep)


def _earliest_of(*moments: datetime | None) -> datetime | None:
    upcoming = [m for m in moments if m is not None]
    return min(upcoming) if upcoming else None
