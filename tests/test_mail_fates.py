"""Every outbound message gets its own clear fate (issue 14): what cannot be built is
refused at compose naming the field, and whatever still fails at dispatch fails that
one message at once, with its true reason, while the rest of the outbox goes on."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from domain.mail.kinds import OutboxStatus
from domain.mail.models import OutboxAttachment, OutboxMessage, SentEmail
from domain.mail.rules import MailRuleError, check_header_text
from jobs.mail.compose import Attachment, compose
from jobs.mail.mime import build_mime
from runtime.secrets import SecretBox
from sandbox.smtp_server import SmtpServer
from tests.test_mail_dispatch import T0, Clock, count, dispatcher, secrets, smtp_account

__all__ = ["secrets"]  # the fixture, imported for these tests

LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


@pytest.fixture
def sales(sessions: sessionmaker[Session], secrets: SecretBox, smtp: SmtpServer) -> SmtpServer:
    """The Sales SMTP account (the default) on the sandbox server."""
    with sessions.begin() as session:
        smtp_account(session, secrets, smtp, "Sales", "sales@cronus.com")
    return smtp


def _compose(sessions: sessionmaker[Session], **changes: object) -> str:
    values: dict[str, object] = {
        "created_by": "ann",
        "scenario": "Sales Invoice",
        "to": "customer@fabrikam.com",
        "subject": "Invoice",
        "body": "Please find attached.",
        "now": T0,
    } | changes
    with sessions.begin() as session:
        return compose(session, **values).id  # type: ignore[arg-type]


@pytest.mark.parametrize("brk", LINE_BREAKS)
@pytest.mark.usefixtures("sales")
def test_compose_refuses_a_subject_with_any_line_break_naming_the_field(
    sessions: sessionmaker[Session], secrets: SecretBox, smtp: SmtpServer, brk: str
) -> None:
    with pytest.raises(MailRuleError, match="subject"):
        _compose(sessions, subject=f"Invoice{brk}Bcc: everyone@example.com")
    assert count(sessions, OutboxMessage) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "x" * 999}, "subject"),
        ({"scenario": "s" * 101}, "scenario"),
        ({"created_by": "u" * 51}, "created by"),
        ({"attachments": [Attachment("a\r\nb.pdf", b"1")]}, "attachment name"),
        ({"attachments": [Attachment("n" * 251 + ".pdf", b"1")]}, "attachment name"),
        ({"attachments": [Attachment("a.pdf", b"1", "text/plain\r\nX: y")]}, "content type"),
        ({"attachments": [Attachment("a.pdf", b"1", "not a type")]}, "content type"),
    ],
)
@pytest.mark.usefixtures("sales")
def test_compose_refuses_what_cannot_be_stored_or_built_and_keeps_nothing(
    sessions: sessionmaker[Session],
    secrets: SecretBox,
    smtp: SmtpServer,
    changes: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(MailRuleError, match=field):
        _compose(sessions, **changes)
    assert count(sessions, OutboxMessage) == 0 and count(sessions, OutboxAttachment) == 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_subject_the_check_accepts_builds_a_message(subject: str) -> None:
    try:
        check_header_text("subject", subject, 998)
    except MailRuleError:
        return
    message = OutboxMessage(
        id="1",
        message_id="<1@cronus.com>",
        subject=subject,
        body="b",
        body_html=False,
        to_addresses=["a@fabrikam.com"],
        cc_addresses=[],
        bcc_addresses=[],
    )
    mime = build_mime(message, [], "sales@cronus.com", T0)
    parsed = message_from_bytes(mime.as_bytes(), policy=policy.default)
    assert " ".join(str(parsed["Subject"]).split()) == " ".join(subject.split())
    assert parsed["Bcc"] is None and len(parsed.get_all("To") or []) == 1


@pytest.mark.usefixtures("sales")
def test_a_message_that_still_cannot_be_built_fails_alone_at_once(
    sessions: sessionmaker[Session], engine: object, secrets: SecretBox, smtp: SmtpServer
) -> None:
    bad = _compose(sessions, subject="first")
    good = _compose(sessions, subject="second")
    with sessions.begin() as session:  # a row written past compose (an old version, raw SQL)
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == bad).values(subject="a\u2028b")
        )
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=30)  # type: ignore[arg-type]
    assert counters.sent == 1 and counters.failed == 1
    with sessions() as session:
        failed = session.get(OutboxMessage, bad)
        assert failed is not None and failed.status is OutboxStatus.FAILED
        assert failed.last_error is not None and "could not be built" in failed.last_error
        assert "subject" in failed.last_error and "uncertain" not in failed.last_error
        assert session.get(SentEmail, good) is not None
    assert len(smtp.handler.accepted) == 1


@pytest.mark.usefixtures("sales")
def test_a_refused_recipient_is_recorded_with_the_servers_reply_and_the_rest_is_sent(
    sessions: sessionmaker[Session],
    engine: object,
    secrets: SecretBox,
    smtp: SmtpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp.handler.refuse_recipient("nobody@fabrikam.com", "550 5.1.1 User unknown")
    outbox_id = _compose(sessions, to="buyer@fabrikam.com; nobody@fabrikam.com")
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=30)  # type: ignore[arg-type]
    assert counters.sent == 1
    [received] = smtp.handler.accepted
    assert received.rcpt_tos == ["buyer@fabrikam.com"]
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        assert sent is not None
        assert sent.refused_recipients == {"nobody@fabrikam.com": "550 5.1.1 User unknown"}
        assert session.get(OutboxMessage, outbox_id) is None  # nothing left to try
    out = capsys.readouterr().out
    assert '"email.sent"' in out
    assert '"refused": {"nobody@fabrikam.com": "550 5.1.1 User unknown"}' in out


@pytest.mark.usefixtures("sales")
def test_a_recipient_refused_for_now_is_retried_alone_and_then_delivered(
    sessions: sessionmaker[Session], engine: object, secrets: SecretBox, smtp: SmtpServer
) -> None:
    smtp.handler.refuse_recipient("busy@fabrikam.com", "451 4.2.1 Mailbox busy", times=1)
    outbox_id = _compose(sessions, to="buyer@fabrikam.com", cc="busy@fabrikam.com")
    clock = Clock(T0)
    patient = dispatcher(engine, secrets, smtp, clock)  # type: ignore[arg-type]
    patient.backoff_seconds = 60
    first = patient.run(max_seconds=1, wait_for_window=False)
    assert first.sent == 0 and first.retried == 1 and first.waiting == 1
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        waiting = session.get(OutboxMessage, outbox_id)
        assert sent is not None and sent.refused_recipients == {
            "busy@fabrikam.com": "451 4.2.1 Mailbox busy"
        }
        assert waiting is not None and waiting.status is OutboxStatus.QUEUED
        assert waiting.envelope_to == ["busy@fabrikam.com"]
    clock.sleep(3600)
    assert dispatcher(engine, secrets, smtp, clock).run(max_seconds=1).sent == 1  # type: ignore[arg-type]
    assert [r.rcpt_tos for r in smtp.handler.accepted] == [
        ["buyer@fabrikam.com"],
        ["busy@fabrikam.com"],
    ]
    second = message_from_bytes(smtp.handler.accepted[1].content, policy=policy.default)
    assert second["Cc"] == "busy@fabrikam.com" and second["To"] == "buyer@fabrikam.com"
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        assert sent is not None and sent.refused_recipients == {}
        assert session.get(OutboxMessage, outbox_id) is None


@pytest.mark.usefixtures("sales")
def test_every_recipient_refused_for_good_fails_the_message_with_the_replies(
    sessions: sessionmaker[Session], engine: object, secrets: SecretBox, smtp: SmtpServer
) -> None:
    smtp.handler.refuse_recipient("nobody@fabrikam.com", "550 5.1.1 User unknown")
    outbox_id = _compose(sessions, to="nobody@fabrikam.com")
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)  # type: ignore[arg-type]
    assert counters.failed == 1 and smtp.handler.accepted == []
    with sessions() as session:
        message = session.get(OutboxMessage, outbox_id)
        assert message is not None and message.status is OutboxStatus.FAILED
        assert "nobody@fabrikam.com: 550 5.1.1 User unknown" in (message.last_error or "")
        assert session.get(SentEmail, outbox_id) is None


@pytest.mark.usefixtures("sales")
def test_a_send_retried_after_a_lost_answer_says_it_may_be_a_duplicate(
    sessions: sessionmaker[Session],
    engine: object,
    secrets: SecretBox,
    smtp: SmtpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox_id = _compose(sessions)
    smtp.handler.lose_answer_next = 1  # the server has it, the 250 never arrives
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)  # type: ignore[arg-type]
    assert counters.retried == 1 and counters.sent == 1
    assert len(smtp.handler.accepted) == 2  # the recipient got it twice
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        assert sent is not None and sent.possible_duplicate
    out = capsys.readouterr().out
    assert '"possibly_delivered": true' in out and '"possible_duplicate": true' in out


def test_display_names_are_kept_and_encoded_and_a_quoted_comma_does_not_split(
    sessions: sessionmaker[Session],
) -> None:
    from domain.mail.rules import parse_addresses

    assert parse_addresses('"Müller, Jürgen" <j@fabrikam.example>; buyer@fabrikam.example') == [
        '"Müller, Jürgen" <j@fabrikam.example>',
        "buyer@fabrikam.example",
    ]
    message = OutboxMessage(
        id="1",
        message_id="<1@cronus.com>",
        subject="s",
        body="b",
        body_html=False,
        to_addresses=parse_addresses('"Müller, Jürgen" <j@fabrikam.example>'),
        cc_addresses=[],
        bcc_addresses=[],
    )
    raw = build_mime(message, [], "sales@cronus.com", T0).as_bytes()
    assert raw.isascii() and b"=?utf-8?" in raw  # RFC 2047 encoded display name
    parsed = message_from_bytes(raw, policy=policy.default)
    [to] = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Müller, Jürgen", "j@fabrikam.example")


@pytest.mark.parametrize("bad", ["robin at fabrikam", "a@b.com x", "a@b", "a@b.com\u2028c@d.com"])
def test_a_bad_address_list_is_refused_naming_it(bad: str) -> None:
    from domain.mail.rules import parse_addresses

    with pytest.raises(MailRuleError, match="address"):
        parse_addresses(bad)


def test_an_idn_domain_goes_out_as_punycode_to_a_server_without_smtputf8(
    sessions: sessionmaker[Session], engine: object, secrets: SecretBox, tmp_path: Path
) -> None:
    with SmtpServer(tmp_path, smtputf8=False) as smtp:
        with sessions.begin() as session:
            smtp_account(session, secrets, smtp, "Sales", "sales@cronus.com")
        _idn_goes_out_as_punycode(sessions, engine, secrets, smtp)


def _idn_goes_out_as_punycode(
    sessions: sessionmaker[Session], engine: object, secrets: SecretBox, smtp: SmtpServer
) -> None:
    outbox_id = _compose(sessions, to="Bücherei <info@bücher.example>; jürgen@fabrikam.example")
    counters = dispatcher(engine, secrets, smtp, Clock(T0)).run(max_seconds=5)  # type: ignore[arg-type]
    assert counters.sent == 1 and counters.retried == 0
    [received] = smtp.handler.accepted
    assert received.rcpt_tos == ["info@xn--bcher-kva.example"]
    to = message_from_bytes(received.content, policy=policy.default)["To"]
    assert to.addresses[0].addr_spec == "info@xn--bcher-kva.example"
    with sessions() as session:
        sent = session.get(SentEmail, outbox_id)
        assert sent is not None
        assert sent.refused_recipients["jürgen@fabrikam.example"].startswith("553 5.6.7")


def test_a_connector_that_crashes_fails_that_message_alone(
    sessions: sessionmaker[Session], engine: object, sales: SmtpServer
) -> None:
    from jobs.mail.dispatch import MailDispatcher

    class Broken:
        def send(self, *_args: object) -> None:
            raise RuntimeError("a bug in the connector")

    first, second = _compose(sessions), _compose(sessions, subject="second")
    counters = MailDispatcher(engine, lambda _account: Broken(), clock=Clock(T0)).run(  # type: ignore[arg-type]
        max_seconds=5
    )
    assert counters.failed == 2 and counters.sent == 0  # each failed alone; the run ended well
    with sessions() as session:
        for outbox_id in (first, second):
            message = session.get(OutboxMessage, outbox_id)
            assert message is not None and message.status is OutboxStatus.FAILED
            assert "RuntimeError: a bug in the connector" in (message.last_error or "")


@pytest.mark.usefixtures("sales")
def test_compose_refuses_more_recipients_than_the_account_takes_in_one_message(
    sessions: sessionmaker[Session],
) -> None:
    many = [f"r{n}@fabrikam.com" for n in range(501)]  # Exchange Online: 500 per message
    with pytest.raises(MailRuleError, match=r"501 recipients.*at most 500"):
        _compose(sessions, to=many[:300], bcc=many[300:])
    assert count(sessions, OutboxMessage) == 0
    _compose(sessions, to=many[:500])  # the cap itself is fine


def test_the_recipients_per_day_limit_holds_over_any_24_hours(
    engine: object, sessions: sessionmaker[Session], sales: SmtpServer
) -> None:
    from datetime import timedelta

    from domain.mail.models import EmailAccount
    from domain.mail.rate import DAY, try_take_slot

    with sessions() as session:
        account = session.query(EmailAccount).one()
    taken = try_take_slot(engine, account.id, 0, T0, recipients=6000, day_limit=10_000)  # type: ignore[arg-type]
    assert taken.taken
    later = T0 + timedelta(hours=5)
    refused = try_take_slot(engine, account.id, 0, later, recipients=4001, day_limit=10_000)  # type: ignore[arg-type]
    assert refused.free_at == T0 + DAY  # when the first 6,000 leave the 24 hours
    assert try_take_slot(engine, account.id, 0, later, recipients=4000, day_limit=10_000).taken  # type: ignore[arg-type]
