"""Long-running processes: the scheduler, the Dramatiq worker pool, and both in one."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq.worker
from dramatiq import Worker
from sqlalchemy import Engine

from domain.db import make_engine
from domain.migrations import upgrade
from runtime.health import HealthServer, Heartbeat, redis_probes
from runtime.logs import configure_logging, get_logger
from runtime.settings import Settings
from scheduler.service import SchedulerService
from workers.app import WorkerApp, create_app
from workers.broker import build_broker

log = get_logger("admin.processes")


def start_health(
    settings: Settings,
    engine: Engine,
    heartbeat: Heartbeat,
    process: str,
    active: Callable[[], bool] | None = None,
) -> HealthServer | None:
    """The health and metrics endpoint on JOBQUEUE_HEALTH_PORT, if one is set."""
    if not settings.health_port:
        return None
    ping, length = (
        redis_probes(settings.redis_url, settings.queue_name)
        if settings.redis_url
        else (None, lambda: None)
    )
    return HealthServer(
        settings.health_port,
        engine,
        heartbeat=heartbeat,
        broker_ping=ping,
        queue_length=length,
        active=active,
        process=process,
    ).start()


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    """Scheduler only: needs REDIS_URL (the workers run elsewhere)."""
    engine = make_engine(settings.database_url)
    service = SchedulerService(settings, engine, build_broker(settings))
    service.start()
    health = start_health(
        settings, engine, service.heartbeat, "scheduler", lambda: service.is_active
    )
    stop.wait()
    log.info("scheduler.stopping")
    service.stop()
    if health is not None:
        health.stop()
    engine.dispose()


def _beat_while_alive(heartbeat: Heartbeat) -> None:
    """The worker pool's main process is Dramatiq's; this beats while it is responsive."""

    def loop() -> None:
        while True:
            heartbeat.beat()
            time.sleep(1.0)

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()


def run_worker_pool(settings: Settings, processes: int, threads: int) -> int:
    """Hands over to Dramatiq's own process manager (signals, restarts, log piping)."""
    from dramatiq.cli import main as dramatiq_main

    argv = [
        "workers.main",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        settings.queue_name,
        "--skip-logging",
    ]
    sys.argv = ["jobqueue-worker", *argv]
    no_head_of_line_wait(threads)
    heartbeat = Heartbeat(allowed_silence=10.0)
    if settings.health_port:
        _beat_while_alive(heartbeat)
        start_health(settings, make_engine(settings.database_url), heartbeat, "worker")
    return int(dramatiq_main() or 0)  # type: ignore[no-untyped-call]


def no_head_of_line_wait(threads: int) -> None:
    """A worker process takes no more messages than it has threads (Dramatiq prefetches
    twice as many by default): a due run then waits in Redis, where any idle worker
    takes it, not behind long runs buffered in a busy one. Set for the worker processes
    Dramatiq forks (the module global) or spawns (the variable it is read from)."""
    name = "dramatiq_queue_prefetch"  # Dramatiq's own variable; an operator's value stands
    prefetch = int(os.environ.get(name) or threads)
    os.environ[name] = str(prefetch)
    dramatiq.worker.QUEUE_PREFETCH = prefetch


class EmbeddedSystem:
    """Scheduler and a Dramatiq worker in one process: the embedded default and tests."""

    def __init__(self, settings: Settings, threads: int = 4, migrate: bool = True) -> None:
        self.settings = settings
        engine = make_engine(settings.database_url)
        if migrate:
            upgrade(engine)
        self.app: WorkerApp = create_app(settings, engine=engine)
        self.scheduler = SchedulerService(settings, engine, self.app.broker)
        self.worker = Worker(self.app.broker, worker_threads=threads, worker_timeout=100)
        self.worker.queue_prefetch = threads  # see no_head_of_line_wait

    def start(self) -> None:
        self.worker.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.worker.stop()
        self.app.engine.dispose()

    def __enter__(self) -> EmbeddedSystem:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def run_embedded(settings: Settings, stop: threading.Event, threads: int = 4) -> None:
    with EmbeddedSystem(settings, threads=threads) as system:
        scheduler = system.scheduler
        health = start_health(
            settings,
            system.app.engine,
            scheduler.heartbeat,
            "jobqueue",
            lambda: scheduler.is_active,
        )
        log.info(
            "embedded.started",
            database=settings.database_url,
            broker="in-process" if settings.embedded else "redis",
        )
        from admin.users_cli import web_port

        web = WebThread(settings, system.app.engine, web_port())
        web.start()
        stop.wait()
        log.info("embedded.stopping")
        web.stop()
        if health is not None:
            health.stop()


class WebThread:
    """The console and the API inside another process (`jobqueue run`, the demo): uvicorn
    in a thread. A port already taken is one warning; the rest of the process goes on."""

    def __init__(self, settings: Settings, engine: Any, port: int, host: str = "127.0.0.1") -> None:
        import uvicorn

        from admin.web.app import web_app_from_env

        app = web_app_from_env(settings, engine, os.environ)
        config = uvicorn.Config(
            app,
            host=os.environ.get("JOBQUEUE_WEB_HOST", host),
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind
            log.warning("web.unavailable", url=self.url, reason="the port is taken")

    def start(self, timeout: float = 10.0) -> bool:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.server.started:
            log.info("web.started", url=self.url)
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


def run_web(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """The console and the API (uvicorn); SIGTERM finishes the requests in flight."""
    import uvicorn

    from admin.web.app import web_app_from_env

    configure_logging(settings.log_level, process="web")
    engine = make_engine(settings.database_url)
    app = web_app_from_env(settings, engine, os.environ)
    log.info("web.started", url=f"http://{host}:{port}/")
    uvicorn.run(app, host=os.environ.get("JOBQUEUE_WEB_HOST", host), port=port, log_config=None,
                access_log=False, proxy_headers=True)  # fmt: skip
    engine.dispose()
