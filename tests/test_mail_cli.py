"""`jobqueue email ...` against a real SMTP server: set up, compose, send, list; and bad
input that exits 2 and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from domain.db import make_engine, make_session_factory
from domain.mail.models import EmailAccount, OutboxMessage, SmtpSettings
from runtime.settings import Settings
from sandbox.smtp_server import PASSWORD, USER, SmtpServer
from tests.helpers import cli_runner


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        yield server


@pytest.fixture
def cli(settings: Settings, smtp: SmtpServer, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("JOBQUEUE_CA_FILE", smtp.ca_file)  # trust the test server
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)

    return cli_runner(capsys)


def outbox_count(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        n = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    engine.dispose()
    return int(n)


def test_set_up_send_and_list(cli, smtp: SmtpServer, settings: Settings, tmp_path: Path) -> None:
    code, out, err = cli(
        "email",
        "accounts",
        "add",
        "Office",
        "--address",
        "office@cronus.com",
        "--connector",
        "smtp",
        "--server",
        "127.0.0.1",
        "--port",
        str(smtp.port),
        "--user",
        USER,
        "--password-env",
        "SMTP_PASSWORD",
    )
    assert code == 0, err
    assert "default" in out and "no per minute" in out
    m365 = [
        "email",
        "accounts",
        "add",
        "M365",
        "--address",
        "sales@cronus.com",
        "--connector",
        "microsoft365",
    ]
    assert cli(*m365)[0] == 2  # it needs its app registration
    assert (
        cli(
            *m365,
            "--tenant",
            "contoso.onmicrosoft.com",
            "--client-id",
            "app-id",
            "--client-secret-env",
            "SMTP_PASSWORD",
        )[0]
        == 0
    )
    code, out, _ = cli("email", "accounts", "list")
    assert "30" in out and "Microsoft 365" in out  # Exchange Online's default limit
    assert cli("email", "scenarios", "assign", "Sales Invoice", "Office")[0] == 0
    terms = tmp_path / "terms.pdf"
    terms.write_bytes(b"%PDF-1.4 terms")
    assert cli("email", "attach-default", "Sales Invoice", str(terms))[0] == 0
    code, out, err = cli(
        "email",
        "send",
        "--scenario",
        "Sales Invoice",
        "--to",
        "buyer@fabrikam.com",
        "--subject",
        "Invoice 103001",
        "--body",
        "Attached.",
        "--as",
        "ann",
    )
    assert code == 0 and out.startswith("Queued"), err
    code, out, _ = cli("email", "outbox", "list")
    assert "Queued" in out and "Sales Invoice" in out
    code, out, err = cli("email", "test", "Office", "--to", "it@cronus.com")
    assert code == 0, err
    assert [r.rcpt_tos for r in smtp.handler.accepted] == [["it@cronus.com"]]
    code, out, _ = cli("email", "sent", "list", "--as", "admin")
    assert "Test email" in out
    code, out, _ = cli("email", "sent", "list", "--as", "ann")
    assert "Test email" not in out  # someone else's, and the default policy needs record access
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        stored = session.execute(select(SmtpSettings.password_encrypted)).scalar_one()
        assert stored and PASSWORD not in stored  # encrypted at rest
        assert session.execute(select(func.count()).select_from(EmailAccount)).scalar_one() == 2
    engine.dispose()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["email", "send", "--to", "not-an-address", "--subject", "x"], "not an email address"),
        (["email", "send", "--subject", "x"], "at least one recipient"),
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--attach", "BIG"], "100 MB"),
        (["email", "accounts", "default", "Nope"], "no email account named 'Nope'"),
        (
            ["email", "accounts", "add", "X", "--address", "x@y.com", "--connector", "smtp"],
            "needs --server",
        ),
        (["email", "outbox", "retry", "missing-id"], "no outbox message"),
        # issue 14, finding 7: missing files, directories, bad text, lengths
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--attach", "/nope"], "no file"),
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--attach", "DIR"], "not a file"),
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--body-file", "/nope"], "no file"),
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--body-file", "BIN"], "UTF-8"),
        (["email", "send", "--to", "a@b.com", "--subject", "x" * 1000], "at most 998"),
        (["email", "send", "--to", "a@b.com", "--subject", "x", "--scenario", "s" * 101], "100"),
        (["email", "attach-default", "Sales Invoice", "/nope"], "no file"),
    ],
)
def test_bad_input_exits_2_and_queues_nothing(cli, settings, smtp, tmp_path, argv, message) -> None:
    assert (
        cli(
            "email",
            "accounts",
            "add",
            "Office",
            "--address",
            "office@cronus.com",
            "--connector",
            "smtp",
            "--server",
            "127.0.0.1",
            "--port",
            str(smtp.port),
            "--user",
            USER,
            "--password-env",
            "SMTP_PASSWORD",
        )[0]
        == 0
    )
    if "BIG" in argv:
        big = tmp_path / "big.bin"
        with big.open("wb") as handle:
            handle.truncate(101 * 1024 * 1024)
        argv = [str(big) if a == "BIG" else a for a in argv]
    binary = tmp_path / "body.bin"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    argv = [{"DIR": str(tmp_path), "BIN": str(binary)}.get(a, a) for a in argv]
    code, _out, err = cli(*argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert outbox_count(settings) == 0


def test_the_sent_list_shows_refused_recipients_with_the_servers_reply(
    cli, smtp: SmtpServer
) -> None:
    office = ["email", "accounts", "add", "Office", "--address", "office@cronus.com"]
    server = ["--connector", "smtp", "--server", "127.0.0.1", "--port", str(smtp.port)]
    code, _, err = cli(*office, *server, "--user", USER, "--password-env", "SMTP_PASSWORD")
    assert code == 0, err
    smtp.handler.refuse_recipient("nobody@cronus.com", "550 5.1.1 User unknown")
    code, _, err = cli("email", "test", "Office", "--to", "it@cronus.com; nobody@cronus.com")
    assert code == 0, err
    code, out, _ = cli("email", "sent", "list", "--as", "admin")
    assert "refused nobody@cronus.com (550 5.1.1 User unknown)" in out
    assert [r.rcpt_tos for r in smtp.handler.accepted] == [["it@cronus.com"]]
