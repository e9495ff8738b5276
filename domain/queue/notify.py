"""Ask the scheduler to dispatch now instead of at its next tick.

On PostgreSQL this is a NOTIFY sent when the transaction commits, so a scheduler
on another machine hears it; in-process listeners (the embedded mode, where
scheduler and workers share one process) are called after commit too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

CHANNEL = "jobqueue_wake"

_listeners: set[Callable[[], None]] = set()
_lock = threading.Lock()


def add_local_listener(callback: Callable[[], None]) -> None:
    with _lock:
        _listeners.add(callback)


def remove_local_listener(callback: Callable[[], None]) -> None:
    with _lock:
        _listeners.discard(callback)


def call_local_listeners() -> None:
    """After a commit that made work due: tell a scheduler in this process."""
    with _lock:
        callbacks = list(_listeners)
    for callback in callbacks:
        callback()


def notify_in_transaction(conn: Connection | Session) -> None:
    """PostgreSQL NOTIFY, delivered to listening schedulers when the transaction commits."""
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    if dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {CHANNEL}"))


def request_dispatch(session: Session) -> None:
    """Within the caller's transaction: wake the scheduler once it commits."""
    notify_in_transaction(session)
    if _listeners and not session.info.get("_wake_hooked"):
        session.info["_wake_hooked"] = True

        def _after_commit(s: Session) -> None:
            s.info.pop("_wake_hooked", None)
            call_local_listeners()

        event.listen(session, "after_commit", _after_commit, once=True)
