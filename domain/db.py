"""Engine and sessions for PostgreSQL or the embedded SQLite file."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Set on an engine (`reading(engine)`) whose transactions only read: on SQLite they
# begin DEFERRED, so in WAL mode they never wait for a writer.
READ_ONLY = "jobqueue_read_only"


def make_engine(url: str, *, busy_timeout: float = 30.0, **kwargs: Any) -> Engine:
    """SQLite gets WAL and BEGIN IMMEDIATE (for writers) so threads of one process write
    safely; `busy_timeout` is how long a writer waits for another (the CLI waits less)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout, "check_same_thread": False}, **kwargs
        )
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", False)  # a dropped connection invalidates the pool
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_AUTOCOMMIT_LOCK = threading.Lock()


def autocommit(engine: Engine) -> Engine:
    """PostgreSQL: a twin of `engine` whose pooled connections stay in autocommit.

    Switching a pooled psycopg2 connection to autocommit and back (what
    `execution_options(isolation_level=...)` does on every checkout) costs a round
    trip each way, two more than the statement itself; connections that never switch
    cost none. The twin has the same URL and pool settings, is disposed with `engine`,
    and a lost server that either of them notices renews both pools.
    """
    with _AUTOCOMMIT_LOCK:
        twin = _AUTOCOMMIT.get(engine)
        if twin is None:
            pool: Any = engine.pool
            twin = create_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,  # autocommit: no transaction to roll back
                pool_size=pool.size(),
                max_overflow=getattr(pool, "_max_overflow", 10),
                pool_pre_ping=getattr(pool, "_pre_ping", False),
            )
            _renew_on_disconnect(engine, twin)
            _AUTOCOMMIT[engine] = twin
        return twin


def _renew_on_disconnect(engine: Engine, twin: Engine) -> None:
    def dispose_twin(*_args: Any) -> None:
        twin.dispose()

    def on_error(context: Any) -> None:
        if context.is_disconnect:
            twin.dispose()

    def on_twin_error(context: Any) -> None:
        if context.is_disconnect:
            engine.pool.dispose()

    event.listen(engine, "engine_disposed", dispose_twin)
    event.listen(engine, "handle_error", on_error)
    event.listen(twin, "handle_error", on_twin_error)


def reading(engine: Engine) -> Engine:
    """The engine for work that only reads: on SQLite a deferred transaction (it never
    waits for a writer), on PostgreSQL autocommit (no BEGIN and ROLLBACK round trips
    around a lone SELECT)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READ_ONLY: True})
    return autocommit(engine)


@contextmanager
def single_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for work that is one statement on PostgreSQL: in autocommit it costs
    one round trip instead of three (BEGIN, the statement, COMMIT). On SQLite, where the
    same work takes more statements, a transaction as usual."""
    if engine.dialect.name == "postgresql":
        with autocommit(engine).connect() as conn:
            yield conn
    else:
        with engine.begin() as conn:
            yield conn
