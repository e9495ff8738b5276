"""The Microsoft Graph mail connector against the local emulator (HTTPS, MSAL tokens):
sendMail, upload sessions for large attachments, throttling, server errors, expired
tokens, refused sign-in, unknown mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from jobs.mail.errors import PermanentSendError
from jobs.mail.graph import GraphMailConnector, UncertainSendError
from jobs.microsoft.identity import ClientCredentialsTokens
from runtime.secrets import Secret
from sandbox.graph import GraphEmulator
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = (
    "contoso.onmicrosoft.com",
    "11111111-2222-3333-4444-555555555555",
    "s3cr3t~value",
)


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphEmulator]:
    with (
        IdentityEmulator(tmp_path, TENANT, CLIENT_ID, SECRET) as identity,
        GraphEmulator(tmp_path, identity) as emulator,
    ):
        emulator.add_mailbox("sales@cronus.com")
        yield emulator


def connector(graph: GraphEmulator, secret: str = SECRET, mailbox: str = "sales@cronus.com"):
    tokens = ClientCredentialsTokens(
        TENANT, CLIENT_ID, Secret(secret), authority_host=graph.identity.base, verify=graph.ca_file
    )
    waits: list[float] = []
    conn = GraphMailConnector(
        "Sales",
        mailbox,
        tokens,
        graph_url=graph.graph_url,
        verify=graph.ca_file,
        sleep=waits.append,
    )
    return conn, waits


def mime(attachment: bytes | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sales@cronus.com"
    message["To"] = "buyer@fabrikam.com"
    message["Subject"] = "Invoice 103001"
    message["Message-ID"] = "<abc@cronus.com>"
    message.set_content("Please find the invoice attached.")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="invoice.pdf"
        )
    return message


def test_a_small_message_goes_in_one_sendmail(graph: GraphEmulator) -> None:
    conn, _ = connector(graph)
    conn.send(mime(b"%PDF small"), "sales@cronus.com", ["buyer@fabrikam.com", "audit@cronus.com"])
    [sent] = graph.mailboxes["sales@cronus.com"].sent
    assert sent["subject"] == "Invoice 103001"
    assert sent["toRecipients"] == [{"emailAddress": {"address": "buyer@fabrikam.com"}}]
    assert sent["bccRecipients"] == [{"emailAddress": {"address": "audit@cronus.com"}}]
    assert [a["name"] for a in sent["attachments"]] == ["invoice.pdf"]
    assert [p for m, p in graph.requests if "sendMail" in p] == [
        "/v1.0/users/sales@cronus.com/sendMail"
    ]


def test_a_large_attachment_goes_through_an_upload_session(graph: GraphEmulator) -> None:
    import base64

    big = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
    conn, _ = connector(graph)
    conn.send(mime(big), "sales@cronus.com", ["buyer@fabrikam.com"])
    [sent] = graph.mailboxes["sales@cronus.com"].sent
    [attachment] = sent["attachments"]
    assert base64.b64decode(attachment["contentBytes"]) == big
    puts = [p for m, p in graph.requests if m == "PUT"]
    assert len(puts) == 2  # 5 MiB in chunks of 3.125 MiB
    assert graph.mailboxes["sales@cronus.com"].drafts == {}


def test_throttling_waits_for_retry_after_and_unavailable_is_retried(
    graph: GraphEmulator,
) -> None:
    # https://learn.microsoft.com/en-us/graph/throttling: 429 (and 503) with Retry-After
    # were not processed; wait as asked, then send again.
    graph.inject("/sendMail$", 429, retry_after=7)
    graph.inject("/sendMail$", 503)
    conn, waits = connector(graph)
    conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    assert waits[0] == 7.0 and len(waits) == 2
    assert len(graph.mailboxes["sales@cronus.com"].sent) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_send_answered_with_an_uncertain_error_is_not_sent_again(
    graph: GraphEmulator, status: int
) -> None:
    graph.inject("/sendMail$", status, after=True)  # Graph sent it, then the answer failed
    conn, waits = connector(graph)
    with pytest.raises(UncertainSendError, match=f"{status}"):
        conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    assert len(graph.mailboxes["sales@cronus.com"].sent) == 1 and waits == []


def test_an_expired_token_is_replaced_once(graph: GraphEmulator) -> None:
    conn, _ = connector(graph)
    conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    graph.expire_tokens()
    conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    assert graph.tokens_issued == 2
    assert len(graph.mailboxes["sales@cronus.com"].sent) == 2


def test_a_refused_sign_in_fails_clearly_without_the_secret(graph: GraphEmulator) -> None:
    conn, _ = connector(graph, secret="wrong-secret")
    with pytest.raises(PermanentSendError, match="invalid_client") as raised:
        conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    assert "wrong-secret" not in str(raised.value) and SECRET not in str(raised.value)


def test_an_unknown_mailbox_fails_with_graphs_error(graph: GraphEmulator) -> None:
    conn, _ = connector(graph, mailbox="nobody@cronus.com")
    with pytest.raises(PermanentSendError, match="ErrorInvalidUser"):
        conn.send(mime(), "nobody@cronus.com", ["buyer@fabrikam.com"])


def test_microsoft_365_accounts_send_through_the_dispatcher(
    graph: GraphEmulator, sessions, engine
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.fernet import Fernet

    from domain.mail.kinds import Connector, OutboxStatus
    from domain.mail.models import OutboxMessage
    from jobs.mail import accounts
    from jobs.mail.compose import compose
    from jobs.mail.connectors import connector_factory
    from jobs.mail.dispatch import MailDispatcher
    from runtime.secrets import SecretBox

    box = SecretBox(Fernet.generate_key())
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with sessions.begin() as session:
        accounts.add_account(
            session,
            "Sales",
            "sales@cronus.com",
            Connector.MICROSOFT_365,
            secrets=box,
            graph=accounts.GraphOptions(
                TENANT,
                CLIENT_ID,
                Secret(SECRET),
                graph_url=graph.graph_url,
                authority_host=graph.identity.base,
            ),
        )
        first = compose(
            session,
            created_by="ann",
            scenario="Sales Invoice",
            to="buyer@fabrikam.com",
            subject="Invoice",
            body="b",
            now=now,
        ).id
        second = compose(
            session,
            created_by="ann",
            scenario="Sales Invoice",
            to="buyer@fabrikam.com",
            subject="Invoice 2",
            body="b",
            now=now,
        ).id
    graph.inject("/sendMail$", 429, retry_after=120)  # longer than the connector waits in place
    factory = connector_factory(engine, box, ca_file=graph.ca_file, sleep=lambda _s: None)
    counters = MailDispatcher(engine, factory, clock=lambda: now).run(max_seconds=5)
    assert counters.sent == 1 and counters.retried == 1
    with sessions() as session:
        waiting = [
            m for m in (session.get(OutboxMessage, first), session.get(OutboxMessage, second)) if m
        ]
    [message] = waiting
    assert message.status == OutboxStatus.QUEUED
    assert message.send_after == now + timedelta(seconds=120)
    assert "TooManyRequests" in (message.last_error or "")
    assert len(graph.mailboxes["sales@cronus.com"].sent) == 1


def test_an_untrusted_graph_certificate_fails_at_once_without_retries(
    graph: GraphEmulator,
) -> None:
    """Waiting does not make a certificate trusted: one attempt, no backoff, a clear reason."""
    from jobs.mail.errors import TransientSendError

    tokens = ClientCredentialsTokens(
        TENANT, CLIENT_ID, Secret(SECRET), authority_host=graph.identity.base, verify=graph.ca_file
    )
    waits: list[float] = []
    conn = GraphMailConnector(  # the token is fetched trusting the CA; Graph without it
        "Sales", "sales@cronus.com", tokens, graph_url=graph.graph_url, sleep=waits.append
    )
    with pytest.raises(TransientSendError, match="Graph not trusted") as failure:
        conn.send(mime(), "sales@cronus.com", ["buyer@fabrikam.com"])
    assert waits == [] and conn.graph.requests == 1
    assert SECRET not in str(failure.value)
    assert graph.mailboxes["sales@cronus.com"].sent == []
