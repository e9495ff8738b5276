"""Dispatcher benchmark: 10,000 recurring entries, 2,000 no-op runs due at once, 2 worker
processes x 8 threads, against PostgreSQL and Redis. Side by side: bare Dramatiq actors
doing the same no-op on the same broker and worker layout.

    python -m bench.dispatch [--entries 10000] [--due 2000]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg2
import redis
from dramatiq import Message
from sqlalchemy import func, insert, select

from domain.clock import utcnow
from domain.db import make_engine
from domain.migrations import upgrade
from domain.queue.models import ENTRIES, LOG_ENTRIES
from domain.queue.status import EntryStatus
from domain.queue.transitions import WEEKDAY_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bare_dramatiq(runs: int, workdir: Path) -> float:
    """Messages per second through bare Dramatiq actors."""
    queue = f"bench_bare_{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "REDIS_URL": REDIS_URL, "BENCH_QUEUE": queue, "PYTHONPATH": str(ROOT)}
    client = redis.Redis.from_url(REDIS_URL)
    workers = _spawn(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.bare_actor",
            "--processes",
            str(PROCESSES),
            "--threads",
            str(THREADS),
            "--queues",
            queue,
        ],
        env,
        workdir / "bare.log",
    )
    try:
        time.sleep(3)  # workers booted and polling
        from dramatiq import get_broker

        from bench import bare_actor  # noqa: F401  (declares the queue in this process too)

        broker = get_broker()
        broker.declare_queue(queue)
        start = time.perf_counter()
        for i in range(runs):
            broker.enqueue(
                Message(
                    queue_name=queue, actor_name="bare_noop", args=(i, 1), kwargs={}, options={}
                )
            )
        while int(client.get(f"{queue}:done") or 0) < runs:
            time.sleep(0.01)
        return runs / (time.perf_counter() - start)
    finally:
        _stop(workers)
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)


def whole_system(entries: int, due: int, workdir: Path) -> dict[str, float]:
    name = f"jobqueue_bench_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    queue = f"bench_{uuid.uuid4().hex[:6]}"
    engine = make_engine(url)
    upgrade(engine)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "JOBQUEUE_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    now = utcnow()
    due_at = now + timedelta(seconds=6)
    rows = [
        {
            "code": f"BENCH-{i:05d}",
            "description": "",
            "job_name": "noop",
            "parameter_string": "",
            "status": EntryStatus.READY,
            "recurring": True,
            "minutes_between_runs": 60,
            "earliest_start": due_at if i < due else now + timedelta(hours=1 + i % 24),
            "maximum_attempts": 3,
            "attempts": 0,
            "rerun_delay_seconds": 60,
            "job_timeout_seconds": 600,
            "inactivity_timeout_minutes": 0,
            "priority": 0,
            "user_id": "",
            "run_seq": 0,
            **{c: True for c in WEEKDAY_COLUMNS},
        }
        for i in range(entries)
    ]
    with engine.begin() as conn:
        conn.execute(insert(ENTRIES), rows)
    cli = [sys.executable, "-m", "admin.cli"]
    workers = _spawn(
        [*cli, "worker", "--processes", str(PROCESSES), "--threads", str(THREADS)],
        env,
        workdir / "workers.log",
    )
    scheduler = _spawn([*cli, "scheduler"], env, workdir / "scheduler.log")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                done = conn.execute(
                    select(func.count()).where(LOG_ENTRIES.c.ended_at.is_not(None))
                ).scalar_one()
            if done >= due:
                break
            time.sleep(0.2)
        rss = _rss_peak_mb(scheduler.pid)
        with engine.connect() as conn:
            spans = conn.execute(select(LOG_ENTRIES.c.started_at, LOG_ENTRIES.c.ended_at)).all()
    finally:
        _stop(scheduler)
        _stop(workers)
        engine.dispose()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
    if len(spans) < due:
        raise SystemExit(f"only {len(spans)} of {due} runs finished; see {workdir}")
    latencies = sorted((s.started_at - due_at).total_seconds() for s in spans)
    last_end = max(s.ended_at for s in spans)
    return {
        "runs_per_s": due / (last_end - due_at).total_seconds(),
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed")
    args = parser.parse_args()
    workdir = Path(os.environ.get("BENCH_DIR", "/tmp/jobqueue-bench"))
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = []
    for _ in range(args.repeat):  # interleaved, so drift on the machine hits both alike
        rounds.append(
            (whole_system(args.entries, args.due, workdir), bare_dramatiq(args.due, workdir))
        )
    system = {k: statistics.median(r[0][k] for r in rounds) for k in rounds[0][0]}
    bare = statistics.median(r[1] for r in rounds)
    ratio = statistics.median(r[0]["runs_per_s"] / r[1] for r in rounds)
    print(
        f"entries {args.entries}, runs due at once {args.due}, "
        f"workers {PROCESSES} processes x {THREADS} threads, PostgreSQL + Redis"
    )
    print(f"{'whole system':<28}{system['runs_per_s']:>10.0f} runs/s")
    print(f"{'bare Dramatiq no-op actor':<28}{bare:>10.0f} msgs/s")
    print(f"{'ratio (target >= 0.30)':<28}{ratio:>10.2f}")
    print(f"{'due-to-start p50':<28}{system['p50']:>10.3f} s")
    print(f"{'due-to-start p99 (< 2 s)':<28}{system['p99']:>10.3f} s")
    print(f"{'scheduler peak RSS (<150)':<28}{system['rss_mb']:>10.1f} MB")


if __name__ == "__main__":
    main()
