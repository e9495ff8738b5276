"""Threads that run jobs, reused from run to run.

A job runs outside the actor's thread so that one overrunning its timeout can be
abandoned. Starting a thread per run costs more than the no-op job itself, so
finished threads wait for the next job. A thread whose job was abandoned is
interrupted (where Python allows) and never reused.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dramatiq.threading import raise_thread_exception


class JobTimeoutError(Exception):
    """Raised inside a job that overran its entry's job timeout."""


class HandedBackError(Exception):
    """Raised inside a job that the shutting-down worker handed back."""


class LeaseLostError(Exception):
    """Raised inside a job whose lease could not be renewed: it must not overlap a recovery."""


@dataclass
class JobHandle:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Any = None
    error: BaseException | None = None
    _thread: _JobThread | None = None

    def abandon(self, reason: type[Exception]) -> None:
        """Stop waiting for the job and interrupt it, unless it has just finished."""
        thread = self._thread
        if thread is None:
            return
        with thread.lock:
            if self.done.is_set():
                return
            thread.abandoned = True
            if thread.ident is not None:
                raise_thread_exception(thread.ident, reason)  # type: ignore[no-untyped-call]


class JobThreads:
    def __init__(self, name: str = "job") -> None:
        self.name = name
        self._idle: list[_JobThread] = []
        self._lock = threading.Lock()
        self._count = 0

    def start(self, fn: Callable[[], Any]) -> JobHandle:
        with self._lock:
            thread = self._idle.pop() if self._idle else None
            if thread is None:
                self._count += 1
                thread = _JobThread(self, f"{self.name}-{self._count}")
        handle = JobHandle(fn)
        handle._thread = thread
        thread.inbox.put(handle)
        return handle

    def _idle_again(self, thread: _JobThread) -> None:
        with self._lock:
            self._idle.append(thread)


class _JobThread(threading.Thread):
    def __init__(self, pool: JobThreads, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pool = pool
        self.inbox: queue.SimpleQueue[JobHandle] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.abandoned = False
        self.start()

    def run(self) -> None:
        try:
            while True:
                handle = self.inbox.get()
                try:
                    handle.outcome = handle.fn()
                except BaseException as exc:  # the job's failure is the run's result
                    handle.error = exc
                with self.lock:
                    handle.done.set()
                    if self.abandoned:
                        return
                self.pool._idle_again(self)
        except (JobTimeoutError, HandedBackError, LeaseLostError):
            return  # an interrupt that landed just after its job ended: this thread retires
