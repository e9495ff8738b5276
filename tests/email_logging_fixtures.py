"""The identity + Graph mail emulator, the EWS emulator, a shared mailbox in each, and a
directory of salespeople and contacts the email logging tests share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy.orm import Session, sessionmaker

from domain.interactions.models import Contact, EmailLoggingSetup, EwsAuthentication, Experience
from jobs.email_logging.ews import EwsSharedMailbox
from jobs.email_logging.graph import GraphSharedMailbox
from jobs.email_logging.setup import SetupValues, save_setup
from jobs.microsoft.identity import EXCHANGE_SCOPE, ClientCredentialsTokens
from jobs.sales.local import save
from runtime.secrets import Secret, SecretBox
from sandbox.ews import EwsEmulator
from sandbox.graph import GraphEmulator
from sandbox.identity import EXCHANGE_RESOURCE, IdentityEmulator

TENANT, CLIENT_ID, SECRET = "cronus.onmicrosoft.com", "7b7b7b7b-0000-4000-8000-000000000002", "el~s"
MAILBOX = "emaillogging@cronus.example"
ACCOUNT = "logger@cronus.example"
PASSWORD = "on-prem password"
SALESPEOPLE = {"JO": "jo@cronus.example", "AM": "Annette.Hill@cronus.example"}
CONTACTS = {
    "CT100": "robin@fabrikam.example",
    "CT200": "Kim@Adatum.example",
    "CT300": "kim@adatum.example",  # two contacts share an address
}


@dataclass
class MailSandbox:
    identity: IdentityEmulator
    graph: GraphEmulator
    ews: EwsEmulator
    box: SecretBox
    bundle: str
    key: str

    def graph_mailbox(self, **kwargs: Any) -> GraphSharedMailbox:
        return GraphSharedMailbox(
            MAILBOX, self.tokens(), graph_url=self.graph.graph_url, verify=self.bundle, **kwargs
        )

    def tokens(self, scope: str | None = None) -> ClientCredentialsTokens:
        return ClientCredentialsTokens(
            TENANT,
            CLIENT_ID,
            Secret(SECRET),
            authority_host=self.identity.base,
            verify=self.bundle,
            **({"scope": scope} if scope else {}),
        )

    def ews_mailbox(self, basic: bool = False) -> EwsSharedMailbox:
        return EwsSharedMailbox(
            MAILBOX,
            ews_url=self.ews.url,
            account=ACCOUNT,
            tokens=None if basic else self.tokens(EXCHANGE_SCOPE),
            password=Secret(PASSWORD) if basic else None,
            queue_folder="Inbox",
            storage_folder="Logged/Archive",
            verify=self.bundle,
        )

    def setup_values(self, experience: Experience, basic: bool = False) -> SetupValues:
        return SetupValues(
            mailbox=MAILBOX,
            experience=experience,
            account=ACCOUNT,
            secret=Secret(PASSWORD if basic else SECRET),
            tenant=TENANT,
            client_id=CLIENT_ID,
            ews_url=self.ews.url,
            ews_authentication=EwsAuthentication.BASIC if basic else EwsAuthentication.OAUTH2,
            queue_folder="Inbox",
            storage_folder="Logged/Archive",
            batch_size=3,
            authority_host=self.identity.base,
            graph_url=self.graph.graph_url,
        )


def start(folder: Path) -> Iterator[MailSandbox]:
    with (
        IdentityEmulator(folder, TENANT, CLIENT_ID, SECRET) as identity,
        GraphEmulator(folder, identity) as graph,
        EwsEmulator(
            folder,
            token_valid=lambda token: identity.token_valid(token, EXCHANGE_RESOURCE),
            users={ACCOUNT: PASSWORD},
        ) as ews,
    ):
        graph.add_mailbox(MAILBOX)
        ews.add_mailbox(MAILBOX, delegates=[ACCOUNT]).path("Logged/Archive")
        bundle = folder / "mail-ca.pem"
        bundle.write_text(Path(graph.ca_file).read_text() + Path(ews.ca_file).read_text())
        key = Fernet.generate_key()
        yield MailSandbox(identity, graph, ews, SecretBox(key), str(bundle), key.decode())


def seed_directory(sessions: sessionmaker[Session], tz: Any) -> None:
    with sessions.begin() as session:
        for code, email in SALESPEOPLE.items():
            save(
                session,
                "salespersons",
                {"code": code, "name": code, "email": email},
                user="test",
                tz=tz,
            )
        for no, email in CONTACTS.items():
            session.add(Contact(no=no, name=no, email=email, company_name=""))


def configure(
    sessions: sessionmaker[Session],
    sandbox: MailSandbox,
    experience: Experience,
    basic: bool = False,
) -> None:
    with sessions.begin() as session:
        row: EmailLoggingSetup = save_setup(
            session, sandbox.box, sandbox.setup_values(experience, basic)
        )
        row.enabled = True
