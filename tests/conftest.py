"""Fixtures: every storage/delivery test runs twice, on the embedded default (SQLite file,
in-process broker) and on the real servers (PostgreSQL and Redis on this machine)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg2
import pytest
import redis
from sqlalchemy import Engine, text

import domain.audit.models
import domain.interactions.models
import domain.mail.models
import domain.queue.models
import domain.sales.integration
import domain.sales.models
import domain.users.models  # noqa: F401
import jobs.builtin  # noqa: F401
from domain.base import Base
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from runtime.logs import configure_logging
from runtime.settings import Settings

PG_ADMIN_DSN = os.environ.get(
    "TEST_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

FAST = {
    "tick_seconds": 0.2,
    "lease_seconds": 1.0,
    "dispatch_timeout_seconds": 2.0,
    "leader_ttl_seconds": 2.0,
    # Most tests watch a one-off reach Finished; test_one_off_entries covers the deletion.
    "keep_one_off_entries": True,
}
# Jobs that share the test process with an HTTPS emulator compete with it for the GIL on
# a busy 2-core box; a 1 s lease can go unrenewed there without anything being wrong.
# Tests that do not concern leases give such jobs this one.
UNHURRIED_LEASE = 5.0


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging("WARNING", process="tests")


@pytest.fixture(scope="session", autouse=True)
def _secret_key_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the processes they start) keep their key out of the user's home."""
    key_file = tmp_path_factory.mktemp("secrets") / "jobqueue.key"
    os.environ.setdefault("JOBQUEUE_SECRET_KEY_FILE", str(key_file))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"jobqueue_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.format(db=name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


TABLES = ", ".join(table.name for table in Base.metadata.sorted_tables)


@pytest.fixture(params=["embedded", "servers"])
def settings(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Settings]:
    """Settings for one test: a fresh SQLite file, or the shared PostgreSQL test database
    emptied and a Redis queue of its own."""
    if request.param == "embedded":
        url = f"sqlite:///{tmp_path / 'jobqueue.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield Settings(database_url=url, **FAST)  # type: ignore[arg-type]
        return
    with fresh_servers(request.getfixturevalue("pg_database")) as fresh:
        yield fresh


@contextmanager
def fresh_servers(url: str) -> Iterator[Settings]:
    """The PostgreSQL test database emptied, and a Redis queue of the caller's own."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    queue = f"jqtest_{uuid.uuid4().hex[:10]}"
    yield Settings(database_url=url, redis_url=REDIS_URL, queue_name=queue, **FAST)  # type: ignore[arg-type]
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"dramatiq:{queue}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Any:
    return make_session_factory(engine)


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


@pytest.fixture
def sandbox(tmp_path: Any) -> Iterator[Any]:
    """The identity and Dataverse emulators (tests.sales_fixtures)."""
    from tests.sales_fixtures import start

    yield from start(tmp_path)


@pytest.fixture
def company(settings: Settings, sessions: Any, sandbox: Any) -> Any:
    """The sandbox company set up for the sales sync: a Dataverse user for its
    salesperson, the connection and default mappings, and its records."""
    from tests.sales_fixtures import configure, seed

    sandbox.dataverse.add_user("Jim Olive", "jim@cronus.com")
    configure(sessions, sandbox, settings.tz)
    seed(sessions, settings.tz)
    return sandbox
