"""Every outside service the system talks to, started on loopback: the Microsoft identity
platform, Graph mail, the Dataverse Web API and an SMTP server, with one CA file that
trusts them all. Nothing outside the machine is contacted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.dataverse import DataverseEmulator
from sandbox.graph import GraphEmulator
from sandbox.identity import IdentityEmulator
from sandbox.smtp_server import SmtpServer

# The sandbox tenant's one app registration: Dataverse, Graph mail and the mailbox reader.
TENANT = "cronus.onmicrosoft.com"
CLIENT_ID = "5c5c5c5c-0000-4000-8000-000000000005"
CLIENT_SECRET = "sandbox~app~secret"
SHARED_MAILBOX = "emaillogging@cronus.com"
MAILBOX_READER = "logger@cronus.com"
SALES_MAILBOX = "sales@cronus.com"  # a Microsoft 365 email account sends from it


@dataclass
class SandboxServices:
    identity: IdentityEmulator
    graph: GraphEmulator
    dataverse: DataverseEmulator
    smtp: SmtpServer
    ca_file: str  # every emulator's certificate, for JOBQUEUE_CA_FILE


@contextmanager
def sandbox_services(folder: Path) -> Iterator[SandboxServices]:
    """Starts the emulators (their certificates go to `folder`) and stops them after."""
    with (
        IdentityEmulator(folder, TENANT, CLIENT_ID, CLIENT_SECRET) as identity,
        GraphEmulator(folder, identity) as graph,
        DataverseEmulator(folder, identity, CLIENT_ID) as dataverse,
        SmtpServer(folder) as smtp,
    ):
        graph.add_mailbox(SHARED_MAILBOX)
        graph.add_mailbox(SALES_MAILBOX)
        bundle = folder / "sandbox-ca.pem"
        bundle.write_text(
            "".join(
                Path(pem).read_text() for pem in (graph.ca_file, dataverse.ca_file, smtp.ca_file)
            )
        )
        yield SandboxServices(identity, graph, dataverse, smtp, str(bundle))
