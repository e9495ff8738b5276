"""Which connector sends for an account, built from its stored settings."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from domain.mail.kinds import Connector, SmtpAuthentication
from domain.mail.models import SmtpSettings
from jobs.mail.dispatch import ConnectorFactory, MailConnector
from jobs.mail.errors import PermanentSendError
from jobs.mail.smtp import SmtpConnector, SmtpTarget
from runtime.secrets import Secret, SecretBox

S = SmtpSettings.__table__


def connector_factory(
    engine: Engine,
    secrets: SecretBox,
    *,
    ssl_context: ssl.SSLContext | None = None,
    oauth_token: Callable[[], Secret] | None = None,
) -> ConnectorFactory:
    def make(account: Any) -> MailConnector:
        if account.connector != Connector.SMTP:
            raise PermanentSendError(
                f"account {account.name!r}: the {account.connector} connector (Microsoft Graph) "
                "is not part of this build yet"
            )
        with engine.connect() as conn:
            smtp = conn.execute(select(S).where(S.c.account_id == account.id)).one_or_none()
        if smtp is None:
            raise PermanentSendError(f"account {account.name!r} has no SMTP settings")
        if smtp.authentication == SmtpAuthentication.OAUTH2 and oauth_token is None:
            raise PermanentSendError(
                f"account {account.name!r} uses OAuth 2.0 but no token source is configured"
            )
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
                token=oauth_token,
                ssl_context=ssl_context,
            )
        )

    return make
