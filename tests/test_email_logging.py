"""Email logging against the Graph mail emulator and exchangelib answered by the EWS
emulator, on SQLite and PostgreSQL: the right entries, only the Inbox read, nothing
logged twice, bad messages reported while the batch goes on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from domain.interactions.models import Experience, InformationFlow, InteractionLogEntry
from jobs.email_logging.logger import EmailLogger
from jobs.email_logging.mailbox import MailboxError
from runtime.settings import Settings
from tests.email_logging_fixtures import (
    MAILBOX,
    MailSandbox,
    configure,
    seed_directory,
    start,
)

JO, AM = "jo@cronus.example", "annette.hill@cronus.example"
ROBIN, KIM = "Robin@Fabrikam.example", "kim@adatum.example"


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailSandbox]:
    yield from start(tmp_path)


@pytest.fixture
def directory(sessions: Any, settings: Settings) -> None:
    seed_directory(sessions, settings.tz)


def deliver(mail: MailSandbox, experience: str, **kwargs: Any) -> dict[str, Any]:
    emulator = mail.graph if experience == "graph" else mail.ews
    return emulator.deliver(MAILBOX, **kwargs)


def mailbox(mail: MailSandbox, experience: str) -> Any:
    return (
        mail.graph_mailbox(sleep=lambda _s: None) if experience == "graph" else mail.ews_mailbox()
    )


def inbox(mail: MailSandbox, experience: str) -> dict[str, Any]:
    if experience == "graph":
        return mail.graph.mailboxes[MAILBOX].messages("inbox")
    folder = mail.ews.mailboxes[MAILBOX].by_distinguished("inbox")
    assert folder is not None
    return folder.items


def archive(mail: MailSandbox, experience: str) -> dict[str, Any]:
    if experience == "graph":
        return mail.graph.mailboxes[MAILBOX].messages("archive")
    return mail.ews.mailboxes[MAILBOX].path("Logged/Archive").items


def junk(mail: MailSandbox, experience: str) -> dict[str, Any]:
    if experience == "graph":
        return mail.graph.mailboxes[MAILBOX].messages("junkemail")
    folder = mail.ews.mailboxes[MAILBOX].by_distinguished("junkemail")
    assert folder is not None
    return folder.items


def entries(sessions: Any) -> list[InteractionLogEntry]:
    with sessions() as session:
        stmt = select(InteractionLogEntry).order_by(InteractionLogEntry.entry_no)
        return list(session.execute(stmt).scalars())


def run(engine: Any, mail: MailSandbox, experience: str, batch_size: int = 2) -> Any:
    box = mailbox(mail, experience)
    try:
        return EmailLogger(engine, box, batch_size=batch_size).run()
    finally:
        box.close()


@pytest.mark.parametrize("experience", ["graph", "ews"])
def test_messages_between_salespeople_and_contacts_become_entries_and_move_to_the_archive(
    experience: str, engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    deliver(mail, experience, sender=JO, to=[ROBIN], subject="Your quote", has_attachments=True)
    deliver(mail, experience, sender=ROBIN, to=[AM], cc=[JO], subject="Re: Your quote")
    deliver(mail, experience, sender=JO, to=[AM], subject="internal")
    deliver(mail, experience, sender="stranger@example.org", to=[JO], subject="cold call")
    deliver(mail, experience, sender=KIM, to=[JO], subject="Kim asks")
    deliver(mail, experience, sender=ROBIN, to=[JO], subject="in junk", folder="junkemail")

    counters = run(engine, mail, experience)

    got = sorted(
        (e.subject, e.contact_no, e.salesperson_code, e.information_flow, e.attachments)
        for e in entries(sessions)
    )
    assert got == [
        ("Kim asks", "CT200", "JO", InformationFlow.INBOUND, False),
        ("Kim asks", "CT300", "JO", InformationFlow.INBOUND, False),
        ("Re: Your quote", "CT100", "AM", InformationFlow.INBOUND, False),
        ("Re: Your quote", "CT100", "JO", InformationFlow.INBOUND, False),
        ("Your quote", "CT100", "JO", InformationFlow.OUTBOUND, True),
    ]
    assert all(e.template_code == "EMAIL" for e in entries(sessions))
    assert (counters.read, counters.logged, counters.unmatched, counters.moved) == (5, 5, 2, 5)
    assert counters.activity
    assert not inbox(mail, experience) and len(archive(mail, experience)) == 5
    assert [m.get("subject") for m in junk(mail, experience).values()] == ["in junk"]
    # Every link opens the message where it now is, in the archive.
    stored_links = {e.link for e in entries(sessions)}
    if experience == "graph":
        assert stored_links <= {m["webLink"] for m in archive(mail, experience).values()}
        assert not any("junkemail" in path for _, path in mail.graph.requests)
    else:
        assert all(
            any(_quoted(i) in link for i in archive(mail, experience)) for link in stored_links
        )


def _quoted(item_id: str) -> str:
    from urllib.parse import quote

    return quote(item_id, safe="")


@pytest.mark.parametrize("experience", ["graph", "ews"])
def test_a_message_read_twice_is_logged_once(
    experience: str, engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    first = deliver(mail, experience, sender=JO, to=[ROBIN], subject="hello")
    message_id = first.get("internetMessageId") or first.get("message_id")
    run(engine, mail, experience)
    # The same message arrives again (a second BCC, or moved back by hand).
    deliver(
        mail, experience, sender=JO, to=[ROBIN], subject="hello", internet_message_id=message_id
    )
    counters = run(engine, mail, experience)
    assert len(entries(sessions)) == 1
    assert (counters.logged, counters.already_logged, counters.moved) == (0, 1, 1)


def test_a_crash_between_logging_and_moving_logs_nothing_twice(
    engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    for n in range(3):
        deliver(mail, "graph", sender=JO, to=[ROBIN], subject=f"quote {n}")
    mail.graph.inject(r"/\$batch$", 503, retry_after=0, times=5)  # every move attempt fails
    with pytest.raises(MailboxError, match="503"):
        run(engine, mail, "graph", batch_size=10)
    assert len(entries(sessions)) == 3 and len(inbox(mail, "graph")) == 3

    counters = run(engine, mail, "graph", batch_size=10)
    assert len(entries(sessions)) == 3
    assert (counters.logged, counters.already_logged, counters.moved) == (0, 3, 3)
    assert not inbox(mail, "graph")


@pytest.mark.parametrize("experience", ["graph", "ews"])
def test_a_bad_message_is_reported_stays_in_the_inbox_and_the_batch_goes_on(
    experience: str, engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    deliver(mail, experience, sender=JO, to=[ROBIN], subject="good 1")
    deliver(mail, experience, sender=None, to=[ROBIN], subject="no sender")
    deliver(mail, experience, sender=JO, to=["robin at fabrikam"], subject="bad recipient")
    deliver(mail, experience, sender=ROBIN, to=[JO], subject="no id", internet_message_id="")
    deliver(mail, experience, sender=ROBIN, to=[AM], subject="good 2")

    counters = run(engine, mail, experience, batch_size=2)
    assert sorted(e.subject for e in entries(sessions)) == ["good 1", "good 2"]
    assert (counters.failed, counters.moved) == (3, 2)
    left = sorted(m.get("subject") for m in inbox(mail, experience).values())
    assert left == ["bad recipient", "no id", "no sender"]

    again = run(engine, mail, experience, batch_size=2)  # tried again; nothing else to do
    assert (again.failed, again.moved, again.activity) == (3, 0, False)


def test_throttling_and_an_expired_token_are_waited_out(
    engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    for n in range(4):
        deliver(mail, "graph", sender=JO, to=[ROBIN], subject=f"m{n}")
    slept: list[float] = []
    box = mail.graph_mailbox(sleep=slept.append)
    box.graph.token = "expired-token"  # as if the cached token had expired
    mail.graph.inject(r"/mailFolders/inbox/messages$", 429, retry_after=7, times=1)
    mail.graph.inject(r"/messages/[^/]+/move$", 429, retry_after=3, times=1)  # inside $batch
    counters = EmailLogger(engine, box, batch_size=10).run()
    box.close()
    assert (counters.logged, counters.moved) == (4, 4)
    assert 7 in slept and 3 in slept
    assert len(entries(sessions)) == 4 and not inbox(mail, "graph")


def test_moves_are_batched_so_requests_per_message_stay_low(
    engine: Any, mail: MailSandbox, directory: None
) -> None:
    for n in range(100):
        deliver(mail, "graph", sender=JO, to=[ROBIN], subject=f"m{n}")
    box = mail.graph_mailbox()
    EmailLogger(engine, box, batch_size=50).run()
    box.close()
    # 2 list pages (the second has no @odata.nextLink); 100 moves in 5 $batch requests of 20
    assert box.requests == 2 + 5


def test_ews_basic_authentication_for_exchange_on_premises_and_server_busy(
    engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    deliver(mail, "ews", sender=ROBIN, to=[JO], subject="on-prem")
    mail.ews.busy = 1  # ErrorServerBusy with BackOffMilliseconds: exchangelib waits, retries
    box = mail.ews_mailbox(basic=True)
    counters = EmailLogger(engine, box, batch_size=5).run()
    box.close()
    assert counters.logged == 1 and not inbox(mail, "ews")
    mail.ews.users["logger@cronus.example"] = "changed"
    refused = mail.ews_mailbox(basic=True)
    with pytest.raises(MailboxError, match="refused the credentials"):
        refused.check()
    refused.close()


def test_ews_renews_a_refused_token_once(mail: MailSandbox) -> None:
    box = mail.ews_mailbox()
    assert any("queue folder Inbox" in line for line in box.check())
    mail.graph.expire_tokens()
    issued = mail.graph.tokens_issued
    assert list(box.pages(5)) == []
    assert mail.graph.tokens_issued == issued + 1
    box.close()


@pytest.mark.parametrize("experience", ["graph", "ews"])
def test_validate_checks_sign_in_the_mailbox_and_its_folders(
    experience: str, mail: MailSandbox
) -> None:
    box = mailbox(mail, experience)
    lines = box.check()
    box.close()
    assert lines[0].startswith("signed in")
    if experience == "ews":
        mail.ews.mailboxes.pop(MAILBOX)
        mail.ews.add_mailbox(MAILBOX)  # the storage folder is gone
        box = mail.ews_mailbox()
        with pytest.raises(MailboxError, match="Logged/Archive"):
            box.check()
    else:
        mail.graph.mailboxes.pop(MAILBOX)
        box = mail.graph_mailbox()
        with pytest.raises(MailboxError, match="ErrorInvalidUser"):
            box.check()
    box.close()


def test_the_job_sleeps_on_an_empty_inbox_and_logs_when_run(
    settings: Settings,
    sessions: Any,
    mail: MailSandbox,
    directory: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from admin.processes import EmbeddedSystem
    from domain.clock import utcnow
    from domain.interactions.models import EmailLoggingSetup
    from domain.queue import entries as ops
    from domain.queue.status import EntryStatus
    from jobs.email_logging.setup import ensure_entry
    from tests.conftest import UNHURRIED_LEASE, wait_until
    from tests.helpers import entry, finished_logs

    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", mail.key)
    configure(sessions, mail, Experience.GRAPH)
    deliver(mail, "graph", sender=JO, to=[ROBIN], subject="first")
    with sessions.begin() as session:
        row = session.get(EmailLoggingSetup, 1)
        assert row is not None
        ensure_entry(session, row, minutes=1, inactivity=5, tz=settings.tz)
    with EmbeddedSystem(
        replace(settings, ca_file=mail.bundle, lease_seconds=UNHURRIED_LEASE),
        threads=2,
        migrate=False,
    ):
        wait_until(lambda: len(entries(sessions)) == 1, timeout=30)
        wait_until(lambda: len(finished_logs(sessions, "EMAIL-LOGGING")) == 1, timeout=10)
        with sessions.begin() as session:  # the next run finds an empty Inbox
            ops.run_now(session, "EMAIL-LOGGING", utcnow())
        wait_until(
            lambda: entry(sessions, "EMAIL-LOGGING").status == EntryStatus.ON_HOLD_INACTIVITY,
            timeout=30,
        )
    logs = finished_logs(sessions, "EMAIL-LOGGING")
    assert logs and all(log.status.value == "Success" for log in logs)


def test_a_message_id_of_any_length_is_logged_and_found_again(
    engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    long_id = "<" + "x" * 300 + "@mail.fabrikam.example>"  # issue 14: 300 characters
    deliver(mail, "graph", sender=JO, to=[ROBIN], subject="long", internet_message_id=long_id)
    deliver(mail, "graph", sender=ROBIN, to=[JO], subject="short")
    counters = run(engine, mail, "graph", batch_size=10)
    assert (counters.logged, counters.failed, counters.moved) == (2, 0, 2)
    assert {e.message_id for e in entries(sessions)} >= {long_id}
    deliver(mail, "graph", sender=JO, to=[ROBIN], subject="long", internet_message_id=long_id)
    again = run(engine, mail, "graph", batch_size=10)  # the same message, read again
    assert (again.logged, again.already_logged) == (0, 1)


def test_a_message_the_database_refuses_fails_alone_and_stays_in_the_inbox(
    engine: Any, sessions: Any, mail: MailSandbox, directory: None
) -> None:
    deliver(mail, "graph", sender=JO, to=[ROBIN], subject="good 1")
    deliver(mail, "graph", sender=JO, to=[ROBIN], subject="nul \x00 inside")
    deliver(mail, "graph", sender=ROBIN, to=[JO], subject="good 2")
    counters = run(engine, mail, "graph", batch_size=10)
    logged = sorted(e.subject for e in entries(sessions))
    if engine.dialect.name == "postgresql":  # PostgreSQL text cannot hold NUL
        assert logged == ["good 1", "good 2"]
        assert (counters.failed, counters.moved) == (1, 2)
        assert [m["subject"] for m in inbox(mail, "graph").values()] == ["nul \x00 inside"]
    else:  # SQLite stores it: nothing to refuse
        assert len(logged) == 3 and counters.failed == 0


def test_the_migration_keys_entries_logged_before_it(tmp_path: Any) -> None:
    from sqlalchemy import text

    from domain.db import make_engine
    from domain.interactions.matching import message_key
    from domain.migrations import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO contacts (no, name, email, company_name) "
                          "VALUES ('C1', 'c', 'c@x.com', '')"))  # fmt: skip
        conn.execute(text("INSERT INTO salespersons (code, name, email, modified_at, modified_by) "
                          "VALUES ('S1', 's', 's@x.com', '2026-01-01 00:00:00', 't')"))  # fmt: skip
        conn.execute(text(
            "INSERT INTO interaction_log_entries (contact_no, salesperson_code, "
            "information_flow, template_code, subject, occurred_at, logged_at, message_id, "
            "link, attachments) VALUES ('C1', 'S1', 'Inbound', 'EMAIL', 'x', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '<a@b>', '', 0)"
        ))  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message_id, message_key FROM interaction_log_entries"))
        assert rows.all() == [("<a@b>", message_key("<a@b>"))]
    engine.dispose()
