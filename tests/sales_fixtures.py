"""A seeded company, the identity and Dataverse emulators, and helpers the sales tests share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.sales.defaults import DEFAULTS
from jobs.sales.connection import SWITCHED_ENTRIES, connect, save_connection
from jobs.sales.engine import Counters, SyncEngine
from jobs.sales.setup import setup_defaults
from runtime.secrets import Secret, SecretBox
from sandbox.company import post_invoice as invoice
from sandbox.company import seed_company as seed
from sandbox.dataverse import DataverseEmulator
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = "cronus.onmicrosoft.com", "9a9a9a9a-0000-4000-8000-000000000001", "dv~s"
ORDER = [m.name for m in DEFAULTS]
# The entries that run while sales order integration is switched off (the default).
RUNNING = [m.entry_code for m in DEFAULTS if m.entry_code not in SWITCHED_ENTRIES]
__all__ = ["ORDER", "RUNNING", "Sandbox", "configure", "invoice", "seed", "start", "sync"]


@dataclass
class Sandbox:
    identity: IdentityEmulator
    dataverse: DataverseEmulator
    box: SecretBox
    bundle: str  # both emulators' certificates, for clients that trust one CA file
    key: str  # the secret key (JOBQUEUE_SECRET_KEY) the box encrypts with


def start(folder: Path) -> Iterator[Sandbox]:
    with (
        IdentityEmulator(folder, TENANT, CLIENT_ID, SECRET) as identity,
        DataverseEmulator(folder, identity, CLIENT_ID) as dataverse,
    ):
        bundle = folder / "sandbox-ca.pem"
        bundle.write_text(Path(identity.ca_file).read_text() + Path(dataverse.ca_file).read_text())
        key = Fernet.generate_key()
        yield Sandbox(identity, dataverse, SecretBox(key), str(bundle), key.decode())


def configure(sessions: sessionmaker[Session], sandbox: Sandbox, tz: Any) -> None:
    with sessions.begin() as session:
        save_connection(
            session,
            sandbox.box,
            url=sandbox.dataverse.url,
            tenant=TENANT,
            client_id=CLIENT_ID,
            client_secret=Secret(SECRET),
            authority_host=sandbox.identity.base,
        )
        setup_defaults(session, utcnow(), tz)


def sync(
    engine: Engine, sandbox: Sandbox, tz: Any, *names: str, waits: list[float] | None = None
) -> dict[str, Counters]:
    connected = connect(engine, sandbox.box, sandbox.bundle)
    if waits is not None:
        connected.client.sleep = waits.append
    else:
        connected.client.sleep = lambda _s: None
    sync_engine = SyncEngine(engine, connected.client, connected.integration_user_id, tz=tz)
    try:
        return {name: sync_engine.run(name) for name in (names or ORDER)}
    finally:
        connected.client.close()
