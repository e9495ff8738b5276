"""The Dataverse connection: one stored row; the client secret encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from urllib.parse import urlparse

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from domain.sales.integration import DataverseConnection
from domain.sales.models import table
from jobs.dataverse.client import DataverseClient
from jobs.microsoft.identity import PUBLIC_AUTHORITY_HOST, tokens_for
from runtime.secrets import Secret, SecretBox

DC = table(DataverseConnection)


class DataverseSetupError(ValueError):
    """The connection is missing or its settings are unusable."""


def check_url(url: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme != "https" or not parsed.netloc or parsed.path.strip("/"):
        raise DataverseSetupError(
            f"the Dataverse URL must be the environment's https address, such as "
            f"https://contoso.crm.dynamics.com, got {url!r}"
        )
    return f"https://{parsed.netloc}"


def save_connection(
    session: Session,
    box: SecretBox,
    *,
    url: str,
    tenant: str,
    client_id: str,
    client_secret: Secret,
    authority_host: str = PUBLIC_AUTHORITY_HOST,
) -> DataverseConnection:
    url = check_url(url)
    if not tenant.strip() or not client_id.strip():
        raise DataverseSetupError("the connection needs a tenant and a client id")
    if not client_secret.reveal():
        raise DataverseSetupError("the connection needs a client secret")
    row = session.get(DataverseConnection, 1) or DataverseConnection(id=1)
    if row.url and row.url != url:
        row.integration_user_id = None  # another environment: another application user
        row.default_price_list_id = None
    row.url, row.tenant, row.client_id = url, tenant.strip(), client_id.strip()
    row.client_secret_encrypted = box.encrypt(client_secret)
    row.authority_host = authority_host
    row.enabled = True
    session.add(row)
    return row


@dataclass
class Connected:
    client: DataverseClient
    integration_user_id: str


def connect(db: Engine, box: SecretBox, verify: str | bool = True) -> Connected:
    """A client signed in as the app registration, and the integration user it acts as."""
    with db.connect() as conn:
        row = conn.execute(select(DC)).one_or_none()
    if row is None:
        raise DataverseSetupError("no Dataverse connection is set up (jobqueue sales setup)")
    if not row.enabled:
        raise DataverseSetupError("the Dataverse connection is disabled")
    tokens = tokens_for(
        row.tenant,
        row.client_id,
        box.decrypt(row.client_secret_encrypted),
        scope=f"{row.url}/.default",
        authority_host=row.authority_host,
        verify=verify,
    )
    client = DataverseClient(row.url, tokens, verify=verify)
    user = row.integration_user_id
    if user is None:
        user = client.whoami()
        with db.begin() as conn:
            conn.execute(update(DC).where(DC.c.id == 1).values(integration_user_id=user))
    return Connected(client, user)


SWITCHES = ("sales_order_integration", "auto_create_sales_orders", "auto_process_quotes")
# The entries of sales order integration, and the switches that must all be on for each
# to run: as in Business Central, switched off, they stay on hold instead of running idle.
SWITCHED_ENTRIES = {
    "SALESORDER-ORDER": ("sales_order_integration", "auto_create_sales_orders"),
    "QUOTE-SALESQUOTE": ("sales_order_integration", "auto_process_quotes"),
    "SALESORDER-RELEASED": ("sales_order_integration",),
    "SALESORDER-NOTES": ("sales_order_integration",),
}


def switched_on(state: dict[str, bool], entry_code: str) -> bool:
    return all(state[name] for name in SWITCHED_ENTRIES[entry_code])


def set_switches(session: Session, tz: tzinfo, **switches: bool | None) -> dict[str, bool]:
    """The connection's sales order integration switches (those given None stay); the
    entries they govern are set Ready or On Hold to match."""
    unknown = set(switches) - set(SWITCHES)
    if unknown:
        raise DataverseSetupError(
            f"no switch {sorted(unknown)[0]!r} (switches: {', '.join(SWITCHES)})"
        )
    row = session.get(DataverseConnection, 1)
    if row is None:
        raise DataverseSetupError("no Dataverse connection is set up (jobqueue sales setup)")
    for name, value in switches.items():
        if value is not None:
            setattr(row, name, value)
    state = {name: bool(getattr(row, name)) for name in SWITCHES}
    session.flush()
    follow_switches(session, state, tz)
    return state


def switches(session: Session) -> dict[str, bool]:
    row = session.get(DataverseConnection, 1)
    return {name: bool(row and getattr(row, name)) for name in SWITCHES}


def follow_switches(session: Session, state: dict[str, bool], tz: tzinfo) -> None:
    """Sets the governed entries Ready (switched on) or On Hold (off), when they exist."""
    from domain.clock import utcnow
    from domain.queue import entries as ops
    from domain.queue.models import JobQueueEntry
    from domain.queue.status import EntryStatus

    for code in SWITCHED_ENTRIES:
        entry = session.execute(
            select(JobQueueEntry).where(JobQueueEntry.code == code)
        ).scalar_one_or_none()
        if entry is None:
            continue
        if not switched_on(state, code):
            if entry.status != EntryStatus.ON_HOLD:
                ops.set_on_hold(session, code)
        elif entry.status == EntryStatus.ON_HOLD:
            ops.set_ready(session, code, utcnow(), tz)
