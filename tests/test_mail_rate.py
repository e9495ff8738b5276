"""The per-minute limit holds across concurrent workers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from domain.mail.models import RATE_WINDOWS
from domain.mail.rate import next_window, try_take_slot, window_start

MINUTE = datetime(2026, 11, 23, 9, 15, 12, tzinfo=UTC)


def test_two_workers_never_exceed_the_limit_in_one_minute(engine: Engine) -> None:
    taken: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        for i in range(50):
            ok = try_take_slot(engine, 1, 30, MINUTE + timedelta(milliseconds=i))
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 30
    with engine.connect() as conn:
        assert conn.execute(select(RATE_WINDOWS.c.sent)).scalar_one() == 30


def test_the_next_minute_has_a_fresh_allowance_and_accounts_are_separate(engine: Engine) -> None:
    for _ in range(3):
        assert try_take_slot(engine, 7, 3, MINUTE)
    assert not try_take_slot(engine, 7, 3, MINUTE)
    assert try_take_slot(engine, 8, 3, MINUTE)
    assert try_take_slot(engine, 7, 3, next_window(MINUTE))


def test_no_limit_takes_no_slot(engine: Engine) -> None:
    assert all(try_take_slot(engine, 9, 0, MINUTE) for _ in range(100))
    with engine.connect() as conn:
        assert conn.execute(select(RATE_WINDOWS)).all() == []


def test_windows_are_whole_minutes() -> None:
    assert window_start(MINUTE) == datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
    assert next_window(MINUTE) == datetime(2026, 11, 23, 9, 16, tzinfo=UTC)
