"""Issue 17, point 3: notifications. A job that fails three times sends exactly one
email (aiosmtpd, through the outbox's "Job Queue" scenario) and one signed webhook (a
local HTTP receiver checking the Standard Webhooks signature by hand); a notification
that cannot be delivered is logged and never fails or delays the run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from domain.notifications.rules import FAILED, SUCCEEDED, failure_due, notice_for
from domain.queue.status import EntryStatus
from runtime.secrets import SecretBox
from runtime.settings import Settings, SettingsError
from sandbox.smtp_server import SmtpServer
from tests.conftest import UNHURRIED_LEASE, wait_until
from tests.test_mail_dispatch import message_from_bytes, smtp_account

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes!!!!").decode()
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


# -- the rules -------------------------------------------------------------------------


@given(st.integers(1, 10), st.integers(0, 10))
def test_a_failure_streak_notifies_exactly_once(maximum: int, after: int) -> None:
    """Whatever the maximum attempts and the N of "after N failures", a streak of failed
    attempts up to the last one (the entry goes to Error) notifies once."""
    sent = [failure_due(attempt, after, attempt == maximum) for attempt in range(1, maximum + 1)]
    assert sent.count(True) == 1
    expected = min(after, maximum) if after else maximum
    assert sent.index(True) + 1 == expected


def entry(**changes: Any) -> SimpleNamespace:
    values = dict(id=7, code="NIGHTLY", description="", job_name="fail", run_seq=3,
                  attempts=1, maximum_attempts=3, user_id="ANNA", notify_on_failure=True,
                  notify_after_failures=0, notify_on_success=False,
                  notify_recipients="user")  # fmt: skip
    return SimpleNamespace(**values | changes)


def test_success_notifies_only_when_asked_and_failure_can_be_switched_off() -> None:
    assert notice_for(entry(), True, "Finished", None, NOW) is None
    notice = notice_for(entry(notify_on_success=True), True, "Finished", None, NOW)
    assert notice is not None and notice.type == SUCCEEDED and notice.error is None
    failed = notice_for(entry(attempts=3), False, "Error", "boom", NOW)
    assert failed is not None and failed.type == FAILED and failed.run_id == "7:3"
    assert notice_for(entry(attempts=3, notify_on_failure=False), False, "Error", "x", NOW) is None


# -- the settings ----------------------------------------------------------------------


def test_webhooks_need_a_secret_and_neither_shows_in_a_repr() -> None:
    with pytest.raises(SettingsError, match="JOBQUEUE_WEBHOOK_SECRET is needed"):
        Settings.from_env({"JOBQUEUE_WEBHOOK_URLS": "https://hooks.example.com/x"})
    with pytest.raises(SettingsError, match="JOBQUEUE_WEBHOOK_URLS: 'ftp://x' is not"):
        Settings.from_env({"JOBQUEUE_WEBHOOK_URLS": "ftp://x", "JOBQUEUE_WEBHOOK_SECRET": SECRET})
    with pytest.raises(SettingsError, match="at least 16 bytes"):
        Settings.from_env({"JOBQUEUE_WEBHOOK_SECRET": "whsec_c2hvcnQ="})
    settings = Settings.from_env(
        {
            "JOBQUEUE_WEBHOOK_URLS": "https://flow.example.com/t?sig=SIGNATURE",
            "JOBQUEUE_WEBHOOK_SECRET": SECRET,
            "JOBQUEUE_SECRET_KEY": "KEYMATERIAL",
        }
    )
    shown = repr(settings)
    assert "SIGNATURE" not in shown and SECRET not in shown and "KEYMATERIAL" not in shown


# -- a local webhook receiver ----------------------------------------------------------


class Receiver:
    """Takes POSTs, answering `failures` of them 503 first; keeps what it was sent."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if owner.refused < owner.failures:
                    owner.refused += 1
                    self.send_response(503)
                else:
                    owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/jobqueue?sig=S3CRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=1)
    yield r
    r.close()


def verify(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The Standard Webhooks check, by hand (the spec, not our signing code):
    https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    signature = base64(HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}"))."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(s.split(",", 1) for s in headers["webhook-signature"].split())
    assert hmac.compare_digest(versions["v1"], expected)
    assert headers["content-type"] == "application/json"
    return dict(json.loads(body))


# -- end to end ------------------------------------------------------------------------


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


def notices(sessions: Any) -> int:
    """Notices waiting in the outbox."""
    from domain.mail.models import OutboxMessage

    with sessions() as session:
        counted = select(func.count()).where(OutboxMessage.scenario == "Job Queue")
        return int(session.execute(counted).scalar_one())


def test_three_failures_send_one_email_and_one_signed_webhook(
    settings: Settings, smtp: SmtpServer, receiver: Receiver, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: Any,
) -> None:  # fmt: skip
    from admin.processes import EmbeddedSystem
    from domain.clock import utcnow
    from domain.queue import entries as ops
    from domain.users.accounts import add_user
    from domain.users.models import Role
    from jobs.registry import registry
    from tests.helpers import entry as stored
    from tests.helpers import finished_logs

    key = Fernet.generate_key()
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", key.decode())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "smtp.crt"))
    hooked = replace(settings, webhook_urls=(receiver.url,), webhook_secret=SECRET,
                     lease_seconds=UNHURRIED_LEASE)  # fmt: skip
    with EmbeddedSystem(hooked, threads=2, migrate=False) as system:
        sessions = system.app.session_factory
        with sessions.begin() as session:
            smtp_account(session, SecretBox(key), smtp, "General", "office@cronus.com")
            add_user(session, "ANNA", Role.OPERATOR, "a long password", utcnow(),
                     email="anna@cronus.com")  # fmt: skip
            add_user(session, "BOSS", Role.ADMIN, "a long password", utcnow(),
                     email="boss@cronus.com")  # fmt: skip
            ops.add_entry(session, "FLAKY", "fail",
                          {"maximum_attempts": 3, "rerun_delay_seconds": 0, "user_id": "ANNA",
                           "description": "nightly import"},
                          registry, utcnow(), settings.tz)  # fmt: skip
        wait_until(lambda: stored(sessions, "FLAKY").status == EntryStatus.ERROR, timeout=30)
        assert len(finished_logs(sessions, "FLAKY")) == 3
        wait_until(lambda: receiver.refused, timeout=30)
        wait_until(lambda: receiver.received, timeout=30)  # the first POST was refused: retried
        # The outbox entry starts once the notice is queued: had it run before, its next
        # run would be a minute away (only sleeping entries wake on a queued email).
        wait_until(lambda: notices(sessions) == 1, timeout=30)
        with sessions.begin() as session:
            ops.add_entry(session, "EMAIL-OUTBOX", "email-dispatch",
                          {"recurring": True, "minutes_between_runs": 1,
                           "inactivity_timeout_minutes": 60, "parameter_string": "max_seconds=5"},
                          registry, utcnow(), settings.tz)  # fmt: skip
        wait_until(lambda: smtp.handler.accepted, timeout=30)
        wait_until(lambda: notices(sessions) == 0, timeout=30)  # sent, and recorded so
        system.app.broker.join(hooked.queue_name, timeout=10_000)  # no webhook left to retry

    [(headers, body)] = receiver.received
    assert receiver.refused == 1
    event = verify(headers, body)
    assert event["type"] == "jobqueue.entry.failed"
    assert event["data"]["code"] == "FLAKY" and event["data"]["status"] == "Error"
    assert event["data"]["attempts"] == 3 and "fail" in event["data"]["error"]
    [mail] = smtp.handler.accepted
    assert mail.rcpt_tos == ["anna@cronus.com"]  # her entry; the admins were not asked for
    message = message_from_bytes(mail.content)
    assert message["Subject"] == "Job queue entry FLAKY failed (3 of 3 attempts)"
    assert "nightly import" in message.get_content()
    assert "S3CRET" not in capsys.readouterr().out  # the URL's signature stays out of logs


def test_no_log_line_shows_a_webhook_url_query_even_at_info(
    settings: Settings, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.notifications import webhooks
    from runtime.logs import configure_logging

    configure_logging("INFO", process="tests")
    up = Receiver()
    try:
        hooked = replace(settings, webhook_urls=(up.url,), webhook_secret=SECRET)
        assert webhooks.deliver(hooked, lambda *a, **k: None, up.url, "msg_1", "{}", 1)
    finally:
        up.close()
        configure_logging("WARNING", process="tests")
    out = capsys.readouterr().out
    assert "notification.webhook_delivered" in out and "S3CRET" not in out


def test_an_undeliverable_notification_is_logged_and_the_run_goes_on(
    settings: Settings, engine: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No email account at all and a webhook that always answers 503: the run is
    recorded as usual, the email says why it was not queued, and after its last attempt
    the webhook is one warning."""
    from dramatiq import Message
    from dramatiq.brokers.stub import StubBroker

    from domain.clock import utcnow
    from domain.users.accounts import add_user
    from domain.users.models import Role
    from jobs.notifications import webhooks
    from scheduler.dispatcher import Dispatcher
    from tests.helpers import add, finished_logs
    from tests.helpers import entry as stored
    from workers.app import create_app

    down = Receiver(failures=100)
    monkeypatch.setattr(webhooks, "ATTEMPTS", 2)
    hooked = replace(settings, webhook_urls=(down.url,), webhook_secret=SECRET)
    broker = StubBroker(middleware=[])
    app = create_app(hooked, broker=broker, engine=engine)
    with app.session_factory.begin() as session:
        add_user(session, "ANNA", Role.ADMIN, "a long password", utcnow(), email="a@cronus.com")
    add(app.session_factory, hooked, "BROKEN", "fail", maximum_attempts=1, user_id="ANNA")
    Dispatcher(engine, broker, hooked).tick(utcnow())
    queue = broker.queues[hooked.queue_name]
    app.executor.execute(*Message.decode(queue.get_nowait()).args)
    assert stored(app.session_factory, "BROKEN").status == EntryStatus.ERROR
    assert len(finished_logs(app.session_factory, "BROKEN")) == 1
    try:
        for attempt in (1, 2):  # the webhook's two attempts, run by hand
            raw = (
                queue.get_nowait()
                if attempt == 1
                else broker.queues[f"{hooked.queue_name}.DQ"].get_nowait()
            )
            url, msg_id, body, number = Message.decode(raw).args
            assert number == attempt
            assert not webhooks.deliver(hooked, broker.enqueue, url, msg_id, body, number)
    finally:
        down.close()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    events = [line["event"] for line in lines]
    assert "notification.email_failed" in events
    [gone] = [line for line in lines if line["event"] == "notification.webhook_undeliverable"]
    assert gone["level"] == "warning" and gone["attempts"] == 2 and "503" in gone["error"]
    assert all("S3CRET" not in json.dumps(line) for line in lines)


def test_the_command_line_sets_notifications_and_refuses_bad_values_with_exit_2(
    settings: Settings, sessions: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from tests.helpers import add, cli_runner
    from tests.helpers import entry as stored

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    run = cli_runner(capsys)
    add(sessions, settings, "NIGHTLY", "noop")
    code, _out, err = run("entries", "set", "NIGHTLY", "--notify-after-failures", "2",
                          "--notify-on-success", "--notify", "user+admins")  # fmt: skip
    assert code == 0, err
    e = stored(sessions, "NIGHTLY")
    assert (e.notify_after_failures, e.notify_on_success, e.notify_recipients) == (
        2, True, "user+admins")  # fmt: skip
    code, out, _err = run("entries", "show", "NIGHTLY")
    assert "on failure after 2 in a row, on success; to user and admins" in out
    for bad, words in ((["--notify-after-failures", "11"], "over the maximum of 10"),
                       (["--notify", "everyone"], "invalid choice")):  # fmt: skip
        code, _out, err = run("entries", "set", "NIGHTLY", *bad)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert stored(sessions, "NIGHTLY").notify_after_failures == 2  # nothing changed
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    code, _out, err = run("users", "add", "ANNA", "--role", "viewer", "--password-stdin",
                          "--email", "not an address")  # fmt: skip
    assert code == 2 and err.count("email:") == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    code, _out, err = run("users", "add", "ANNA", "--role", "viewer", "--password-stdin",
                          "--email", "anna@cronus.com")  # fmt: skip
    assert code == 0, err
    code, out, _err = run("users", "email", "ANNA", "none")
    assert code == 0 and "nobody" in out


def test_a_run_lost_with_its_worker_notifies_when_the_scheduler_recovers_it(
    settings: Settings, engine: Any
) -> None:
    from datetime import timedelta

    from dramatiq import Message
    from dramatiq.brokers.stub import StubBroker

    from domain.clock import utcnow
    from domain.db import make_session_factory
    from domain.queue.runs import claim_run
    from jobs.notifications.webhooks import ACTOR_NAME
    from scheduler.dispatcher import Dispatcher
    from tests.helpers import add

    hooked = replace(settings, webhook_urls=("https://hooks.example.com/x",),
                     webhook_secret=SECRET)  # fmt: skip
    broker = StubBroker(middleware=[])
    broker.declare_queue(hooked.queue_name)
    add(make_session_factory(engine), hooked, "LOST", "noop", maximum_attempts=1)
    dispatcher = Dispatcher(engine, broker, hooked)
    dispatcher.tick(utcnow())
    queue = broker.queues[hooked.queue_name]
    entry_id, run_seq = Message.decode(queue.get_nowait()).args
    with engine.begin() as conn:  # a worker starts it, then dies
        assert claim_run(conn, entry_id, run_seq, "gone-worker", 0.01, utcnow())
    dispatcher.tick(utcnow() + timedelta(seconds=5))
    [sent] = [Message.decode(raw) for raw in list(queue.queue)]
    assert sent.actor_name == ACTOR_NAME
    event = json.loads(sent.args[2])
    assert event["type"] == "jobqueue.entry.failed" and event["data"]["status"] == "Error"
    assert "lost" in event["data"]["error"]
