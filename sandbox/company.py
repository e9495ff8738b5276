"""Cronus, the sandbox company: its catalogue, customers and posted invoices, the contacts
and mail of its salespeople, and the emails it has queued.

The demo runs the whole system on it and the tests seed from it, so both speak of the same
company. It grows by customers: each brings a contact, an invoice, two emails and two
messages; one customer gives the smallest complete company."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from domain.interactions.models import Contact
from jobs.mail.compose import compose
from jobs.sales.local import save
from sandbox.dataverse import DataverseEmulator
from sandbox.graph import GraphEmulator

SALESPEOPLE = (("JO", "Jim Olive", "jim@cronus.com"), ("AH", "Annette Hill", "annette@cronus.com"))
NAMED_CUSTOMERS = (
    ("The Cannon Group", "info@cannon.com"),
    ("Selangorian Ltd.", "info@selangorian.com"),
    ("John Haddock Insurance Co.", "info@haddock.com"),
    ("Deerfield Graphics Company", "info@deerfield.com"),
    ("Guildford Water Department", "info@guildford.com"),
    ("Beef House", "info@beefhouse.com"),
)
MAX_CUSTOMERS = 500
NEWSLETTER = "news@fabrikam.example"  # writes to a salesperson; no contact, so never logged


def customers(count: int) -> list[tuple[str, str, str, str]]:
    """(no, name, email, salesperson code) of the first `count` customers."""
    if not 1 <= count <= MAX_CUSTOMERS:
        raise ValueError(f"the sandbox company has 1 to {MAX_CUSTOMERS} customers, not {count}")
    rows = []
    for i in range(count):
        name, email = (
            NAMED_CUSTOMERS[i]
            if i < len(NAMED_CUSTOMERS)
            else (f"Customer {i + 1}", f"buyer{i + 1}@customers.example")
        )
        rows.append((f"C{i + 1}", name, email, SALESPEOPLE[i % len(SALESPEOPLE)][0]))
    return rows


def salespeople(count: int) -> list[tuple[str, str, str]]:
    """The salespeople the first `count` customers are assigned to."""
    used = {code for *_, code in customers(count)}
    return [person for person in SALESPEOPLE if person[0] in used]


def _catalogue() -> list[tuple[str, dict[str, Any]]]:
    return [
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
            "currencies",
            {
                "code": "USD",
                "description": "US Dollar",
                "symbol": "$",
                "exchange_rate": Decimal("1.08"),
            },
        ),
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
    ]


def seed_company(sessions: sessionmaker[Session], tz: tzinfo, count: int = 1) -> None:
    """The catalogue, prices, salespeople, `count` customers and one posted invoice each."""
    people = salespeople(count)
    with sessions.begin() as session:
        for table_name, values in _catalogue():
            save(session, table_name, values, user="ADMIN", tz=tz)
        for code, name, email in people:
            save(
                session,
                "salespersons",
                {"code": code, "name": name, "email": email},
                user="ADMIN",
                tz=tz,
            )
        for i, (no, name, email, person) in enumerate(customers(count)):
            save(
                session,
                "customers",
                {
                    "no": no,
                    "name": name,
                    "email": email,
                    "salesperson_code": person,
                    "customer_price_group": "RETAIL",
                    "balance": Decimal(1200 * (i + 1)),
                },
                user="ADMIN",
                tz=tz,
            )
    for i, (no, *_rest, person) in enumerate(customers(count)):
        post_invoice(sessions, tz, str(103001 + i), no, person)


def post_invoice(
    sessions: sessionmaker[Session], tz: tzinfo, no: str, customer: str, salesperson: str = "JO"
) -> None:
    """A posted sales invoice: a bicycle and an hour of the lift service."""
    with sessions.begin() as session:
        save(
            session,
            "sales_invoice_headers",
            {
                "no": no,
                "customer_no": customer,
                "salesperson_code": salesperson,
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


def seed_contacts(session: Session, count: int) -> None:
    """One contact person per customer, reachable at the customer's address."""
    for i, (_no, name, email, _person) in enumerate(customers(count)):
        session.add(  # linked to the customer: the CONTACT mapping links it to the account
            Contact(
                no=f"CT{i + 1:04d}",
                name=f"Buyer, {name}",
                email=email,
                company_name=name,
                customer_no=_no,
            )
        )


def fill_mailbox(graph: GraphEmulator, mailbox: str, count: int, now: datetime) -> int:
    """What a journal rule copied to the shared mailbox over the last days: a message from
    each contact to their salesperson and the answer, an internal note between salespeople
    and a newsletter. Returns how many interactions logging them must make."""
    addresses = {code: email for code, _name, email in SALESPEOPLE}
    received = now.astimezone(UTC) - timedelta(days=2)
    for i, (_no, name, email, person) in enumerate(customers(count)):
        salesperson = addresses[person]
        graph.deliver(
            mailbox,
            sender=email,
            to=[salesperson],
            subject=f"Order question from {name}",
            received=received + timedelta(minutes=2 * i),
        )
        graph.deliver(
            mailbox,
            sender=salesperson,
            to=[email],
            subject=f"RE: Order question from {name}",
            received=received + timedelta(minutes=2 * i + 1),
            has_attachments=True,
        )
    jim, annette = addresses["JO"], addresses["AH"]
    graph.deliver(mailbox, sender=jim, to=[annette], subject="Lunch?", received=received)
    graph.deliver(mailbox, sender=NEWSLETTER, to=[jim], subject="Fabrikam news", received=received)
    return 2 * count


def queue_emails(session: Session, count: int, now: datetime, tz: tzinfo) -> int:
    """Each customer's invoice and statement, composed to the outbox. Returns how many."""
    queued = 0
    for i, (no, name, email, _person) in enumerate(customers(count)):
        invoice = 103001 + i
        for scenario, subject, text in (
            ("Sales Invoice", f"CRONUS invoice {invoice}", f"please find invoice {invoice}"),
            (
                "Customer Statement",
                f"CRONUS statement for {no}",
                f"your balance is {1200 * (i + 1)}",
            ),
        ):
            compose(
                session,
                created_by="ADMIN",
                scenario=scenario,
                to=email,
                subject=subject,
                body=f"Dear {name},\n\n{text}.\n",
                now=now,
                tz=tz,
            )
            queued += 1
    return queued


def sell_in_sales(dv: DataverseEmulator) -> dict[str, str]:
    """A salesperson in Dynamics 365 Sales submits an order and activates a quote for the
    first synced account: a bicycle (a synced product) and a write-in line each. Call
    once the catalogue and the customers are in Sales."""
    account = dv.rows("accounts")[0]["accountid"]
    bicycle = next(p["productid"] for p in dv.rows("products") if p["productnumber"] == "1000")
    unit = next(u["uomid"] for u in dv.rows("uoms") if u["name"] == "PCS")
    prices = dv.rows("pricelevels")[0]["pricelevelid"]
    made = {}
    for entity, details, parent, name, state in (
        ("salesorders", "salesorderdetails", "salesorderid", "Web order 1", (1, 3)),
        ("quotes", "quotedetails", "quoteid", "Fleet offer", (1, 2)),
    ):
        header = {"name": name, "customerid_account@odata.bind": f"/accounts({account})",
                  "pricelevelid@odata.bind": f"/pricelevels({prices})"}  # fmt: skip
        row = dv.add(entity, header)
        dv.add(details, {f"{parent}@odata.bind": f"/{entity}({row})", "quantity": 2,
                         "priceperunit": 3900.0, "productid@odata.bind": f"/products({bicycle})",
                         "uomid@odata.bind": f"/uoms({unit})"})  # fmt: skip
        dv.add(details, {f"{parent}@odata.bind": f"/{entity}({row})", "quantity": 1,
                         "priceperunit": 25.0, "productdescription": "Delivery"})  # fmt: skip
        dv.edit(entity, row, {"statecode": state[0], "statuscode": state[1]}, by=dv.administrator)
        made[entity] = row
    return made
