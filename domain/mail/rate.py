"""Per-account messages-per-minute, shared through the database by every worker on every
machine: a slot is taken in a short transaction of its own before a message is handed
to the provider, so no minute ever holds more sends than the account's limit."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, update
from sqlalchemy.exc import IntegrityError

from domain.mail.models import RATE_WINDOWS as W

KEEP_WINDOWS = timedelta(hours=1)


def window_start(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def next_window(moment: datetime) -> datetime:
    return window_start(moment) + timedelta(minutes=1)


def _take(conn: Connection, account_id: int, start: datetime, limit: int) -> bool:
    return bool(
        conn.execute(
            update(W)
            .where(W.c.account_id == account_id, W.c.window_start == start, W.c.sent < limit)
            .values(sent=W.c.sent + 1)
        ).rowcount
    )


def take_slot(conn: Connection, account_id: int, limit: int, now: datetime) -> bool:
    """Within the caller's transaction: take one send of this minute for the account;
    False when the minute is full. A limit of 0 means no limit."""
    if limit <= 0:
        return True
    start = window_start(now)
    if _take(conn, account_id, start, limit):
        return True
    try:
        with conn.begin_nested():
            conn.execute(insert(W).values(account_id=account_id, window_start=start, sent=1))
    except IntegrityError:  # the minute exists (full, or another worker just opened it)
        return _take(conn, account_id, start, limit)
    conn.execute(
        delete(W).where(W.c.account_id == account_id, W.c.window_start < start - KEEP_WINDOWS)
    )
    return True


def try_take_slot(engine: Engine, account_id: int, limit: int, now: datetime) -> bool:
    """take_slot in a transaction of its own."""
    with engine.begin() as conn:
        return take_slot(conn, account_id, limit, now)
