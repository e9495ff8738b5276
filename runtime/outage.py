"""An outage tells a story: one warning when a dependency goes away, one info line when it
is back, and backoff between the tries in between (Dramatiq's own `compute_backoff`).

A loop that talks to the database or the broker every second would otherwise log
a traceback per second for as long as the server is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from dramatiq.common import compute_backoff
from sqlalchemy.exc import DBAPIError

from runtime.db_errors import describe
from runtime.logs import get_logger


class Outage:
    def __init__(
        self,
        dependency: str,
        *,
        logger: Any = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self.log = logger or get_logger("runtime.outage")
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._since: float | None = None
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def ready(self) -> bool:
        """False while backing off after a failure: the caller skips this try."""
        return self._since is None or self.clock() >= self._next_try

    def failed(self, error: BaseException | str) -> float:
        """Record a failed try; warns on the first only. Returns the seconds until the next."""
        with self._lock:
            now = self.clock()
            first = self._since is None
            if first:
                self._since = now
            _, backoff_ms = compute_backoff(
                self._failures,
                factor=int(self.min_backoff * 1000),
                max_backoff=int(self.max_backoff * 1000),
            )
            self._failures += 1
            wait = backoff_ms / 1000
            self._next_try = now + wait
        if first:
            self.log.warning(
                f"{self.dependency}.unavailable",
                error=_one_line(error),
                retrying_in_s=round(wait, 2),
            )
        return wait

    def succeeded(self) -> None:
        with self._lock:
            since, failures = self._since, self._failures
            self._since, self._failures, self._next_try = None, 0, 0.0
        if since is not None:
            self.log.info(
                f"{self.dependency}.recovered",
                down_s=round(self.clock() - since, 1),
                failed_tries=failures,
            )


def _one_line(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, DBAPIError):
        return describe(error)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
