"""Console benchmark: the Job Queue Entries list with 10,000 entries on PostgreSQL,
filtered, sorted and paged (p50/p95 of the time to answer, in-process), and how long
an entry's change takes to reach a browser's live view (Server-Sent Events over
loopback). Targets: p95 under 100 ms; a change on screen within 1 s.

    python -m bench.console [--entries 10000] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import threading
import time
from datetime import timedelta

import httpx
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import insert

from admin.web.app import create_web_app
from bench.email import _database, _drop
from domain.clock import utcnow
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.queue import entries as ops
from domain.queue.models import JobQueueCategory, JobQueueEntry
from domain.queue.status import EntryStatus
from domain.queue.transitions import WEEKDAY_COLUMNS
from domain.users.accounts import add_user
from domain.users.models import Role
from runtime.logs import configure_logging
from runtime.settings import Settings

PASSWORD = "bench password 1"


def _seed(engine: object, count: int) -> None:
    now = utcnow()
    statuses = list(EntryStatus)
    rng = random.Random(3)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            insert(JobQueueCategory), [{"code": f"CAT{n}", "description": ""} for n in range(10)]
        )
        conn.execute(
            insert(JobQueueEntry),
            [
                {
                    "code": f"E{n:06d}",
                    "description": f"entry number {n}",
                    "job_name": "noop",
                    "parameter_string": "",
                    "status": statuses[rng.randrange(len(statuses))],
                    "recurring": True,
                    "minutes_between_runs": 30,
                    "earliest_start": now + timedelta(minutes=rng.randrange(10_000)),
                    "maximum_attempts": 3,
                    "attempts": 0,
                    "rerun_delay_seconds": 60,
                    "job_timeout_seconds": 3600,
                    "inactivity_timeout_minutes": 0,
                    "category_code": f"CAT{n % 10}" if n % 3 else None,
                    "priority": 0,
                    "user_id": "",
                    "revision": 0,
                    "run_seq": 0,
                    **{c: True for c in WEEKDAY_COLUMNS},
                }
                for n in range(count)
            ],
        )


def _list_times(client: TestClient, count: int, requests: int) -> list[float]:
    rng = random.Random(5)
    statuses = ["", "Ready", "On Hold", "Error", "In Process"]
    times = []
    for _ in range(requests):
        params = {
            "status": rng.choice(statuses),
            "category": rng.choice(["", "", "CAT3"]),
            "q": rng.choice(["", "", "number 12", "E0099"]),
            "sort": rng.choice(["code", "-next_run", "status"]),
            "page": str(rng.randrange(1, 20)),
        }
        started = time.perf_counter()
        answer = client.get("/entries", params=params)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:200]
    return times


def _live_latency(app: object, sessions: object, rounds: int) -> list[float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    latencies = []
    with httpx.Client(base_url=base, timeout=10) as http:
        http.post("/login", data={"name": "ada", "password": PASSWORD})
        with http.stream("GET", "/events", params={"codes": "E000001"}) as stream:
            lines = stream.iter_lines()
            for line in lines:  # the first snapshot
                if line.startswith("data:"):
                    break
            for n in range(rounds):
                changed_at = time.perf_counter()
                with sessions.begin() as session:  # type: ignore[attr-defined]
                    if n % 2:
                        ops.set_ready(session, "E000001", utcnow(), Settings().tz)
                    else:
                        ops.set_on_hold(session, "E000001")
                for line in lines:
                    if line.startswith("data:"):
                        latencies.append((time.perf_counter() - changed_at) * 1000)
                        break
    server.should_exit = True
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    configure_logging("WARNING")
    name, url = _database()
    try:
        engine = make_engine(url)
        upgrade(engine)
        _seed(engine, args.entries)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            add_user(session, "ada", Role.ADMIN, PASSWORD, utcnow())
        app = create_web_app(Settings(database_url=url), engine)
        client = TestClient(app)
        client.post("/login", data={"name": "ada", "password": PASSWORD})
        times = sorted(_list_times(client, args.entries, args.requests))
        p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        live = _live_latency(app, sessions, 10)
        print(
            f"console, {args.entries} entries on PostgreSQL; load average {os.getloadavg()[0]:.2f}"
        )
        print(f"  entries list, filtered/sorted/paged, {len(times)} requests: p50 {p50:.1f} ms, "
              f"p95 {p95:.1f} ms (target < 100 ms)")  # fmt: skip
        print(f"  live update to a connected client: median {statistics.median(live):.0f} ms, "
              f"max {max(live):.0f} ms over {len(live)} changes (target < 1000 ms)")  # fmt: skip
        engine.dispose()
    finally:
        _drop(name)


if __name__ == "__main__":
    main()
