"""Outbound email end to end against a real SMTP server (aiosmtpd, STARTTLS + AUTH),
on SQLite and on PostgreSQL: routing, the shared per-minute limit, a server that drops
the connection mid-send, a worker that dies mid-send, and compose-time refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes as _parse
from email import policy
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from domain.mail.kinds import Connector, OutboxStatus, SecureConnection, SmtpAuthentication
from domain.mail.models import OutboxMessage, SentEmail
from domain.mail.rate import busiest_window
from domain.mail.rules import MailRuleError
from jobs.mail import accounts
from jobs.mail.compose import Attachment, compose, retry
from jobs.mail.connectors import connector_factory
from jobs.mail.dispatch import MailDispatcher
from runtime.secrets import Secret, SecretBox
from sandbox.smtp_server import PASSWORD, USER, SmtpServer


def message_from_bytes(data: bytes):  # type: ignore[no-untyped-def]
    return _parse(data, policy=policy.default)


T0 = datetime(2026, 11, 23, 9, 15, 5, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


@pytest.fixture
def secrets() -> SecretBox:
    return SecretBox(Fernet.generate_key())


def smtp_account(
    session: Session, secrets: SecretBox, smtp: SmtpServer, name: str, address: str, limit: int = 0
) -> None:
    accounts.add_account(
        session,
        name,
        address,
        Connector.SMTP,
        rate_limit=limit,
        smtp=accounts.SmtpOptions(
            server="127.0.0.1",
            port=smtp.port,
            secure_connection=SecureConnection.STARTTLS,
            authentication=SmtpAuthentication.BASIC,
            user_name=USER,
            password=Secret(PASSWORD),
        ),
        secrets=secrets,
    )


def dispatcher(
    engine: Engine, secrets: SecretBox, smtp: SmtpServer, clock: Clock
) -> MailDispatcher:
    factory = connector_factory(engine, secrets, ssl_context=smtp.client_tls)
    return MailDispatcher(engine, factory, clock=clock, sleep=clock.sleep, backoff_seconds=0)


def send(
    sessions: sessionmaker[Session],
    scenario: str,
    to: str = "customer@fabrikam.com",
    **extra: object,
) -> str:
    with sessions.begin() as session:
        return compose(
            session,
            created_by="ann",
            scenario=scenario,
            to=to,
            subject=f"{scenario}",
            body="Please find attached.",
            now=T0,
            **extra,
        ).id  # type: ignore[arg-type]


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_scenarios_route_to_their_account_and_the_rest_to_the_default(
    sessions, engine, secrets, smtp
) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
        smtp_account(session, secrets, smtp, "Sales", "sales@cronus.com")
        accounts.assign_scenario(session, "Sales Invoice", "Sales")
        accounts.add_default_attachment(
            session, "Sales Invoice", "terms.pdf", b"%PDF terms", "application/pdf"
        )
    send(sessions, "Sales Invoice", to="Buyer <buyer@fabrikam.com>", bcc="audit@cronus.com")
    send(sessions, "Purchase Order", to="vendor@contoso.com")
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)
    assert counters.sent == 2 and counters.failed == 0
    by_from = {r.mail_from: r for r in smtp.handler.accepted}
    assert set(by_from) == {"sales@cronus.com", "office@cronus.com"}
    invoice = by_from["sales@cronus.com"]
    assert invoice.rcpt_tos == ["buyer@fabrikam.com", "audit@cronus.com"]
    mime = message_from_bytes(invoice.content)
    assert "audit@cronus.com" not in str(mime)  # Bcc only in the envelope
    assert [p.get_filename() for p in mime.iter_attachments()] == ["terms.pdf"]
    assert count(sessions, OutboxMessage) == 0 and count(sessions, SentEmail) == 2


def test_the_rate_limit_holds_across_two_workers(sessions, engine, secrets, smtp) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "Limited", "bulk@cronus.com", limit=5)
    for _ in range(12):
        send(sessions, "Notification")
    clock = Clock(T0)
    for minute in range(3):
        workers = [dispatcher(engine, secrets, smtp, clock) for _ in range(2)]
        threads = [
            threading.Thread(target=w.run, kwargs={"max_seconds": 30, "wait_for_window": False})
            for w in workers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(smtp.handler.accepted) == min(12, 5 * (minute + 1))
        clock.sleep(61)  # the window is a rolling 61 s (see domain.mail.rate)
    with sessions() as session:
        moments = session.execute(select(SentEmail.sent_at)).scalars().all()
    assert len(moments) == 12 and busiest_window(list(moments)) == 5
    ids = [message_from_bytes(r.content)["Message-ID"] for r in smtp.handler.accepted]
    assert len(set(ids)) == 12  # each message delivered exactly once


def test_waiting_for_the_next_window_keeps_close_to_the_limit(
    sessions, engine, secrets, smtp
) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "Limited", "bulk@cronus.com", limit=4)
    for _ in range(10):
        send(sessions, "Notification")
    clock = Clock(T0)
    counters = dispatcher(engine, secrets, smtp, clock).run(max_seconds=600)
    assert counters.sent == 10
    assert clock() < T0 + timedelta(minutes=3)  # 4 + 4 + 2, a window (61 s) apart


def test_a_server_that_drops_the_connection_mid_send_loses_nothing_and_sends_once(
    sessions, engine, secrets, smtp
) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
    outbox_id = send(sessions, "Notification")
    smtp.handler.drop_next = 1
    clock = Clock(T0)
    counters = dispatcher(engine, secrets, smtp, clock).run(max_seconds=5)
    assert counters.retried == 1 and counters.sent == 1
    assert len(smtp.handler.accepted) == 1
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        assert sent is not None
        assert session.get(OutboxMessage, outbox_id) is None


def test_a_worker_that_died_mid_send_is_not_sent_again_blindly(
    sessions, engine, secrets, smtp
) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
    outbox_id = send(sessions, "Notification")
    with sessions.begin() as session:  # the worker recorded its attempt ... and died
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id)
            .values(status=OutboxStatus.PROCESSING, send_started_at=T0, attempts=1)
        )
    clock = Clock(T0 + timedelta(minutes=11))
    counters = dispatcher(engine, secrets, smtp, clock).run(max_seconds=5)
    assert counters.reconciled == 1 and counters.sent == 0 and smtp.handler.accepted == []
    with sessions() as session:
        message = session.get(OutboxMessage, outbox_id)
        assert message is not None and message.status == OutboxStatus.FAILED
        assert "delivery uncertain" in (message.last_error or "")
    with sessions.begin() as session:  # the admin checked, and retries
        retry(session, outbox_id, clock())
    assert dispatcher(engine, secrets, smtp, clock).run(max_seconds=5).sent == 1
    assert len(smtp.handler.accepted) == 1


def test_a_refused_login_fails_the_message_with_a_clear_reason_and_no_secret_in_logs(
    sessions, engine, secrets, smtp, capsys
) -> None:
    from runtime.logs import configure_logging

    configure_logging("INFO", process="test")
    with sessions.begin() as session:
        accounts.add_account(
            session,
            "Wrong",
            "office@cronus.com",
            Connector.SMTP,
            smtp=accounts.SmtpOptions(
                server="127.0.0.1",
                port=smtp.port,
                user_name=USER,
                password=Secret("not-the-password"),
            ),
            secrets=secrets,
        )
    outbox_id = send(sessions, "Notification")
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)
    configure_logging("WARNING", process="tests")
    assert counters.failed == 1
    with sessions() as session:
        message = session.get(OutboxMessage, outbox_id)
        assert message is not None and message.status == OutboxStatus.FAILED
        assert "authentication failed" in (message.last_error or "")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"smtp.connection_succeeded", "smtp.authentication_failed", "email.failed"} <= events
    assert "not-the-password" not in json.dumps(lines)


def test_compose_refuses_bad_addresses_and_oversized_attachments_and_keeps_nothing(
    sessions, secrets, smtp
) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
    with (
        pytest.raises(MailRuleError, match="not an email address: 'customer@'"),
        sessions.begin() as session,
    ):
        compose(
            session,
            created_by="ann",
            scenario="Notification",
            to="ok@x.com; customer@",
            subject="s",
            body="b",
            now=T0,
        )
    big = Attachment("archive.zip", b"\0" * (101 * 1024 * 1024))
    with pytest.raises(MailRuleError, match="over the 100 MB limit"), sessions.begin() as session:
        compose(
            session,
            created_by="ann",
            scenario="Notification",
            to="ok@x.com",
            subject="s",
            body="b",
            now=T0,
            attachments=[big],
        )
    assert count(sessions, OutboxMessage) == 0


def test_without_any_account_compose_says_to_set_a_default(sessions) -> None:
    with (
        pytest.raises(MailRuleError, match="set a default email account"),
        sessions.begin() as session,
    ):
        compose(
            session,
            created_by="ann",
            scenario="Notification",
            to="ok@x.com",
            subject="s",
            body="b",
            now=T0,
        )


def test_exactly_one_default_account(sessions, secrets, smtp) -> None:
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "A", "a@cronus.com")
        smtp_account(session, secrets, smtp, "B", "b@cronus.com")
        accounts.set_default(session, "B")
    with sessions() as session:
        defaults = (
            session.execute(
                select(accounts.EmailAccount.name).where(accounts.EmailAccount.is_default)
            )
            .scalars()
            .all()
        )
    assert defaults == ["B"]
    with pytest.raises(MailRuleError, match="default account"), sessions.begin() as session:
        accounts.delete_account(session, "B")


def test_sent_emails_are_filtered_by_the_viewers_policy(sessions, engine, secrets, smtp) -> None:
    from domain.mail.kinds import ViewPolicy
    from domain.mail.rules import RelatedRecord
    from jobs.mail.views import visible_sent_emails

    invoice, customer = (
        RelatedRecord("Sales Invoice Header", "103001"),
        RelatedRecord("Customer", "10000"),
    )
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
    send(sessions, "Sales Invoice", related=[invoice, customer])  # sent by ann
    dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)
    grants = {"bob": {invoice}, "carol": {invoice, customer}}

    def access(user: str, record: RelatedRecord) -> bool:
        return record in grants.get(user, set())

    def sees(user: str) -> bool:
        with sessions() as session:
            return bool(visible_sent_emails(session, user, access))

    assert sees("ann")  # her own
    assert not sees("bob") and sees("carol")  # default: access to all related records
    with sessions.begin() as session:
        accounts.set_view_policy(session, "", ViewPolicy.ANY_RELATED)  # every user
    assert sees("bob") and not sees("dave")
    with sessions.begin() as session:
        accounts.set_view_policy(session, "carol", ViewPolicy.OWN)
    assert not sees("carol")


def test_the_email_dispatch_entry_sleeps_on_an_empty_outbox_and_wakes_on_compose(
    settings, secrets, smtp, tmp_path, monkeypatch
) -> None:
    """The job-queue way: an email-dispatch entry that finds the outbox empty sleeps with its
    inactivity timeout; composing a message wakes it at once and the message is sent."""
    from admin.processes import EmbeddedSystem
    from domain.clock import utcnow
    from domain.queue import entries as ops
    from domain.queue.status import EntryStatus
    from jobs.registry import registry
    from tests.conftest import wait_until
    from tests.helpers import entry, finished_logs

    key = Fernet.generate_key()
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", key.decode())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "smtp.crt"))
    box = SecretBox(key)
    with EmbeddedSystem(settings, threads=2, migrate=False) as system:
        sessions = system.app.session_factory
        with sessions.begin() as session:
            smtp_account(session, box, smtp, "General", "office@cronus.com")
            ops.add_entry(
                session,
                "EMAIL-OUTBOX",
                "email-dispatch",
                {
                    "recurring": True,
                    "minutes_between_runs": 1,
                    "inactivity_timeout_minutes": 60,
                    "parameter_string": "max_seconds=5",
                },
                registry,
                utcnow(),
                settings.tz,
            )
        wait_until(
            lambda: entry(sessions, "EMAIL-OUTBOX").status == EntryStatus.ON_HOLD_INACTIVITY,
            timeout=20,
        )
        with sessions.begin() as session:
            compose(
                session,
                created_by="ann",
                scenario="Notification",
                to="a@fabrikam.com",
                subject="one",
                body="b",
                now=utcnow(),
                tz=settings.tz,
            )
        wait_until(lambda: len(smtp.handler.accepted) == 1, timeout=20)
        wait_until(lambda: len(finished_logs(sessions, "EMAIL-OUTBOX")) == 2, timeout=20)
        # It sent, so it keeps its one-minute cadence instead of sleeping.
        assert entry(sessions, "EMAIL-OUTBOX").status == EntryStatus.READY


def test_a_message_waiting_for_its_retry_counts_as_work_left(
    sessions, engine, secrets, smtp
) -> None:
    """The dispatch job reports activity while a retry is pending, so its entry keeps its
    cadence instead of sleeping through the retry."""
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "General", "office@cronus.com")
    send(sessions, "Notification")
    smtp.handler.drop_next = 1
    first = dispatcher(engine, secrets, smtp, Clock(T0))
    first.backoff_seconds = 60
    counters = first.run(max_seconds=5)
    assert counters.sent == 0 and counters.retried == 1
    assert counters.waiting == 1
    later = dispatcher(engine, secrets, smtp, Clock(T0 + timedelta(minutes=2))).run(max_seconds=5)
    assert later.sent == 1 and later.waiting == 0
