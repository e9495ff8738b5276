"""One scheduler tick: wake sleepers, recover lost runs, dispatch due entries.

The statements are `domain.queue.dispatch`'s; this module sends the messages
(one Redis pipeline per batch) and tells the story: one line per entry put in
Error by a step, one warning when the broker goes away (and backoff: no claims
while it is known to be down), one line when it is back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dramatiq import Broker
from sqlalchemy import Engine

from domain.db import make_session_factory
from domain.queue import dispatch, telemetry
from domain.queue.dispatch import Dispatched, Failed
from jobs.notifications.send import Notifier
from runtime.logs import get_logger
from runtime.outage import Outage
from runtime.settings import Settings
from workers.broker import enqueue_runs

log = get_logger("scheduler.dispatcher")


@dataclass
class TickReport:
    dispatched: int = 0
    resent: int = 0
    recovered: int = 0
    woken: int = 0
    expired: int = 0
    failed: int = 0  # entries put in Error because a step could not handle them
    send_failures: int = 0
    next_due: datetime | None = None
    dispatched_ids: list[int] = field(default_factory=list)


class Dispatcher:
    def __init__(self, engine: Engine, broker: Broker, settings: Settings) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        self.broker_outage = Outage("broker", logger=log)
        self.notifier = Notifier(make_session_factory(engine), broker.enqueue, settings)

    def tick(self, now: datetime) -> TickReport:
        """One pass. A probe (one statement) says which steps have work; an idle tick is
        that statement alone, whatever the number of entries."""
        report = TickReport()
        todo = dispatch.probe(self.engine, now, self.settings.dispatch_timeout_seconds)
        if todo.idle:
            report.next_due = todo.next_due
            return report
        if todo.sleepers:
            report.woken = self.wake_sleepers(now, report)
        if todo.lost:
            report.recovered = self.recover_lost_runs(now, report)
        if self.broker_outage.ready():
            if todo.undelivered:
                report.resent = self.resend_undelivered(now, report)
            # woken and recovered entries may be due now too
            while todo.due or todo.expired or report.woken or report.recovered:
                claimed = self.dispatch_due(now, report)
                if claimed < self.settings.dispatch_batch or report.send_failures:
                    break
        report.next_due = self.next_due(now)
        return report

    def next_due(self, now: datetime) -> datetime | None:
        """The next moment an entry becomes due, so the next tick can be exactly then."""
        return dispatch.next_due(self.engine, now)

    def wake_sleepers(self, now: datetime, report: TickReport | None = None) -> int:
        """Entries whose inactivity timeout has passed become Ready again."""
        woken, failed = dispatch.wake_sleepers(self.engine, now, self.settings.tz)
        self._failed(failed, report)
        if woken:
            log.info("entries.woken", codes=[w.code for w in woken], reason="inactivity timeout")
        return len(woken)

    def recover_lost_runs(self, now: datetime, report: TickReport | None = None) -> int:
        """A started run whose lease ran out lost its worker: log it failed, apply retry rules."""
        recovered, failed = dispatch.recover_lost_runs(self.engine, now, self.settings.tz)
        self._failed(failed, report)
        for run in recovered:
            log.warning(
                "run.recovered",
                entry_id=run.entry_id,
                entry_code=run.code,
                run_id=run.run_id,
                worker=run.worker,
                next_status=run.next_status,
            )
            if run.next_status is not None:
                error = "the run was lost with its worker and recovered as failed"
                self.notifier.after_run(run.entry, False, run.next_status.value, error)
        return len(recovered)

    def resend_undelivered(self, now: datetime, report: TickReport | None = None) -> int:
        """Dispatched but never started within the dispatch timeout: send the message again."""
        runs = dispatch.claim_undelivered(self.engine, now, self.settings.dispatch_timeout_seconds)
        if runs:
            log.warning("runs.resent", count=len(runs), codes=[r.code for r in runs[:20]])
            failures = self._send(runs)
            if report is not None:
                report.send_failures += failures
        return len(runs)

    def dispatch_due(self, now: datetime, report: TickReport) -> int:
        expired, claimed = dispatch.claim_due(self.engine, now, self.settings.dispatch_batch)
        report.expired += expired
        report.dispatched += len(claimed)
        report.dispatched_ids.extend(r.id for r in claimed)
        report.send_failures += self._send(claimed)
        return len(claimed)

    def _send(self, runs: Sequence[Dispatched]) -> int:
        """Send the runs' messages; if the broker fails, the unsent go back to Ready."""
        if not runs:
            return 0
        try:
            enqueue_runs(self.broker, self.settings, [(r.id, r.run_seq) for r in runs])
        except Exception as exc:
            self.broker_outage.failed(exc)
            dispatch.return_unsent(self.engine, runs)
            for run in runs:
                log.info("run.not_enqueued", **telemetry.dimensions("not_enqueued", run, "Ready"))
            return len(runs)
        self.broker_outage.succeeded()
        for run in runs:
            log.info("run.enqueued", **telemetry.dimensions("enqueued", run, "Ready"))
        return 0

    @staticmethod
    def _failed(failed: list[Failed], report: TickReport | None) -> None:
        for entry in failed:
            log.error(
                "entry.failed", entry_id=entry.entry_id, entry_code=entry.code, error=entry.reason
            )
        if report is not None:
            report.failed += len(failed)
