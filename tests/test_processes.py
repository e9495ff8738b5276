"""Real processes on PostgreSQL and Redis: a worker killed with SIGKILL mid-run, a worker
stopped with SIGTERM, Redis restarted while entries are due, two scheduler processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq import Worker
from sqlalchemy import func, select

from domain.db import make_engine, make_session_factory
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.queue.status import EntryStatus, LogStatus
from runtime.settings import Settings
from scheduler.service import SchedulerService
from tests.conftest import fresh_servers, wait_until
from tests.helpers import add, entry, finished_logs, logs
from workers.app import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def servers(pg_database: str) -> Iterator[Settings]:
    with fresh_servers(pg_database) as fresh:
        yield fresh


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        JOBQUEUE_QUEUE=settings.queue_name,
        JOBQUEUE_LEASE_SECONDS=str(settings.lease_seconds),
        JOBQUEUE_TICK_SECONDS=str(settings.tick_seconds),
        JOBQUEUE_KEEP_ONE_OFF_ENTRIES=str(settings.keep_one_off_entries),
        JOBQUEUE_DISPATCH_TIMEOUT_SECONDS=str(settings.dispatch_timeout_seconds),
        JOBQUEUE_LEADER_TTL_SECONDS=str(settings.leader_ttl_seconds),
        LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def spawn(settings: Settings, *args: str, log_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "admin.cli", *args],
        cwd=ROOT,
        env=env_for(settings, **extra),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


@pytest.fixture
def scheduler(servers: Settings) -> Iterator[SchedulerService]:
    app = create_app(servers)
    service = SchedulerService(servers, app.engine, app.broker)
    service.start()
    yield service
    service.stop()
    app.engine.dispose()


def sessions_for(settings: Settings) -> Any:
    return make_session_factory(make_engine(settings.database_url))


def test_worker_killed_mid_run_is_recovered(
    servers: Settings, scheduler: SchedulerService, tmp_path: Path
) -> None:
    sessions = sessions_for(servers)
    worker = spawn(
        servers, "worker", "--processes", "1", "--threads", "2", log_path=tmp_path / "worker.log"
    )
    try:
        add(
            sessions,
            servers,
            "KILLED",
            "sleep",
            parameter_string="seconds=60",
            maximum_attempts=2,
            rerun_delay_seconds=3600,
        )
        wait_until(lambda: entry(sessions, "KILLED").started_at is not None, timeout=30)
        stop_group(worker, signal.SIGKILL)
        wait_until(lambda: entry(sessions, "KILLED").status == EntryStatus.READY, timeout=15)
    finally:
        stop_group(worker)
    after = entry(sessions, "KILLED")
    assert after.attempts == 1 and after.started_at is None and after.worker_id is None
    [run] = logs(sessions, "KILLED")
    assert run.status == LogStatus.ERROR
    assert "recovered as lost" in (run.error_message or "")


def test_worker_sigterm_lets_the_running_job_finish(
    servers: Settings, scheduler: SchedulerService, tmp_path: Path
) -> None:
    sessions = sessions_for(servers)
    worker = spawn(
        servers, "worker", "--processes", "1", "--threads", "2", log_path=tmp_path / "worker.log"
    )
    try:
        add(sessions, servers, "GRACE", "sleep", parameter_string="seconds=2")
        wait_until(lambda: entry(sessions, "GRACE").started_at is not None, timeout=30)
        os.kill(worker.pid, signal.SIGTERM)  # to the master, as a container runtime does
        assert worker.wait(timeout=30) == 0
    finally:
        stop_group(worker)
    assert entry(sessions, "GRACE").status == EntryStatus.FINISHED
    [run] = logs(sessions, "GRACE")
    assert run.status == LogStatus.SUCCESS
    output = (tmp_path / "worker.log").read_text()
    assert '"event": "run.finished"' in output  # JSON lines from the worker child


def test_worker_sigterm_hands_back_a_job_that_outlives_the_grace_period(
    servers: Settings, scheduler: SchedulerService, tmp_path: Path
) -> None:
    sessions = sessions_for(servers)
    worker = spawn(
        servers,
        "worker",
        "--processes",
        "1",
        "--threads",
        "2",
        log_path=tmp_path / "worker.log",
        JOBQUEUE_SHUTDOWN_GRACE_SECONDS="1",
    )
    try:
        add(sessions, servers, "LONG", "sleep", parameter_string="seconds=120", maximum_attempts=1)
        wait_until(lambda: entry(sessions, "LONG").started_at is not None, timeout=30)
        scheduler.stop()  # so the handed-back entry is not picked up again at once
        os.kill(worker.pid, signal.SIGTERM)  # to the master, as a container runtime does
        assert worker.wait(timeout=30) == 0
    finally:
        stop_group(worker)
    after = entry(sessions, "LONG")
    assert after.status == EntryStatus.READY and after.attempts == 0
    [run] = logs(sessions, "LONG")
    assert run.status == LogStatus.ERROR and "handed back" in (run.error_message or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    wait_until(lambda: _pings(client), timeout=10)
    return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_restarted_while_entries_are_due_loses_nothing(
    servers: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    settings = Settings(**{**servers.__dict__, "redis_url": f"redis://127.0.0.1:{port}/0"})
    redis_proc = _start_redis(port, tmp_path)
    sessions = sessions_for(settings)
    app = create_app(settings)
    scheduler = SchedulerService(settings, app.engine, app.broker)
    scheduler.start()
    worker_app = create_app(settings)
    worker: Worker | None = None
    try:
        for i in range(10):
            add(sessions, settings, f"A{i}", "noop")
        wait_until(
            lambda: all(
                entry(sessions, f"A{i}").status == EntryStatus.IN_PROCESS for i in range(10)
            )
        )
        redis_proc.kill()  # the queued messages die with it (no persistence)
        redis_proc.wait()
        for i in range(10):  # due while the broker is down
            add(sessions, settings, f"B{i}", "noop")
        time.sleep(1.0)
        redis_proc = _start_redis(port, tmp_path)
        worker = Worker(worker_app.broker, worker_threads=4, worker_timeout=100)
        worker.start()
        codes = [f"A{i}" for i in range(10)] + [f"B{i}" for i in range(10)]
        wait_until(
            lambda: all(entry(sessions, c).status == EntryStatus.FINISHED for c in codes),
            timeout=30,
        )
    finally:
        scheduler.stop()
        if worker is not None:
            worker.stop()
        redis_proc.kill()
        redis_proc.wait()
    for code in codes:
        assert len(finished_logs(sessions, code)) == 1, code


def test_two_scheduler_processes_one_dies_the_other_takes_over(
    servers: Settings, tmp_path: Path
) -> None:
    sessions = sessions_for(servers)
    first = spawn(servers, "scheduler", log_path=tmp_path / "s1.log")
    second = spawn(servers, "scheduler", log_path=tmp_path / "s2.log")
    worker_app = create_app(servers)
    worker = Worker(worker_app.broker, worker_threads=8, worker_timeout=100)
    worker.start()
    try:
        for i in range(100):
            add(sessions, servers, f"H{i}", "noop")
        wait_until(lambda: _finished(sessions) == 100, timeout=30)
        active = _active_holder(sessions)
        victim, survivor = (first, second) if f":{first.pid}:" in active else (second, first)
        stop_group(victim, signal.SIGKILL)
        for i in range(100, 150):
            add(sessions, servers, f"H{i}", "noop")
        wait_until(lambda: _finished(sessions) == 150, timeout=30)
        assert f":{survivor.pid}:" in _active_holder(sessions)
        os.kill(survivor.pid, signal.SIGTERM)
        assert survivor.wait(timeout=20) == 0
    finally:
        worker.stop()
        stop_group(first)
        stop_group(second)
    with sessions() as session:
        runs = session.execute(
            select(JobQueueLogEntry.entry_code, func.count()).group_by(JobQueueLogEntry.entry_code)
        ).all()
    assert len(runs) == 150 and all(count == 1 for _, count in runs)


def _finished(sessions: Any) -> int:
    with sessions() as session:
        return int(
            session.execute(
                select(func.count()).where(JobQueueEntry.status == EntryStatus.FINISHED)
            ).scalar_one()
        )


def _active_holder(sessions: Any) -> str:
    from domain.queue.models import SchedulerLease

    with sessions() as session:
        return str(session.execute(select(SchedulerLease.holder)).scalar_one())


def test_jobqueue_run_on_the_embedded_default_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobqueue.db'}"
    settings = Settings(database_url=url, tick_seconds=0.2, keep_one_off_entries=True)
    env = env_for(settings, REDIS_URL="")
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "admin.cli",
                "entries",
                "add",
                "ONE",
                "--job",
                "sleep",
                "--parameter",
                "seconds=1",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        ).returncode
        == 2
    )  # the schema is not there yet: a clear error, exit 2
    subprocess.run([sys.executable, "-m", "admin.cli", "migrate"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "admin.cli",
            "entries",
            "add",
            "ONE",
            "--job",
            "sleep",
            "--parameter",
            "seconds=1",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:  # the console comes up beside it, on a port of its own
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = spawn(settings, "run", log_path=tmp_path / "run.log", REDIS_URL="",
                 JOBQUEUE_WEB_PORT=str(port))  # fmt: skip
    sessions = sessions_for(settings)
    try:
        wait_until(lambda: entry(sessions, "ONE").started_at is not None, timeout=20)
        health = wait_until(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=20)
        assert health == {"status": "ok"}
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_group(proc)
    assert entry(sessions, "ONE").status == EntryStatus.FINISHED  # the running job finished
    lines = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert "run.finished" in events and "embedded.stopping" in events
    assert all(line["process"] == "jobqueue" for line in lines if "process" in line)


def _get(url: str) -> Any:
    import httpx

    try:
        return httpx.get(url, timeout=2).json()
    except httpx.HTTPError:
        return None
