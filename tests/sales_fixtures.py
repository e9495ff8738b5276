"""A seeded company, the identity and Dataverse emulators, and helpers the sales tests share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from admin.sales import setup_defaults
from domain.clock import utcnow
from domain.sales.defaults import DEFAULTS
from jobs.sales.connection import connect, save_connection
from jobs.sales.engine import Counters, SyncEngine
from jobs.sales.local import save
from runtime.secrets import Secret, SecretBox
from sandbox.dataverse import DataverseEmulator
from sandbox.graph import GraphEmulator

TENANT, CLIENT_ID, SECRET = "cronus.onmicrosoft.com", "9a9a9a9a-0000-4000-8000-000000000001", "dv~s"
ORDER = [m.name for m in DEFAULTS]


@dataclass
class Sandbox:
    identity: GraphEmulator
    dataverse: DataverseEmulator
    box: SecretBox
    bundle: str  # both emulators' certificates, for clients that trust one CA file
    key: str  # the secret key (JOBQUEUE_SECRET_KEY) the box encrypts with


def start(folder: Path) -> Iterator[Sandbox]:
    with (
        GraphEmulator(folder, TENANT, CLIENT_ID, SECRET) as identity,
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


def seed(sessions: sessionmaker[Session], tz: Any) -> None:
    rows: list[tuple[str, dict[str, Any]]] = [
        ("units_of_measure", {"code": "PCS", "description": "Pieces"}),
        ("units_of_measure", {"code": "HOUR", "description": "Hour"}),
        (
            "items",
            {
                "no": "1000",
                "description": "Bicycle",
                "base_unit_of_measure": "PCS",
                "unit_price": Decimal("4000"),
            },
        ),
        (
            "items",
            {
                "no": "1001",
                "description": "Touring Bicycle",
                "base_unit_of_measure": "PCS",
                "unit_price": Decimal("5000"),
            },
        ),
        (
            "resources",
            {
                "no": "LIFT",
                "name": "Lift service",
                "base_unit_of_measure": "HOUR",
                "unit_price": Decimal("90"),
            },
        ),
        ("customer_price_groups", {"code": "RETAIL", "description": "Retail"}),
        (
            "sales_prices",
            {
                "sales_type": "Customer Price Group",
                "sales_code": "RETAIL",
                "item_no": "1000",
                "unit_of_measure_code": "PCS",
                "unit_price": Decimal("3800"),
            },
        ),
        (
            "sales_prices",
            {
                "sales_type": "Customer",
                "sales_code": "C1",
                "item_no": "1000",
                "unit_of_measure_code": "PCS",
                "unit_price": Decimal("3500"),
            },
        ),
        ("salespersons", {"code": "JO", "name": "Jim Olive", "email": "jim@cronus.com"}),
        (
            "customers",
            {
                "no": "C1",
                "name": "The Cannon Group",
                "email": "info@cannon.com",
                "salesperson_code": "JO",
                "customer_price_group": "RETAIL",
                "balance": Decimal("1200"),
            },
        ),
    ]
    with sessions.begin() as session:
        for table_name, values in rows:
            save(session, table_name, values, user="ADMIN", tz=tz)
    invoice(sessions, tz, "103001", "C1")


def invoice(sessions: sessionmaker[Session], tz: Any, no: str, customer: str) -> None:
    with sessions.begin() as session:
        save(
            session,
            "sales_invoice_headers",
            {
                "no": no,
                "customer_no": customer,
                "salesperson_code": "JO",
                "customer_price_group": "RETAIL",
                "posting_date": date(2026, 11, 20),
                "amount": Decimal("4090"),
                "amount_including_vat": Decimal("4948.90"),
            },
            user="ADMIN",
            tz=tz,
            lines=[
                {
                    "document_no": no,
                    "line_no": 10000,
                    "type": "Item",
                    "no": "1000",
                    "description": "Bicycle",
                    "quantity": Decimal(1),
                    "unit_of_measure_code": "PCS",
                    "unit_price": Decimal("4000"),
                    "line_amount": Decimal("4000"),
                },
                {
                    "document_no": no,
                    "line_no": 20000,
                    "type": "Resource",
                    "no": "LIFT",
                    "description": "Lift service",
                    "quantity": Decimal(1),
                    "unit_of_measure_code": "HOUR",
                    "unit_price": Decimal("90"),
                    "line_amount": Decimal("90"),
                },
            ],
        )


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
