"""Sets the sandbox company up the way an admin would: the Dataverse connection and the
default synchronization entries, two email accounts (SMTP and Microsoft 365) with their
scenarios and the dispatch entry, email logging of the shared mailbox, then the company's
records, contacts, mail and queued emails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.interactions.models import Experience
from domain.mail.kinds import Connector, SecureConnection, SmtpAuthentication
from domain.queue import entries as ops
from jobs.email_logging.setup import SetupValues, ensure_entry, save_setup
from jobs.mail import accounts
from jobs.registry import registry
from jobs.sales.connection import save_connection, set_switches
from jobs.sales.setup import setup_defaults
from runtime.secrets import Secret, SecretBox
from sandbox import company
from sandbox.services import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX_READER,
    SALES_MAILBOX,
    SHARED_MAILBOX,
    TENANT,
    SandboxServices,
)
from sandbox.smtp_server import PASSWORD as SMTP_PASSWORD
from sandbox.smtp_server import USER as SMTP_USER

DISPATCH_ENTRY = "EMAIL-OUTBOX"
SMTP_ACCOUNT, GRAPH_ACCOUNT = "Office", "Sales"


@dataclass(frozen=True)
class Expected:
    """What the company holds for the jobs to do: the summary is checked against it."""

    customers: int
    emails: int  # queued in all
    smtp_emails: int  # of them routed to the SMTP account (the invoices)
    interactions: int  # that logging the shared mailbox must make
    messages: int  # in the shared mailbox's Inbox
    rate_limit: int  # the SMTP account's messages per minute
    # Documents a salesperson makes in Sales between the passes, to arrive here.
    orders_from_sales: int = 1
    quotes_from_sales: int = 1


def _sales(session: Session, services: SandboxServices, box: SecretBox, tz: tzinfo) -> None:
    save_connection(
        session,
        box,
        url=services.dataverse.url,
        tenant=TENANT,
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
        authority_host=services.identity.base,
    )
    setup_defaults(session, utcnow(), tz)
    set_switches(session, tz, sales_order_integration=True, auto_create_sales_orders=True,
                 auto_process_quotes=True)  # fmt: skip


def _mail(
    session: Session, services: SandboxServices, box: SecretBox, rate_limit: int, tz: tzinfo
) -> None:
    accounts.add_account(
        session,
        SMTP_ACCOUNT,
        "office@cronus.com",
        Connector.SMTP,
        rate_limit=rate_limit,
        smtp=accounts.SmtpOptions(
            server="127.0.0.1",
            port=services.smtp.port,
            secure_connection=SecureConnection.STARTTLS,
            authentication=SmtpAuthentication.BASIC,
            user_name=SMTP_USER,
            password=Secret(SMTP_PASSWORD),
        ),
        secrets=box,
    )
    accounts.add_account(
        session,
        GRAPH_ACCOUNT,
        SALES_MAILBOX,
        Connector.MICROSOFT_365,
        mailbox=SALES_MAILBOX,
        graph=accounts.GraphOptions(
            TENANT,
            CLIENT_ID,
            Secret(CLIENT_SECRET),
            graph_url=services.graph.graph_url,
            authority_host=services.identity.base,
        ),
        secrets=box,
    )
    accounts.assign_scenario(session, "Sales Invoice", SMTP_ACCOUNT)
    accounts.assign_scenario(session, "Customer Statement", GRAPH_ACCOUNT)
    ops.add_entry(
        session,
        DISPATCH_ENTRY,
        "email-dispatch",
        {
            "description": "Send the outbox",
            "recurring": True,
            "minutes_between_runs": 1,
            "inactivity_timeout_minutes": 60,
        },
        registry,
        utcnow(),
        tz,
    )


def _email_logging(session: Session, services: SandboxServices, box: SecretBox, tz: tzinfo) -> None:
    row = save_setup(
        session,
        box,
        SetupValues(
            mailbox=SHARED_MAILBOX,
            experience=Experience.GRAPH,
            account=MAILBOX_READER,
            secret=Secret(CLIENT_SECRET),
            tenant=TENANT,
            client_id=CLIENT_ID,
            batch_size=5,
            authority_host=services.identity.base,
            graph_url=services.graph.graph_url,
        ),
    )
    row.enabled = True
    session.flush()
    ensure_entry(session, row, minutes=5, inactivity=30, tz=tz)


def set_up(
    sessions: sessionmaker[Session],
    services: SandboxServices,
    box: SecretBox,
    tz: tzinfo,
    *,
    customers: int,
    rate_limit: int,
) -> Expected:
    """Everything in place; the entries are Ready and start as soon as a scheduler runs."""
    for person in company.salespeople(customers):  # the Dataverse users salespeople come from
        services.dataverse.add_user(person[1], person[2])
    with sessions.begin() as session:
        _sales(session, services, box, tz)
        _mail(session, services, box, rate_limit, tz)
        _email_logging(session, services, box, tz)
        company.seed_contacts(session, customers)
    company.seed_company(sessions, tz, customers)
    interactions = company.fill_mailbox(services.graph, SHARED_MAILBOX, customers, utcnow())
    with sessions.begin() as session:
        emails = company.queue_emails(session, customers, utcnow(), tz)
    return Expected(
        customers=customers,
        emails=emails,
        smtp_emails=customers,  # one invoice each; the statements go through Graph
        interactions=interactions,
        messages=len(services.graph.mailboxes[SHARED_MAILBOX].messages("inbox")),
        rate_limit=rate_limit,
    )
