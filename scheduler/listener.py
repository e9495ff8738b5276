"""Hears NOTIFY jobqueue_wake on PostgreSQL, so admin commands and workers on other
machines can make the scheduler dispatch at once instead of at its next tick."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from domain.queue.notify import CHANNEL
from runtime.logs import get_logger
from runtime.outage import Outage

log = get_logger("scheduler.listener")


class WakeListener:
    """Reconnects with backoff while the database is away; the outage is told by the
    `Outage` it shares with the scheduler (one warning, one recovery line)."""

    def __init__(
        self, engine: Engine, on_wake: Callable[[], None], outage: Outage | None = None
    ) -> None:
        self.engine = engine
        self.on_wake = on_wake
        self.outage = outage or Outage("database", logger=log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)

    def start(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                self._stop.wait(self.outage.failed(exc))

    def _listen(self) -> None:
        raw: Any = self.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            dbapi.autocommit = True
            with dbapi.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            self.outage.succeeded()
            while not self._stop.is_set():
                readable, _, _ = select.select([dbapi], [], [], 1.0)
                if not readable:
                    continue
                dbapi.poll()
                if dbapi.notifies:
                    dbapi.notifies.clear()
                    self.on_wake()
        finally:
            raw.invalidate()
