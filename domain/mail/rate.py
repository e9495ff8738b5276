"""Per-account sending limits over a rolling window, shared through the database by every
worker on every machine.

Receivers and throttling services count a rolling window, not clock minutes: an account
limited to 30 a minute must never have sent 31 in any 60 seconds. Before a message is
handed to the provider, one short transaction holds the account's row, counts the
account's sends in the window and records this one. A send is recorded when its
hand-over starts and moved to when it ended (`handed_over`), so a slow hand-over is
counted from when the server had it; the window is one second longer than a minute
to absorb the time between the end of a hand-over and the server's receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from domain.mail.models import ACCOUNTS as A
from domain.mail.models import RATE_SENDS as S

WINDOW = timedelta(seconds=61)
DAY = timedelta(days=1)  # the window of the recipients-per-day limit
KEEP = DAY


@dataclass(frozen=True)
class Slot:
    """A send the limit allows (`id` of its record), or when the next one frees."""

    id: int | None = None
    free_at: datetime | None = None

    @property
    def taken(self) -> bool:
        return self.free_at is None


def take_slot(
    conn: Connection,
    account_id: int,
    limit: int,
    now: datetime,
    *,
    recipients: int = 1,
    day_limit: int = 0,
) -> Slot:
    """Within the caller's transaction: record one send of the account now, unless `limit`
    sends fall in the window already, or `recipients` more would pass `day_limit` in the
    last 24 hours; then say when enough of the oldest have left. Limits of 0 mean no
    limit (nothing is recorded when neither applies)."""
    if limit <= 0 and day_limit <= 0:
        return Slot()
    # Serializes the account's takers: on PostgreSQL the row lock, on SQLite the writer
    # lock every transaction of ours takes at BEGIN.
    conn.execute(select(A.c.id).where(A.c.id == account_id).with_for_update())
    if limit > 0:
        recent = (
            conn.execute(
                select(S.c.sent_at)
                .where(S.c.account_id == account_id, S.c.sent_at > now - WINDOW)
                .order_by(S.c.sent_at)
            )
            .scalars()
            .all()
        )
        if len(recent) >= limit:
            return Slot(free_at=recent[len(recent) - limit] + WINDOW)
    if day_limit > 0:
        if recipients > day_limit:
            raise ValueError(f"{recipients} recipients is more than the day's {day_limit}")
        in_day = (S.c.account_id == account_id, S.c.sent_at > now - DAY)
        total = conn.execute(select(func.coalesce(func.sum(S.c.recipients), 0)).where(*in_day))
        over = int(total.scalar_one()) + recipients - day_limit
        if over > 0:  # wait until enough of the oldest leave the 24 hours
            for row in conn.execute(
                select(S.c.sent_at, S.c.recipients).where(*in_day).order_by(S.c.sent_at)
            ):
                over -= row.recipients
                if over <= 0:
                    return Slot(free_at=row.sent_at + DAY)
    slot_id = conn.execute(
        insert(S)
        .values(account_id=account_id, sent_at=now, recipients=recipients)
        .returning(S.c.id)
    ).scalar_one()
    conn.execute(delete(S).where(S.c.account_id == account_id, S.c.sent_at < now - KEEP))
    return Slot(id=slot_id)


def handed_over(conn: Connection, slot: Slot, at: datetime) -> None:
    """The hand-over of this send ended at `at`: count it from then."""
    if slot.id is not None:
        conn.execute(update(S).where(S.c.id == slot.id, S.c.sent_at < at).values(sent_at=at))


def try_take_slot(engine: Engine, account_id: int, limit: int, now: datetime, **day: int) -> Slot:
    """take_slot in a transaction of its own (`day`: recipients, day_limit)."""
    with engine.begin() as conn:
        return take_slot(conn, account_id, limit, now, **day)


def busiest_window(moments: list[datetime], window: timedelta = timedelta(seconds=60)) -> int:
    """The most of `moments` that fall in any `window` (a rolling count, for reports)."""
    ordered, most, start = sorted(moments), 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most
