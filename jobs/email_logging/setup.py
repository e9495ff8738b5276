"""The email logging setup: one stored row, checked when written; the secret (client
secret, or the account's password for EWS basic authentication) encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.interactions.matching import BadMessage, address
from domain.interactions.models import EmailLoggingSetup, EwsAuthentication, Experience
from domain.queue import entries as ops
from domain.queue.models import JobQueueEntry
from jobs.email_logging.mailbox import SharedMailbox
from jobs.microsoft.identity import (
    EXCHANGE_SCOPE,
    GRAPH_SCOPE,
    PUBLIC_AUTHORITY_HOST,
    ClientCredentialsTokens,
    tokens_for,
)
from jobs.registry import registry
from runtime.secrets import Secret, SecretBox

MAX_BATCH = 1000


class EmailLoggingSetupError(ValueError):
    """The setup is missing, disabled, or its settings are unusable."""


@dataclass(frozen=True)
class SetupValues:
    mailbox: str
    experience: Experience
    account: str
    secret: Secret
    tenant: str = ""
    client_id: str = ""
    ews_url: str = ""
    ews_authentication: EwsAuthentication = EwsAuthentication.OAUTH2
    queue_folder: str = "Inbox"
    storage_folder: str = "Archive"
    batch_size: int = 100
    authority_host: str = PUBLIC_AUTHORITY_HOST
    graph_url: str = "https://graph.microsoft.com/v1.0"


def _https(url: str, what: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme != "https" or not parsed.netloc:
        raise EmailLoggingSetupError(f"{what} must be an https address, got {url!r}")
    return url.strip()


def check(values: SetupValues) -> SetupValues:
    """The values, cleaned; EmailLoggingSetupError names the first unusable one."""
    try:
        mailbox = address(values.mailbox, "shared mailbox")
        account = address(values.account, "account") if values.account.strip() else ""
    except BadMessage as exc:
        raise EmailLoggingSetupError(str(exc)) from None
    if not 1 <= values.batch_size <= MAX_BATCH:
        raise EmailLoggingSetupError(f"the batch size must be between 1 and {MAX_BATCH}")
    if not values.secret.reveal():
        raise EmailLoggingSetupError("the setup needs a secret (client secret or password)")
    oauth = (
        values.experience is Experience.GRAPH
        or values.ews_authentication is EwsAuthentication.OAUTH2
    )
    if oauth and not (values.tenant.strip() and values.client_id.strip()):
        raise EmailLoggingSetupError("OAuth 2.0 sign-in needs a tenant and a client id")
    if not account:
        raise EmailLoggingSetupError("the setup needs the account the job signs in as")
    if values.experience is Experience.EWS:
        _https(values.ews_url, "the EWS URL")
        for name, folder in (("queue", values.queue_folder), ("storage", values.storage_folder)):
            if not folder.strip("/ "):
                raise EmailLoggingSetupError(f"the {name} folder path is empty")
        if values.queue_folder.strip("/ ").lower() == values.storage_folder.strip("/ ").lower():
            raise EmailLoggingSetupError("the queue and storage folders must differ")
    else:
        _https(values.graph_url, "the Graph URL")
    _https(values.authority_host, "the authority host")
    return SetupValues(
        **{
            **values.__dict__,
            "mailbox": mailbox,
            "account": account,
            "tenant": values.tenant.strip(),
            "client_id": values.client_id.strip(),
        }
    )


def save_setup(session: Session, box: SecretBox, values: SetupValues) -> EmailLoggingSetup:
    """Writes the setup, disabled until `enable`: a changed setup is validated first."""
    values = check(values)
    row = session.get(EmailLoggingSetup, 1) or EmailLoggingSetup(id=1, enabled=False)
    for name, value in values.__dict__.items():
        if name != "secret":
            setattr(row, name, value)
    row.secret_encrypted = box.encrypt(values.secret)
    session.add(row)
    return row


def load_setup(session: Session) -> EmailLoggingSetup:
    row = session.get(EmailLoggingSetup, 1)
    if row is None:
        raise EmailLoggingSetupError("email logging is not set up (jobqueue email-logging setup)")
    return row


def mailbox_tokens(
    row: EmailLoggingSetup, box: SecretBox, verify: str | bool
) -> ClientCredentialsTokens:
    scope = GRAPH_SCOPE if row.experience is Experience.GRAPH else EXCHANGE_SCOPE
    if row.experience is Experience.EWS:
        host = urlparse(row.ews_url).netloc
        if host and host != "outlook.office365.com":
            scope = f"https://{host}/.default"
    return tokens_for(
        row.tenant,
        row.client_id,
        box.decrypt(row.secret_encrypted),
        scope=scope,
        authority_host=row.authority_host,
        verify=verify,
    )


def open_mailbox(row: EmailLoggingSetup, box: SecretBox, verify: str | bool) -> SharedMailbox:
    """The shared mailbox through the setup's experience (not yet signed in)."""
    if row.experience is Experience.GRAPH:
        from jobs.email_logging.graph import GraphSharedMailbox

        return GraphSharedMailbox(
            row.mailbox, mailbox_tokens(row, box, verify), graph_url=row.graph_url, verify=verify
        )
    from jobs.email_logging.ews import EwsSharedMailbox

    tokens = (
        mailbox_tokens(row, box, verify)
        if row.ews_authentication is EwsAuthentication.OAUTH2
        else None
    )
    return EwsSharedMailbox(
        row.mailbox,
        ews_url=row.ews_url,
        account=row.account,
        tokens=tokens,
        password=None if tokens else box.decrypt(row.secret_encrypted),
        queue_folder=row.queue_folder,
        storage_folder=row.storage_folder,
        verify=verify,
    )


JOB = "email-logging"


def ensure_entry(
    session: Session, row: EmailLoggingSetup, minutes: int, inactivity: int, tz: tzinfo
) -> JobQueueEntry:
    """The recurring entry of the job, on hold until email logging is enabled."""
    changes: dict[str, Any] = {
        "description": f"Email logging of {row.mailbox}",
        "recurring": True,
        "minutes_between_runs": minutes,
        "inactivity_timeout_minutes": inactivity,
        "maximum_attempts": 3,
        "rerun_delay_seconds": 60,
    }
    entry = ops.put_entry(session, row.entry_code, JOB, changes, registry, utcnow(), tz)
    if not row.enabled:
        ops.set_on_hold(session, row.entry_code)
    return entry
