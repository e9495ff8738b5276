"""Small jobs for tests, demos and health checks of the queue itself."""

from __future__ import annotations

import math
import time

from jobs.registry import (
    JobContext,
    JobOutcome,
    JobParameterError,
    parse_parameters,
    registry,
)

MAX_SLEEP_SECONDS = 7 * 24 * 3600  # the longest job timeout
MAX_FAIL_TIMES = 1_000_000


def _allowed(*names: str) -> object:
    def validate(text: str) -> None:
        params = parse_parameters(text)
        unknown = sorted(set(params) - set(names))
        if unknown:
            allowed = ", ".join(names) or "none"
            raise JobParameterError(f"unknown parameter {unknown[0]!r} (allowed: {allowed})")
        if "seconds" in params:
            try:
                seconds = float(params["seconds"])
            except ValueError:
                seconds = math.nan
            if not 0 <= seconds <= MAX_SLEEP_SECONDS:  # false for nan too
                raise JobParameterError(
                    f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS}, "
                    f"got {params['seconds']!r}"
                )
        if "fail_times" in params:
            text = params["fail_times"]
            if (
                not (text.isascii() and text.isdigit() and len(text) <= 7)
                or int(text) > MAX_FAIL_TIMES
            ):
                raise JobParameterError(
                    f"fail_times must be a whole number from 0 to {MAX_FAIL_TIMES}, got {text!r}"
                )

    return validate


def _watch(text: str) -> frozenset[str]:
    value = parse_parameters(text).get("watch", "")
    return frozenset(v.strip() for v in value.split(",") if v.strip())


@registry.register("noop", validate=_allowed())  # type: ignore[arg-type]
def noop(_parameters: str, _ctx: JobContext) -> JobOutcome:
    """Does nothing and reports activity: the queue's own throughput probe."""
    return JobOutcome(activity=True)


@registry.register("sleep", validate=_allowed("seconds"))  # type: ignore[arg-type]
def sleep(parameters: str, ctx: JobContext) -> JobOutcome:
    """Sleeps `seconds` (stops early when the run is cancelled)."""
    seconds = float(parse_parameters(parameters).get("seconds", "1"))
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx.cancelled.wait(min(left, 0.2)):
            break
    return JobOutcome(counters={"slept_ms": int(seconds * 1000)})


@registry.register("fail", validate=_allowed("message", "fail_times"))  # type: ignore[arg-type]
def fail(parameters: str, ctx: JobContext) -> JobOutcome:
    """Fails its first `fail_times` attempts (all of them when not given), then succeeds."""
    params = parse_parameters(parameters)
    fail_times = int(params.get("fail_times", "1000000"))
    if ctx.attempt <= fail_times:
        raise RuntimeError(params.get("message", "job failed on purpose"))
    return JobOutcome(counters={"attempt": ctx.attempt})


@registry.register("idle", watches=_watch, validate=_allowed("watch", "work"))  # type: ignore[arg-type]
def idle(parameters: str, ctx: JobContext) -> JobOutcome:
    """Finds nothing to do (unless `work=yes`), so its entry sleeps with its inactivity timeout;
    a change to a data kind named in `watch` wakes it."""
    work = parse_parameters(parameters).get("work", "no") == "yes"
    return JobOutcome(activity=work, counters={"found": int(work)})


DEFAULT_LOG_DAYS = 7  # what Business Central offers


def _log_days(text: str) -> int:
    params = parse_parameters(text)
    unknown = sorted(set(params) - {"days"})
    if unknown:
        raise JobParameterError(f"unknown parameter {unknown[0]!r} (allowed: days)")
    value = params.get("days", str(DEFAULT_LOG_DAYS)).strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 36_500:
        raise JobParameterError(f"days must be a whole number from 1 to 36500, got {value!r}")
    return int(value)


@registry.register("log-cleanup", validate=_log_days)  # type: ignore[arg-type]
def log_cleanup(parameters: str, ctx: JobContext) -> JobOutcome:
    """Deletes job-queue log entries of runs that ended more than `days=N` days ago
    (default 7); reports activity only when it deleted some."""
    from domain.clock import utcnow
    from domain.queue.entries import delete_log_older_than

    with ctx.session_factory.begin() as session:
        deleted = delete_log_older_than(session, _log_days(parameters), utcnow())
    return JobOutcome(activity=deleted > 0, counters={"deleted": deleted})
