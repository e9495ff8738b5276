"""Dramatiq middleware that keeps the leases of running runs and marks shutdown."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Broker, Middleware

from runtime.logs import get_logger
from workers.executor import RunExecutor

log = get_logger("workers.lease")


class LeaseMiddleware(Middleware):
    """A heartbeat thread per worker process renews the lease of every run it started,
    so the scheduler can tell a slow job from a dead worker."""

    def __init__(self, executor: RunExecutor) -> None:
        self.executor = executor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        self.executor.shutting_down.clear()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.executor.shutting_down.set()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(0.2, self.executor.settings.lease_seconds / 3)
        while not self._stop.wait(interval):
            try:
                self.executor.renew_leases()
            except Exception:
                log.warning("lease.renew_failed", exc_info=True)
