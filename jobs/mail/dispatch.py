"""The outbox dispatcher: the work of the `email-dispatch` job-queue entry.

Per message: one transaction claims it (SKIP LOCKED, so workers on several machines
share the outbox), takes a slot of its account's limit (a rolling 60 s window,
`domain.mail.rate`), and records the
send attempt (send_started_at, attempts + 1) before anything is handed to the
provider. A second transaction records the outcome: Sent, retried later with backoff,
or Failed. A message found Processing long after its attempt started was being sent
when a worker died: the provider may have it, so it is not sent again blindly but
marked Failed with that reason for an admin to check and retry. Nothing is lost
silently and nothing is sent twice automatically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from domain.clock import utcnow
from domain.mail.kinds import OutboxStatus
from domain.mail.models import ACCOUNTS as A
from domain.mail.models import OUTBOX as O
from domain.mail.models import OUTBOX_ATTACHMENTS, SENT, SUBSTITUTE
from domain.mail.rate import Slot, handed_over, take_slot
from domain.mail.rules import sender_address
from jobs.mail.errors import Delivery, PermanentSendError, SendError, TransientSendError
from jobs.mail.mime import build_mime, envelope_recipients
from runtime.logs import get_logger

log = get_logger("mail.dispatch")
UNCERTAIN = (
    "delivery uncertain: the worker stopped while handing the message to the provider; "
    "check the recipient's mailbox or Sent Items before retrying"
)


class MailConnector(Protocol):
    def send(self, mime: EmailMessage, sender: str, recipients: list[str]) -> Delivery | None: ...


ConnectorFactory = Callable[[Any], MailConnector]  # account row -> connector


@dataclass
class DispatchCounters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    reconciled: int = 0
    waiting: int = 0  # still queued when the run ended (retry backoff, later send time)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Claim:
    message: Any
    account: Any
    slot: Slot


@dataclass
class _Limited:
    """The account's window is full: its messages wait until a slot frees."""

    account_id: int
    window: datetime


_SKIPPED = object()  # a message failed while claiming it; go on with the next


@dataclass
class MailDispatcher:
    engine: Engine
    connector_for: ConnectorFactory
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    stale_after: timedelta = timedelta(minutes=10)
    backoff_seconds: float = 30.0
    _connectors: dict[int, MailConnector] = field(default_factory=dict)

    def run(
        self,
        *,
        max_seconds: float = 50.0,
        max_messages: int | None = None,
        wait_for_window: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
        only: str | None = None,
    ) -> DispatchCounters:
        try:
            return self._run(max_seconds, max_messages, wait_for_window, cancelled, only)
        finally:
            for connector in self._connectors.values():
                close = getattr(connector, "close", None)
                if close is not None:
                    close()
            self._connectors.clear()

    def _run(
        self,
        max_seconds: float,
        max_messages: int | None,
        wait_for_window: bool,
        cancelled: Callable[[], bool],
        only: str | None,
    ) -> DispatchCounters:
        counters = DispatchCounters(reconciled=self.reconcile())
        started = self.clock()
        deadline = started + timedelta(seconds=max_seconds)
        limited: dict[int, datetime] = {}
        handled = 0
        while not cancelled() and self.clock() < deadline:
            if max_messages is not None and handled >= max_messages:
                break
            now = self.clock()
            limited = {a: w for a, w in limited.items() if w > now}
            claim = self._claim(now, limited, counters, only)
            if claim is None:
                if limited and wait_for_window:
                    wake_at = min(min(limited.values()), deadline)
                    self.sleep(max(0.0, (wake_at - self.clock()).total_seconds()))
                    continue
                break
            if isinstance(claim, _Limited):
                limited[claim.account_id] = claim.window
                continue
            if not isinstance(claim, _Claim):
                continue
            handled += 1
            self._send(claim, counters)
        counters.waiting = self.queued()
        return counters

    def queued(self) -> int:
        """Messages still waiting to be sent, now or later."""
        with self.engine.connect() as conn:
            stmt = select(func.count()).select_from(O).where(O.c.status == OutboxStatus.QUEUED)
            return int(conn.execute(stmt).scalar_one())

    def reconcile(self) -> int:
        cutoff = self.clock() - self.stale_after
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(O)
                .where(O.c.status == OutboxStatus.PROCESSING, O.c.send_started_at < cutoff)
                .values(status=OutboxStatus.FAILED, last_error=UNCERTAIN)
                .returning(O.c.id, O.c.message_id, O.c.account_id, O.c.scenario)
            ).all()
        for row in rows:
            log.warning(
                "email.failed",
                outbox_id=row.id,
                message_id=row.message_id,
                account_id=row.account_id,
                scenario=row.scenario,
                reason=UNCERTAIN,
            )
        return len(rows)

    def _claim(
        self,
        now: datetime,
        limited: dict[int, datetime],
        counters: DispatchCounters,
        only: str | None = None,
    ) -> _Claim | _Limited | object | None:
        with self.engine.begin() as conn:
            stmt = (
                select(O)
                .where(O.c.status == OutboxStatus.QUEUED, O.c.send_after <= now)
                .order_by(O.c.send_after, O.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if limited:
                stmt = stmt.where(O.c.account_id.not_in(list(limited)))
            if only is not None:
                stmt = stmt.where(O.c.id == only)
            message = conn.execute(stmt).one_or_none()
            if message is None:
                return None
            account = conn.execute(select(A).where(A.c.id == message.account_id)).one_or_none()
            if account is None:
                self._fail(conn, message, "its email account was deleted", now)
                counters.failed += 1
                return _SKIPPED
            recipients = len(envelope_recipients(message))  # type: ignore[arg-type]
            day_limit = account.max_recipients_per_day
            if 0 < day_limit < recipients:
                reason = (
                    f"{recipients} recipients; the account {account.name!r} may send to at "
                    f"most {day_limit} a day"
                )
                self._fail(conn, message, reason, now)
                counters.failed += 1
                return _SKIPPED
            slot = take_slot(
                conn,
                account.id,
                account.rate_limit_per_minute,
                now,
                recipients=recipients,
                day_limit=day_limit,
            )
            if slot.free_at is not None:
                conn.execute(update(O).where(O.c.id == message.id).values(send_after=slot.free_at))
                counters.rate_limited += 1
                return _Limited(account.id, slot.free_at)
            conn.execute(
                update(O)
                .where(O.c.id == message.id)
                .values(
                    status=OutboxStatus.PROCESSING,
                    send_started_at=now,
                    attempts=O.c.attempts + 1,
                )
            )
            return _Claim(message=message, account=account, slot=slot)

    def _send(self, claim: _Claim, counters: DispatchCounters) -> None:
        message, account = claim.message, claim.account
        with self.engine.connect() as conn:
            attachments = list(
                conn.execute(
                    select(OUTBOX_ATTACHMENTS).where(OUTBOX_ATTACHMENTS.c.outbox_id == message.id)
                ).all()
            )
            substitute = conn.execute(select(SUBSTITUTE)).one_or_none()
        send_as = substitute.send_as if substitute and substitute.account_id == account.id else None
        sender = sender_address(account.address, send_as)
        now = self.clock()
        fields = {
            "outbox_id": message.id,
            "message_id": message.message_id,
            "account": account.name,
            "scenario": message.scenario,
        }
        try:
            mime = build_mime(message, attachments, sender, now)  # type: ignore[arg-type]
            size = len(mime.as_bytes())
        except Exception as exc:  # nothing was handed over: this message fails, alone
            reason = f"the message could not be built: {type(exc).__name__}: {exc}"
            self._after_failure(message, PermanentSendError(reason), counters, fields)
            return
        recipients = envelope_recipients(message)
        try:
            connector = self._connectors.get(account.id) or self.connector_for(account)
            self._connectors[account.id] = connector
            delivery = connector.send(mime, sender, recipients) or Delivery()
        except SendError as exc:
            self._after_failure(message, exc, counters, fields)
            return
        except Exception as exc:  # a fault of ours: this message fails, the outbox goes on
            reason = f"the send failed unexpectedly: {type(exc).__name__}: {exc}"
            log.exception("email.send_crashed", **fields)
            self._after_failure(message, PermanentSendError(reason), counters, fields)
            return
        refused, later = delivery.permanent(), delivery.temporary()
        if len(refused) + len(later) >= len(recipients):  # nobody has it
            why = "; ".join(f"{a}: {r}" for a, r in delivery.refused.items())
            error: SendError = (
                TransientSendError(f"recipients refused for now: {why}")
                if later
                else PermanentSendError(f"recipients refused: {why}")
            )
            self._after_failure(message, error, counters, fields, only=list(later))
            return
        with self.engine.begin() as conn:
            handed_over(conn, claim.slot, self.clock())
            self._record_sent(conn, message, account, sender, size, now, delivery)
            if later:  # the rest waits for its retry, to those recipients only
                delay = self._backoff(message.attempts + 1, None)
                pending = f"recipients refused for now: {later}"
                self._retry_later(conn, message, pending, now, delay, list(later))
            else:
                conn.execute(delete(O).where(O.c.id == message.id))
        if later:
            counters.retried += 1
        else:
            counters.sent += 1
        # An email some recipients refused, or that may have arrived twice, is a warning.
        notable = bool(delivery.refused) or bool(message.possibly_delivered)
        (log.warning if notable else log.info)(
            "email.sent",
            attempt=message.attempts + 1,
            recipients=len(recipients) - len(delivery.refused),
            refused=delivery.refused,
            possible_duplicate=bool(message.possibly_delivered),
            **fields,
        )

    @staticmethod
    def _record_sent(
        conn: Connection,
        message: Any,
        account: Any,
        sender: str,
        size: int,
        now: datetime,
        delivery: Delivery,
    ) -> None:
        """The sent record, or (a retry to recipients refused for now) its update: those
        delivered to now leave its refusals, those refused again stay with the new reply."""
        if message.envelope_to:  # a retry to some recipients: its sent record exists
            before = conn.execute(
                select(SENT.c.refused_recipients).where(SENT.c.id == message.id)
            ).scalar_one()
            delivered = set(envelope_recipients(message)) - set(delivery.refused)
            refused = {a: r for a, r in before.items() if a not in delivered} | delivery.refused
            conn.execute(
                update(SENT)
                .where(SENT.c.id == message.id)
                .values(
                    refused_recipients=refused,
                    possible_duplicate=SENT.c.possible_duplicate | bool(message.possibly_delivered),
                )
            )
            return
        conn.execute(
            insert(SENT).values(
                id=message.id,
                message_id=message.message_id,
                account_id=account.id,
                account_name=account.name,
                scenario=message.scenario,
                created_by=message.created_by,
                sender=sender,
                subject=message.subject,
                to_addresses=message.to_addresses,
                cc_addresses=message.cc_addresses,
                bcc_addresses=message.bcc_addresses,
                size=size,
                sent_at=now,
                refused_recipients=delivery.refused,
                possible_duplicate=bool(message.possibly_delivered),
            )
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return float(max(retry_after or 0.0, self.backoff_seconds * 2 ** (attempt - 1)))

    @staticmethod
    def _retry_later(
        conn: Connection,
        message: Any,
        error: str,
        now: datetime,
        delay: float,
        only: list[str] | None = None,
        possibly_delivered: bool = False,
    ) -> None:
        values: dict[str, Any] = {
            "status": OutboxStatus.QUEUED,
            "send_after": now + timedelta(seconds=delay),
            "send_started_at": None,
            "last_error": error,
        }
        if only:
            values["envelope_to"] = only
        if possibly_delivered:
            values["possibly_delivered"] = True
        conn.execute(update(O).where(O.c.id == message.id).values(values))

    def _after_failure(
        self,
        message: Any,
        exc: SendError,
        counters: DispatchCounters,
        fields: dict[str, Any],
        only: list[str] | None = None,
    ) -> None:
        now = self.clock()
        attempt = message.attempts + 1
        retry = isinstance(exc, TransientSendError) and attempt < message.max_attempts
        uncertain = isinstance(exc, TransientSendError) and exc.uncertain
        with self.engine.begin() as conn:
            if retry:
                assert isinstance(exc, TransientSendError)
                delay = self._backoff(attempt, exc.retry_after)
                self._retry_later(conn, message, str(exc), now, delay, only, uncertain)
                counters.retried += 1
            else:
                self._fail(conn, message, str(exc), now)
                counters.failed += 1
        log.warning(
            "email.failed",
            attempt=attempt,
            will_retry=retry,
            error=str(exc),
            permanent=isinstance(exc, PermanentSendError),
            possibly_delivered=uncertain,
            **fields,
        )

    @staticmethod
    def _fail(conn: Connection, message: Any, reason: str, now: datetime) -> None:
        conn.execute(
            update(O)
            .where(O.c.id == message.id)
            .values(status=OutboxStatus.FAILED, last_error=reason, send_started_at=None)
        )
