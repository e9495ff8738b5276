"""A scheduler and a worker pool as separate processes on PostgreSQL and Redis: their
health endpoints answer (liveness, readiness, which scheduler is active), their metrics
scrape, and SIGTERM stops both cleanly with no run lost."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from domain.queue.status import EntryStatus, LogStatus
from runtime.settings import Settings
from tests.conftest import wait_until
from tests.helpers import add, entry, logs
from tests.test_processes import _free_port, servers, sessions_for, spawn, stop_group

__all__ = ["servers"]  # the fixture, imported for these tests


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_scheduler_and_worker_answer_health_and_metrics_and_stop_on_sigterm(
    servers: Settings, tmp_path: Path
) -> None:
    sessions = sessions_for(servers)
    scheduler_port, worker_port = _free_port(), _free_port()
    scheduler = spawn(
        servers, "scheduler", log_path=tmp_path / "scheduler.log",
        JOBQUEUE_HEALTH_PORT=str(scheduler_port),
    )  # fmt: skip
    worker = spawn(
        servers, "worker", "--processes", "1", "--threads", "2",
        log_path=tmp_path / "worker.log", JOBQUEUE_HEALTH_PORT=str(worker_port),
    )  # fmt: skip
    try:
        wait_until(lambda: get(scheduler_port, "/healthz")[0] == 200, timeout=30)
        wait_until(lambda: get(worker_port, "/healthz")[0] == 200, timeout=30)
        status, body = get(scheduler_port, "/readyz")
        ready: dict[str, Any] = json.loads(body)
        assert status == 200 and ready["checks"] == {"database": "ok", "broker": "ok"}
        wait_until(lambda: json.loads(get(scheduler_port, "/readyz")[1])["active"], timeout=15)
        assert "active" not in json.loads(get(worker_port, "/readyz")[1])
        assert get(worker_port, "/nothing")[0] == 404

        for n in range(3):
            add(sessions, servers, f"M{n}", "noop")
        add(sessions, servers, "SLOW", "sleep", parameter_string="seconds=2")
        wait_until(lambda: entry(sessions, "SLOW").started_at is not None, timeout=30)
        wait_until(
            lambda: (
                metrics(worker_port).get(
                    ("jobqueue_runs_total", (("job", "noop"), ("status", "Success")))
                )
                == 3
            ),
            timeout=30,
        )
        scraped = metrics(scheduler_port)
        assert scraped[("jobqueue_entries", (("status", "Finished"),))] >= 3
        assert ("jobqueue_broker_queue_length", ()) in scraped
        assert ("jobqueue_due_entries", ()) in scraped

        os.kill(worker.pid, signal.SIGTERM)  # while SLOW runs: it finishes, nothing is lost
        os.kill(scheduler.pid, signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert scheduler.wait(timeout=30) == 0
    finally:
        stop_group(worker)
        stop_group(scheduler)
    assert entry(sessions, "SLOW").status == EntryStatus.FINISHED
    assert [run.status for run in logs(sessions, "SLOW")] == [LogStatus.SUCCESS]
    for log_file in ("scheduler.log", "worker.log"):
        lines = (tmp_path / log_file).read_text().splitlines()
        assert any(json.loads(line).get("event") == "health.listening" for line in lines)
