"""The one retry policy for requests to Microsoft services (Graph, Dataverse, EWS).

Microsoft's throttling guidance is the same for each: a 429 (or 503/504) says how long
to wait in `Retry-After`, as seconds or as an HTTP date (RFC 9110, section 10.2.3);
without it, back off exponentially with jitter. A wait longer than the caller can
afford gives the work back instead of holding a worker thread. The retrying itself is
tenacity's; this module only says what to retry and how long to wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

# Throttled (429) and unavailable (503): the request was not processed (Microsoft's
# throttling guidance); always worth sending again after the wait.
THROTTLED = frozenset({429, 503})
# A server or gateway error: the request may have taken effect. Repeated only when it
# is idempotent; a send answered so is reported as uncertain instead.
UNCERTAIN = frozenset({500, 502, 504})
RETRY_STATUSES = THROTTLED | UNCERTAIN


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value in either form; None when absent or
    unreadable (the caller then backs off on its own)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Retryable(Exception):
    """Raised inside an attempt that is worth repeating; `wait` is what the service asked
    for (Retry-After), if anything."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 5
    max_wait: float = 60.0  # a longer Retry-After gives the work back instead of waiting
    min_backoff: float = 0.5
    max_backoff: float = 30.0

    def wait(self, state: RetryCallState) -> float:
        """What the service asked for (Retry-After), else jittered exponential backoff."""
        error = state.outcome.exception() if state.outcome else None
        asked = error.wait if isinstance(error, Retryable) else None
        if asked is not None:
            return asked
        backoff = wait_exponential_jitter(
            multiplier=self.min_backoff, max=self.max_backoff, jitter=self.min_backoff
        )
        return float(backoff(state))

    def retrying(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[Retryable, int, float], None] | None = None,
    ) -> Retrying:
        """Repeats an attempt that raised `Retryable`, up to `max_tries`, waiting as asked
        or backing off; gives up (re-raising the last `Retryable`) on the last try or when
        the wait asked for is longer than `max_wait`."""

        tries = stop_after_attempt(self.max_tries)

        def stop(state: RetryCallState) -> bool:
            return tries(state) or state.upcoming_sleep > self.max_wait

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if on_retry is not None and isinstance(error, Retryable):
                on_retry(error, state.attempt_number, state.upcoming_sleep)

        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, Retryable)),
            stop=stop,
            wait=self.wait,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


def call_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[Retryable, int, float], None] | None = None,
) -> Any:
    """`attempt()` under the policy; the last `Retryable` is raised when it gives up."""
    return policy.retrying(sleep=sleep, on_retry=on_retry)(attempt)
