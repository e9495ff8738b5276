"""`jobqueue email-logging|interactions|contacts|salespersons`: setup writes the setup
(secret encrypted) and an entry on hold; enable/disable switch it; validate and
renew-token talk to the emulators; bad input exits 2 and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from domain.interactions.models import EmailLoggingSetup, InteractionLogEntry, Opportunity
from domain.queue.status import EntryStatus
from jobs.email_logging.logger import EmailLogger
from runtime.settings import Settings
from tests.email_logging_fixtures import (
    ACCOUNT,
    CLIENT_ID,
    MAILBOX,
    SECRET,
    TENANT,
    MailSandbox,
    seed_directory,
    start,
)
from tests.helpers import cli_runner, entry


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailSandbox]:
    yield from start(tmp_path)


@pytest.fixture
def cli(
    settings: Settings,
    mail: MailSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", mail.key)
    monkeypatch.setenv("JOBQUEUE_CA_FILE", mail.bundle)
    monkeypatch.setenv("EL_SECRET", SECRET)
    return cli_runner(capsys)


def graph_setup(mail: MailSandbox, *extra: str) -> list[str]:
    return [
        "email-logging", "setup", "--mailbox", MAILBOX, "--account", ACCOUNT,
        "--secret-env", "EL_SECRET", "--tenant", TENANT, "--client-id", CLIENT_ID,
        "--authority-host", mail.identity.base, "--graph-url", mail.graph.graph_url, *extra,
    ]  # fmt: skip


def setup_row(sessions: Any) -> EmailLoggingSetup | None:
    with sessions() as session:
        return session.get(EmailLoggingSetup, 1)


def test_setup_enable_validate_renew_and_disable(
    cli: Any, sessions: Any, mail: MailSandbox
) -> None:
    code, out, err = cli(*graph_setup(mail))
    assert code == 0, err
    row = setup_row(sessions)
    assert row is not None and not row.enabled and SECRET not in row.secret_encrypted
    assert entry(sessions, "EMAIL-LOGGING").status == EntryStatus.ON_HOLD
    assert entry(sessions, "EMAIL-LOGGING").job_name == "email-logging"

    code, out, err = cli("email-logging", "validate")
    assert code == 0, err
    assert "ok  signed in" in out and "folder Inbox" in out and "folder Archive" in out

    issued = mail.graph.tokens_issued
    assert cli("email-logging", "renew-token")[0] == 0
    assert mail.graph.tokens_issued == issued + 1

    assert cli("email-logging", "enable")[0] == 0
    assert setup_row(sessions).enabled  # type: ignore[union-attr]
    assert entry(sessions, "EMAIL-LOGGING").status == EntryStatus.READY

    code, out, _ = cli("email-logging", "show")
    assert MAILBOX in out and SECRET not in out

    assert cli("email-logging", "disable")[0] == 0
    assert entry(sessions, "EMAIL-LOGGING").status == EntryStatus.ON_HOLD


def test_change_user_restarts_the_entry(cli: Any, sessions: Any, mail: MailSandbox) -> None:
    cli(*graph_setup(mail))
    cli("email-logging", "enable")
    with sessions.begin() as session:  # as if runs had failed
        from domain.queue import entries as ops

        ops.set_on_hold(session, "EMAIL-LOGGING")
    code, _, err = cli("email-logging", "change-user", "--account", "other@cronus.example")
    assert code == 0, err
    assert setup_row(sessions).account == "other@cronus.example"  # type: ignore[union-attr]
    assert entry(sessions, "EMAIL-LOGGING").status == EntryStatus.READY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--mailbox", "not-an-address"], "shared mailbox address"),
        (["--experience", "ews"], "EWS URL must be an https address"),
        (["--batch-size", "5000"], "batch size: 5000 is over the maximum of 1000"),
        (["--secret-env", "UNSET_VARIABLE"], "UNSET_VARIABLE is empty or not set"),
    ],
)
def test_bad_setup_exits_2_and_changes_nothing(
    cli: Any, sessions: Any, mail: MailSandbox, change: list[str], message: str
) -> None:
    args = graph_setup(mail)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, _, err = cli(*args)
    assert code == 2 and message in err and SECRET not in err
    assert setup_row(sessions) is None


def test_validate_reports_a_refused_sign_in(
    cli: Any, sessions: Any, mail: MailSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EL_SECRET", "wrong secret")
    cli(*graph_setup(mail))
    code, _, err = cli("email-logging", "validate")
    assert code == 2 and "invalid_client" in err and "wrong secret" not in err


def test_interactions_list_and_to_opportunity(
    cli: Any, sessions: Any, engine: Any, mail: MailSandbox, settings: Settings
) -> None:
    seed_directory(sessions, settings.tz)
    mail.graph.deliver(
        MAILBOX,
        sender="jo@cronus.example",
        to=["robin@fabrikam.example"],
        subject="Bikes for the fleet",
    )
    mail.graph.deliver(
        MAILBOX, sender="kim@adatum.example", to=["jo@cronus.example"], subject="Kim asks"
    )
    box = mail.graph_mailbox()
    EmailLogger(engine, box).run()
    box.close()

    code, out, _ = cli("interactions", "list", "--contact", "CT100")
    assert code == 0 and "Bikes for the fleet" in out and "Kim asks" not in out
    with sessions() as session:
        first = session.execute(
            select(InteractionLogEntry).where(InteractionLogEntry.contact_no == "CT100")
        ).scalar_one()
    code, out, err = cli("interactions", "to-opportunity", str(first.entry_no))
    assert code == 0, err
    assert "OP000001" in out and "Bikes for the fleet" in out
    code, _, err = cli("interactions", "to-opportunity", str(first.entry_no))
    assert code == 2 and "already made opportunity OP000001" in err
    assert cli("interactions", "to-opportunity", "999")[0] == 2
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(Opportunity)).scalar_one() == 1


def test_contacts_and_salespersons_refuse_bad_addresses(cli: Any, sessions: Any) -> None:
    assert cli("contacts", "add", "CT9", "--name", "Ann", "--email", "Ann@Example.org")[0] == 0
    code, _, err = cli("contacts", "add", "CT10", "--email", "ann at example")
    assert code == 2 and "not an email address" in err
    code, out, _ = cli("contacts", "list")
    assert "ann@example.org" in out and "CT10" not in out
    assert cli("salespersons", "add", "PS", "--email", "ps@cronus.example")[0] == 0
    assert cli("salespersons", "add", "PX", "--email", "bad@")[0] == 2


def test_ews_setup_with_basic_authentication_validates_its_folders(
    cli: Any, sessions: Any, mail: MailSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.email_logging_fixtures import PASSWORD

    monkeypatch.setenv("EL_PASSWORD", PASSWORD)
    code, _, err = cli(
        "email-logging", "setup", "--mailbox", MAILBOX, "--account", ACCOUNT,
        "--experience", "ews", "--ews-url", mail.ews.url, "--ews-auth", "basic",
        "--secret-env", "EL_PASSWORD", "--storage-folder", "Logged/Archive",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli("email-logging", "validate")
    assert code == 0, err
    assert "queue folder Inbox" in out and "storage folder Logged/Archive" in out
    assert cli("email-logging", "renew-token")[0] == 2  # basic authentication has no token


def test_the_console_shows_the_setup_and_interactions_validates_and_switches(
    cli: Any, sessions: Any, engine: Any, mail: MailSandbox, settings: Settings
) -> None:
    """Issue 16: the email logging page does what the command line does."""
    import re
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from admin.web.app import create_web_app
    from domain.clock import utcnow
    from domain.queue.status import EntryStatus
    from domain.users.accounts import add_user
    from domain.users.models import Role

    assert cli(*graph_setup(mail))[0] == 0
    assert cli("email-logging", "enable")[0] == 0
    seed_directory(sessions, settings.tz)
    mail.graph.deliver(MAILBOX, sender="jo@cronus.example", to=["robin@fabrikam.example"],
                       subject="Bikes for the fleet")  # fmt: skip
    box = mail.graph_mailbox()
    EmailLogger(engine, box).run()
    box.close()
    with sessions.begin() as session:
        add_user(session, "ada", Role.ADMIN, "correct horse battery", utcnow())
    app = create_web_app(replace(settings, ca_file=mail.bundle), engine)
    console = TestClient(app, follow_redirects=False)
    console.post("/login", data={"name": "ada", "password": "correct horse battery"})
    page = console.get("/email-logging").text
    assert MAILBOX in page and "Bikes for the fleet" in page
    assert "<td>set</td>" in page and SECRET not in page  # a stored secret shows as "set"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    checked = console.post("/email-logging", data={"csrf_token": csrf, "do": "validate"})
    assert checked.status_code == 200 and "is set up correctly" in checked.text
    with sessions() as session:
        logged = session.execute(select(InteractionLogEntry)).scalars().first()
    assert logged is not None
    made = console.post("/email-logging", data={"csrf_token": csrf, "do": "opportunity",
                                                "entry": str(logged.entry_no)})  # fmt: skip
    assert "opportunity OP000001 made" in made.text
    off = console.post("/email-logging", data={"csrf_token": csrf, "do": "disable"})
    assert "email logging disabled" in off.text
    code = setup_row(sessions).entry_code  # type: ignore[union-attr]
    assert entry(sessions, code).status == EntryStatus.ON_HOLD
