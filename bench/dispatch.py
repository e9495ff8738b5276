"""Dispatcher benchmark, against PostgreSQL and Redis.

1. Throughput and latency: 10,000 recurring entries, 2,000 no-op runs due at once
   (their due time is set after seeding and after the processes are up), 2 worker
   processes x 8 threads. Side by side: bare Dramatiq actors doing the same no-op on
   the same broker and worker layout. `--load` repeats it with a CPU-bound process
   loading the box.
2. Idle tick: the time of one scheduler tick with nothing due, at 1k, 10k and 50k
   entries (it should be flat in the number of entries).
3. Head-of-line: a short run due while a two-worker pool (2 x 2 threads) is busy with
   long runs; its due-to-start, with prefetch = threads (ours) and Dramatiq's default.

    python -m bench.dispatch [--entries 10000] [--due 2000] [--load] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, insert, select, update

from domain.clock import utcnow
from domain.db import make_engine
from domain.migrations import upgrade
from domain.queue.models import ENTRIES, LEASES, LOG_ENTRIES
from domain.queue.notify import notify_in_transaction
from domain.queue.status import EntryStatus
from domain.queue.transitions import WEEKDAY_COLUMNS
from runtime.settings import Settings
from scheduler.dispatcher import Dispatcher

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


def _create_database(purpose: str) -> tuple[Any, str, str]:
    """A scratch database on the shared server: (admin connection, name, URL)."""
    name = f"jobqueue_{purpose}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return admin, name, f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def _drop_database(admin: Any, name: str) -> None:
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _clear_queue(queue: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{queue}*"):
        client.delete(key)


def whole_system(entries: int, due: int, workdir: Path) -> dict[str, float]:
    admin, name, url = _create_database("bench")
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
    rows = [
        {
            "code": f"BENCH-{i:05d}",
            "description": "",
            "job_name": "noop",
            "parameter_string": "",
            "status": EntryStatus.READY,
            "recurring": True,
            "minutes_between_runs": 60,
            "earliest_start": now + timedelta(hours=1 + i % 24),
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
        _wait_for_leader(engine)
        time.sleep(2)  # workers booted and polling
        due_at = utcnow() + timedelta(seconds=1)
        with engine.begin() as conn:  # `due` entries become due together, after seeding
            conn.execute(
                update(ENTRIES)
                .where(ENTRIES.c.code < f"BENCH-{due:05d}")
                .values(earliest_start=due_at)
            )
            notify_in_transaction(conn)
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
        _drop_database(admin, name)
        _clear_queue(queue)
    if len(spans) < due:
        raise SystemExit(f"only {len(spans)} of {due} runs finished; see {workdir}")
    latencies = sorted((s.started_at - due_at).total_seconds() for s in spans)
    if os.environ.get("BENCH_TIMELINE"):  # runs started and ended per half second
        for half in range(int(max(latencies) * 2) + 2):
            began = sum(1 for x in latencies if half / 2 <= x < (half + 1) / 2)
            ended = sum(
                1
                for x in spans
                if half / 2 <= (x.ended_at - due_at).total_seconds() < (half + 1) / 2
            )
            print(f"{half / 2:5.1f}s started {began:4d} ended {ended:4d}")
    last_end = max(s.ended_at for s in spans)
    return {
        "runs_per_s": due / (last_end - due_at).total_seconds(),
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "rss_mb": rss,
    }


def _wait_for_leader(engine: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(LEASES)).scalar_one():
                return
        time.sleep(0.1)
    raise SystemExit("no scheduler became active within 60 s")


def _seed(engine: Any, entries: int, start: int = 0) -> None:
    now = utcnow()
    rows = [
        {
            "code": f"IDLE-{i:06d}",
            "description": "",
            "job_name": "noop",
            "parameter_string": "",
            "status": EntryStatus.READY if i % 10 else EntryStatus.ON_HOLD_INACTIVITY,
            "recurring": True,
            "minutes_between_runs": 60,
            "earliest_start": now + timedelta(hours=1 + i % 48),
            "expiration": now + timedelta(days=30) if i % 3 == 0 else None,
            "maximum_attempts": 3,
            "attempts": 0,
            "rerun_delay_seconds": 60,
            "job_timeout_seconds": 600,
            "inactivity_timeout_minutes": 30 if i % 10 == 0 else 0,
            "priority": i % 5,
            "user_id": "",
            "run_seq": 0,
            **{c: True for c in WEEKDAY_COLUMNS},
        }
        for i in range(start, entries)
    ]
    with engine.begin() as conn:
        for offset in range(0, len(rows), 5000):
            conn.execute(insert(ENTRIES), rows[offset : offset + 5000])
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE job_queue_entries")


def idle_ticks(sizes: list[int], ticks: int = 60) -> dict[int, float]:
    """Median milliseconds of one tick with nothing due, per number of entries."""
    admin, name, url = _create_database("idle")
    engine = make_engine(url)
    results: dict[int, float] = {}
    try:
        upgrade(engine)
        settings = Settings(database_url=str(engine.url))
        broker = StubBroker(middleware=[])
        broker.declare_queue(settings.queue_name)
        dispatcher = Dispatcher(engine, broker, settings)
        seeded = 0
        for size in sorted(sizes):
            _seed(engine, size, seeded)
            seeded = size
            for _ in range(5):  # warm the pool and the plans
                dispatcher.tick(utcnow())
            times = []
            for _ in range(ticks):
                began = time.perf_counter()
                report = dispatcher.tick(utcnow())
                times.append((time.perf_counter() - began) * 1000)
                assert report.dispatched == 0
            results[size] = statistics.median(times)
    finally:
        engine.dispose()
        _drop_database(admin, name)
    return results


def head_of_line(workdir: Path, prefetch: int | None) -> float:
    """Seconds from due to start of a short run due with three 6-second runs (sent before
    it) on a 2 x 2 pool: four threads for four runs, unless a worker buffers more
    messages than it has threads."""
    admin, name, url = _create_database("hol")
    queue = f"bench_hol_{uuid.uuid4().hex[:6]}"
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
    env.pop("dramatiq_queue_prefetch", None)
    if prefetch is not None:
        env["dramatiq_queue_prefetch"] = str(prefetch)
    far = utcnow() + timedelta(hours=1)
    rows = [
        {"code": f"LONG-{i}", "job_name": "sleep", "parameter_string": "seconds=6", "priority": 1}
        for i in range(3)
    ] + [{"code": "SHORT", "job_name": "noop", "parameter_string": "", "priority": 0}]
    with engine.begin() as conn:
        for row in rows:
            conn.execute(
                insert(ENTRIES).values(
                    **row,
                    description="",
                    status=EntryStatus.READY,
                    recurring=False,
                    minutes_between_runs=0,
                    earliest_start=far,
                    maximum_attempts=1,
                    attempts=0,
                    rerun_delay_seconds=0,
                    job_timeout_seconds=60,
                    inactivity_timeout_minutes=0,
                    user_id="",
                    run_seq=0,
                    **{c: True for c in WEEKDAY_COLUMNS},
                )
            )
    cli = [sys.executable, "-m", "admin.cli"]
    workers = _spawn(
        [*cli, "worker", "--processes", "2", "--threads", "2"], env, workdir / "hol.log"
    )
    scheduler = _spawn([*cli, "scheduler"], env, workdir / "hol-scheduler.log")
    try:
        _wait_for_leader(engine)
        time.sleep(3)  # workers booted and polling
        short_due = utcnow()
        with engine.begin() as conn:  # all four due at once; the short one is sent last
            conn.execute(update(ENTRIES).values(earliest_start=short_due))
            notify_in_transaction(conn)
        deadline = time.monotonic() + 60
        started = None
        while started is None and time.monotonic() < deadline:
            with engine.connect() as conn:
                started = conn.execute(
                    select(LOG_ENTRIES.c.started_at).where(LOG_ENTRIES.c.entry_code == "SHORT")
                ).scalar_one_or_none()
            time.sleep(0.05)
        if started is None:
            raise SystemExit(f"the short run never started; see {workdir}")
        return (started - short_due).total_seconds()
    finally:
        _stop(scheduler)
        _stop(workers)
        engine.dispose()
        _drop_database(admin, name)
        _clear_queue(queue)


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _throughput(args: argparse.Namespace, workdir: Path, label: str) -> None:
    rounds = []
    for _ in range(args.repeat):  # interleaved, so drift on the machine hits both alike
        rounds.append(
            (whole_system(args.entries, args.due, workdir), bare_dramatiq(args.due, workdir))
        )
    system = {k: statistics.median(r[0][k] for r in rounds) for k in rounds[0][0]}
    bare = statistics.median(r[1] for r in rounds)
    ratio = statistics.median(r[0]["runs_per_s"] / r[1] for r in rounds)
    print(
        f"[{label}] entries {args.entries}, runs due at once {args.due}, "
        f"workers {PROCESSES} processes x {THREADS} threads, PostgreSQL + Redis, "
        f"median of {args.repeat}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'whole system':<28}{system['runs_per_s']:>10.0f} runs/s")
    print(f"{'bare Dramatiq no-op actor':<28}{bare:>10.0f} msgs/s")
    print(f"{'ratio (target >= 0.30)':<28}{ratio:>10.2f}")
    print(f"{'due-to-start p50':<28}{system['p50']:>10.3f} s")
    print(f"{'due-to-start p99 (< 2 s)':<28}{system['p99']:>10.3f} s")
    print(f"{'scheduler peak RSS (<150)':<28}{system['rss_mb']:>10.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--load", action="store_true", help="also measure with the box loaded")
    parser.add_argument("--skip-throughput", action="store_true", help="idle tick and HOL only")
    args = parser.parse_args()
    workdir = Path(os.environ.get("BENCH_DIR", "/tmp/jobqueue-bench"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_throughput:
        _throughput(args, workdir, "quiet box")
        if args.load:
            stop = multiprocessing.Event()
            burner = multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
            burner.start()
            try:
                _throughput(args, workdir, "with a CPU-bound process loading the box")
            finally:
                stop.set()
                burner.join()
    sizes = [1_000, 10_000, 50_000]
    idle = idle_ticks(sizes)
    print(f"idle tick (nothing due), median of 60, load average {os.getloadavg()[0]:.2f}")
    for size in sizes:
        print(f"{f'{size:,} entries':<28}{idle[size]:>10.2f} ms")
    print(f"{'50k / 1k (flat = 1.0)':<28}{idle[50_000] / idle[1_000]:>10.2f}")
    ours = statistics.median(head_of_line(workdir, None) for _ in range(3))
    default = statistics.median(head_of_line(workdir, 4) for _ in range(3))
    print("head-of-line: a short run due with three 6 s runs on a 2 x 2 pool (median of 3)")
    print(f"{'prefetch = threads (ours)':<28}{ours:>10.3f} s due-to-start")
    print(f"{'prefetch = 2 x threads':<28}{default:>10.3f} s due-to-start")


if __name__ == "__main__":
    main()
