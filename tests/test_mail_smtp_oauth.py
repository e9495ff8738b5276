"""SMTP with OAuth 2.0 (Exchange Online's SMTP AUTH): an app-only token from MSAL for
https://outlook.office365.com/.default, handed over with SASL XOAUTH2 to a real SMTP
server (aiosmtpd) that checks it against the identity emulator that issued it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from domain.mail.kinds import Connector, OutboxStatus, SecureConnection, SmtpAuthentication
from domain.mail.models import OutboxMessage
from domain.mail.rules import MailRuleError
from jobs.mail import accounts
from jobs.mail.compose import compose
from jobs.mail.connectors import connector_factory
from jobs.mail.dispatch import MailDispatcher
from runtime.secrets import Secret, SecretBox
from sandbox.identity import EXCHANGE_RESOURCE, IdentityEmulator
from sandbox.smtp_server import SmtpServer

TENANT, CLIENT_ID, SECRET = "contoso.onmicrosoft.com", "33333333-aaaa-bbbb-cccc-444444444444", "s~1"
MAILBOX = "notifications@cronus.com"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[IdentityEmulator]:
    with IdentityEmulator(tmp_path, TENANT, CLIENT_ID, SECRET) as emulator:
        yield emulator


@pytest.fixture
def smtp(tmp_path: Path, identity: IdentityEmulator) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path) as server:
        server.handler.token_check = lambda user, token: (
            user == MAILBOX and identity.token_valid(token, EXCHANGE_RESOURCE)
        )
        yield server


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


def add_oauth_account(
    session: Session, box: SecretBox, smtp: SmtpServer, identity: IdentityEmulator, secret: str
) -> None:
    accounts.add_account(
        session,
        "Notifications",
        MAILBOX,
        Connector.SMTP,
        rate_limit=0,
        smtp=accounts.SmtpOptions(
            server="127.0.0.1",
            port=smtp.port,
            secure_connection=SecureConnection.STARTTLS,
            authentication=SmtpAuthentication.OAUTH2,
            user_name=MAILBOX,
        ),
        graph=accounts.GraphOptions(
            TENANT, CLIENT_ID, Secret(secret), authority_host=identity.base
        ),
        secrets=box,
    )


def queue(sessions: sessionmaker[Session], subject: str) -> str:
    with sessions.begin() as session:
        return compose(
            session,
            created_by="ann",
            scenario="Notification",
            to="buyer@fabrikam.com",
            subject=subject,
            body="b",
            now=NOW,
        ).id


def dispatch(
    engine: Engine, box: SecretBox, smtp: SmtpServer, identity: IdentityEmulator
) -> object:
    factory = connector_factory(engine, box, ssl_context=smtp.client_tls, ca_file=identity.ca_file)
    return MailDispatcher(engine, factory, clock=lambda: NOW, backoff_seconds=0).run(max_seconds=5)


def test_smtp_oauth2_signs_in_with_an_exchange_token_and_renews_an_expired_one(
    sessions, engine, box, smtp, identity
) -> None:
    with sessions.begin() as session:
        add_oauth_account(session, box, smtp, identity, SECRET)
    queue(sessions, "one")
    dispatch(engine, box, smtp, identity)
    assert [r.content.count(b"Subject: one") for r in smtp.handler.accepted] == [1]
    assert smtp.handler.xoauth2_users == [MAILBOX]
    issued = identity.tokens_issued

    identity.expire_tokens()  # the cached token is now refused by the server
    queue(sessions, "two")
    dispatch(engine, box, smtp, identity)
    assert len(smtp.handler.accepted) == 2
    assert identity.tokens_issued > issued


def test_a_graph_token_is_not_accepted_for_smtp(
    identity: IdentityEmulator, smtp: SmtpServer
) -> None:
    """The emulator checks the audience, so a wrong scope in the connector would fail here."""
    from jobs.microsoft.identity import GRAPH_SCOPE, ClientCredentialsTokens

    graph_token = ClientCredentialsTokens(
        TENANT,
        CLIENT_ID,
        Secret(SECRET),
        scope=GRAPH_SCOPE,
        authority_host=identity.base,
        verify=identity.ca_file,
    ).token()
    assert smtp.handler.token_check is not None
    assert not smtp.handler.token_check(MAILBOX, graph_token.reveal())


def test_a_refused_sign_in_fails_the_message_without_the_secret(
    sessions, engine, box, smtp, identity
) -> None:
    with sessions.begin() as session:
        add_oauth_account(session, box, smtp, identity, "wrong-secret-value")
    outbox_id = queue(sessions, "one")
    dispatch(engine, box, smtp, identity)
    with sessions() as session:
        message = session.get(OutboxMessage, outbox_id)
        assert message is not None and message.status == OutboxStatus.FAILED
        assert "invalid_client" in (message.last_error or "")
        assert "wrong-secret-value" not in (message.last_error or "")
    assert smtp.handler.accepted == []


def test_oauth2_without_an_app_registration_is_refused_at_setup(sessions, box, smtp) -> None:
    with sessions.begin() as session, pytest.raises(MailRuleError, match="app registration"):
        accounts.add_account(
            session,
            "Notifications",
            MAILBOX,
            Connector.SMTP,
            smtp=accounts.SmtpOptions(
                server="127.0.0.1",
                port=smtp.port,
                authentication=SmtpAuthentication.OAUTH2,
                user_name=MAILBOX,
            ),
            secrets=box,
        )
