"""Which connector sends for an account, built from its stored settings."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from domain.mail.kinds import Connector, SmtpAuthentication
from domain.mail.models import GraphSettings, SmtpSettings
from jobs.mail.dispatch import ConnectorFactory, MailConnector
from jobs.mail.errors import PermanentSendError
from jobs.mail.graph import GraphMailConnector
from jobs.mail.smtp import SmtpConnector, SmtpTarget
from jobs.microsoft.identity import (
    EXCHANGE_SCOPE,
    GRAPH_SCOPE,
    ClientCredentialsTokens,
    tokens_for,
)
from runtime.secrets import SecretBox

S = SmtpSettings.__table__
G = GraphSettings.__table__


def connector_factory(
    engine: Engine,
    secrets: SecretBox,
    *,
    ssl_context: ssl.SSLContext | None = None,
    ca_file: str | None = None,
    sleep: Callable[[float], None] | None = None,
) -> ConnectorFactory:
    """`ssl_context` / `ca_file` trust a private CA (the local emulators); production
    leaves them unset and uses the system's trust store."""

    def make(account: Any) -> MailConnector:
        if account.connector == Connector.SMTP:
            return _smtp(account)
        return _graph(account)

    verify: str | bool = ca_file or True
    if ssl_context is None and ca_file:
        ssl_context = ssl.create_default_context(cafile=ca_file)

    def _registration(account: Any) -> Any:
        with engine.connect() as conn:
            row = conn.execute(select(G).where(G.c.account_id == account.id)).one_or_none()
        if row is None:
            raise PermanentSendError(
                f"account {account.name!r} has no app registration (tenant, client id, secret)"
            )
        return row

    def _tokens(registration: Any, scope: str) -> ClientCredentialsTokens:
        return tokens_for(
            registration.tenant,
            registration.client_id,
            secrets.decrypt(registration.client_secret_encrypted),
            scope=scope,
            authority_host=registration.authority_host,
            verify=verify,
        )

    def _graph(account: Any) -> MailConnector:
        graph = _registration(account)
        tokens = _tokens(graph, GRAPH_SCOPE)
        # Current User: a background worker has no signed-in user, so it sends from the
        # account's own mailbox; Microsoft 365 sends from the shared mailbox.
        mailbox = account.mailbox if account.connector == Connector.MICROSOFT_365 else None
        extra = {"sleep": sleep} if sleep is not None else {}
        return GraphMailConnector(
            account.name,
            mailbox or account.address,
            tokens,
            graph_url=graph.graph_url,
            verify=verify,
            **extra,
        )

    def _smtp(account: Any) -> MailConnector:
        with engine.connect() as conn:
            smtp = conn.execute(select(S).where(S.c.account_id == account.id)).one_or_none()
        if smtp is None:
            raise PermanentSendError(f"account {account.name!r} has no SMTP settings")
        tokens = None
        if smtp.authentication == SmtpAuthentication.OAUTH2:
            tokens = _tokens(_registration(account), EXCHANGE_SCOPE)
        password = secrets.decrypt(smtp.password_encrypted) if smtp.password_encrypted else None
        return SmtpConnector(
            SmtpTarget(
                account=account.name,
                server=smtp.server,
                port=smtp.port,
                secure_connection=smtp.secure_connection,
                authentication=smtp.authentication,
                user_name=smtp.user_name,
                password=password,
                tokens=tokens,
                ssl_context=ssl_context,
            )
        )

    return make
