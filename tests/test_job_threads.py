"""Job threads are reused between runs; an abandoned one is interrupted and retired."""

from __future__ import annotations

import threading
import time

from workers.job_threads import JobThreads, JobTimeoutError


def test_a_finished_thread_runs_the_next_job() -> None:
    pool = JobThreads()
    first = pool.start(threading.current_thread)
    assert first.done.wait(2)
    time.sleep(0.05)  # it goes back to idle after signalling done
    second = pool.start(threading.current_thread)
    assert second.done.wait(2)
    assert first.outcome is second.outcome


def test_a_job_error_is_the_handles_error() -> None:
    def boom() -> None:
        raise ValueError("bad record")

    handle = JobThreads().start(boom)
    assert handle.done.wait(2)
    assert isinstance(handle.error, ValueError)


def test_an_abandoned_job_is_interrupted_and_its_thread_not_reused() -> None:
    pool = JobThreads()
    started = threading.Event()

    def spin() -> threading.Thread:
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pass  # pure Python: interruptible
        return threading.current_thread()

    stuck = pool.start(spin)
    assert started.wait(2)
    stuck.abandon(JobTimeoutError)
    assert stuck.done.wait(2), "the interrupt reached the job"
    assert isinstance(stuck.error, JobTimeoutError)
    later = pool.start(threading.current_thread)
    assert later.done.wait(2)
    assert later.outcome is not stuck._thread
