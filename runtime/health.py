"""Health and metrics over HTTP for every long-running process.

- `/healthz` (liveness): the process loop has beaten within its allowed silence.
- `/readyz` (readiness): the database answers and the broker (Redis) answers; the
  scheduler also says whether it holds the leader lease (`"active": true`).
- `/metrics`: Prometheus text format, read from the database at scrape time (the single
  source of truth, so every process and replica reports the same figures) plus the
  broker's queue length and the process's own state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, select, text

from domain.clock import utcnow
from domain.mail.kinds import OutboxStatus
from domain.mail.models import OutboxMessage, SentEmail
from domain.queue.models import JobQueueEntry, JobQueueLogEntry
from domain.queue.status import EntryStatus
from domain.sales.integration import SyncRun
from runtime.logs import get_logger

log = get_logger("runtime.health")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT = timedelta(minutes=15)


def _seconds(dialect: str, started: Any, ended: Any) -> Any:
    """A run's duration in seconds, computed by the database (scrapes stay one row per job)."""
    if dialect == "sqlite":
        return (func.julianday(ended) - func.julianday(started)) * 86400.0
    return func.extract("epoch", ended - started)


class Heartbeat:
    """The process loop calls `beat()`; liveness fails after `allowed_silence` seconds."""

    def __init__(self, allowed_silence: float) -> None:
        self.allowed_silence = allowed_silence
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def silence(self) -> float:
        return time.monotonic() - self._last

    def alive(self) -> bool:
        return self.silence() <= self.allowed_silence


class DatabaseCollector(Collector):
    """The job queue's figures, counted in the database when scraped."""

    def __init__(self, engine: Engine, queue_length: Callable[[], int | None]) -> None:
        self.engine, self.queue_length = engine, queue_length

    def collect(self) -> Iterator[Any]:
        now = utcnow()
        e, lg = JobQueueEntry, JobQueueLogEntry
        with self.engine.connect() as conn:
            by_status = dict(
                conn.execute(select(e.status, func.count()).group_by(e.status)).tuples().all()
            )
            due = conn.execute(
                select(func.count()).where(
                    and_(e.status == EntryStatus.READY, e.earliest_start <= now)
                )
            ).scalar_one()
            runs = conn.execute(
                select(lg.job_name, lg.status, func.count()).group_by(lg.job_name, lg.status)
            ).all()
            seconds = _seconds(conn.dialect.name, lg.started_at, lg.ended_at)
            durations = conn.execute(
                select(lg.job_name, func.count(), func.sum(seconds), func.max(seconds))
                .where(lg.ended_at >= now - RECENT)
                .group_by(lg.job_name)
            ).all()
            sent = conn.execute(select(func.count()).select_from(SentEmail)).scalar_one()
            failed = conn.execute(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
            ).scalar_one()
            synced = conn.execute(
                select(
                    SyncRun.mapping_name,
                    func.sum(SyncRun.inserted + SyncRun.modified + SyncRun.deleted),
                ).group_by(SyncRun.mapping_name)
            ).all()
        entries = GaugeMetricFamily(
            "jobqueue_entries", "Job-queue entries by status", labels=["status"]
        )
        for entry_status in EntryStatus:
            entries.add_metric([entry_status.value], float(by_status.get(entry_status, 0)))
        yield entries
        yield GaugeMetricFamily(
            "jobqueue_due_entries", "Ready entries whose earliest start has passed", value=due
        )
        runs_total = CounterMetricFamily(
            "jobqueue_runs", "Runs by job and status (the log entries)", labels=["job", "status"]
        )
        for job, status, count in runs:
            runs_total.add_metric([job, str(getattr(status, "value", status))], float(count))
        yield runs_total
        families = {
            kind: GaugeMetricFamily(
                f"jobqueue_run_duration_seconds_{kind}",
                f"{title} of runs that ended in the last 15 minutes",
                labels=["job"],
            )
            for kind, title in (("count", "Number"), ("sum", "Total seconds"), ("max", "Longest"))
        }
        for job, count, total, longest in durations:
            families["count"].add_metric([job], float(count))
            families["sum"].add_metric([job], float(total or 0))
            families["max"].add_metric([job], float(longest or 0))
        yield from families.values()
        yield CounterMetricFamily("jobqueue_emails_sent", "Emails handed over", value=sent)
        yield GaugeMetricFamily(
            "jobqueue_emails_failed", "Outbox messages in status Failed", value=failed
        )
        records = CounterMetricFamily(
            "jobqueue_records_synced",
            "Records inserted, modified or deleted in Dataverse syncs",
            labels=["mapping"],
        )
        for mapping, count in synced:
            records.add_metric([mapping], float(count or 0))
        yield records
        length = self.queue_length()
        if length is not None:
            yield GaugeMetricFamily(
                "jobqueue_broker_queue_length", "Messages waiting in the broker", value=length
            )


class HealthServer:
    """Serves /healthz, /readyz and /metrics on a port in a daemon thread."""

    def __init__(
        self,
        port: int,
        engine: Engine,
        *,
        heartbeat: Heartbeat,
        broker_ping: Callable[[], None] | None = None,
        queue_length: Callable[[], int | None] = lambda: None,
        active: Callable[[], bool] | None = None,
        process: str = "jobqueue",
    ) -> None:
        self.engine, self.heartbeat, self.process = engine, heartbeat, process
        self.broker_ping, self.active = broker_ping, active
        self.registry = CollectorRegistry()
        self.registry.register(DatabaseCollector(engine, queue_length))
        self.server = ThreadingHTTPServer(("0.0.0.0", port), self._handler())  # nosec B104
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health.listening", port=self.port, process=self.process)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def liveness(self) -> tuple[int, dict[str, Any]]:
        alive = self.heartbeat.alive()
        body = {"status": "ok" if alive else "stalled", "process": self.process,
                "silence_seconds": round(self.heartbeat.silence(), 3)}  # fmt: skip
        return (200 if alive else 503), body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        checks: dict[str, str] = {}
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; say which kind
            checks["database"] = f"unreachable: {type(exc).__name__}"
        if self.broker_ping is not None:
            try:
                self.broker_ping()
                checks["broker"] = "ok"
            except Exception as exc:
                checks["broker"] = f"unreachable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks,
                                "process": self.process}  # fmt: skip
        if self.active is not None:
            body["active"] = self.active()
        return (200 if ready else 503), body

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    try:
                        data = generate_latest(server.registry)
                    except Exception as exc:
                        log.warning("health.metrics_failed", error=type(exc).__name__)
                        self._send(503, b"metrics unavailable\n", "text/plain")
                        return
                    self._send(200, data, CONTENT_TYPE)
                    return
                probes = {"/healthz": server.liveness, "/readyz": server.readiness}
                if path not in probes:
                    self._send(404, b'{"status": "not found"}', "application/json")
                    return
                status, body = probes[path]()
                self._send(status, json.dumps(body).encode(), "application/json")

        return Handler


def redis_probes(url: str, queue: str) -> tuple[Callable[[], None], Callable[[], int | None]]:
    """PING for readiness, and the length of the Dramatiq queue (its Redis list)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def ping() -> None:
        client.ping()

    def length() -> int | None:
        try:
            return int(client.llen(f"dramatiq:{queue}"))
        except redis.RedisError:
            return None

    return ping, length
