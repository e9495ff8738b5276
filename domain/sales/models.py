"""The Business Central side of the sales data the Dynamics 365 Sales jobs read.

Every table records when a record last changed and who changed it: the sync jobs
find work by those watermarks and skip what the integration user wrote.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from domain.base import Base, UTCDateTime, enum_type

Money = Numeric(18, 4)


def _now() -> datetime:
    return datetime.now(UTC)


class Tracked:
    """Last modification time and user, indexed for the sync jobs' watermark reads."""

    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_by: Mapped[str] = mapped_column(String(50), default="")

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        name = cls.__tablename__  # type: ignore[attr-defined]
        return (Index(f"ix_{name}_modified_at", "modified_at"),)


class UnitOfMeasure(Tracked, Base):
    __tablename__ = "units_of_measure"
    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    description: Mapped[str] = mapped_column(String(50), default="")


class Item(Tracked, Base):
    __tablename__ = "items"
    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    description: Mapped[str] = mapped_column(String(100), default="")
    base_unit_of_measure: Mapped[str] = mapped_column(String(10), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Quantity on hand in the base unit: what the item availability web service reports.
    inventory: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class Resource(Tracked, Base):
    __tablename__ = "resources"
    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    base_unit_of_measure: Mapped[str] = mapped_column(String(10), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)


class Salesperson(Tracked, Base):
    __tablename__ = "salespersons"
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), default="")
    email: Mapped[str] = mapped_column(String(80), default="")


class CustomerPriceGroup(Tracked, Base):
    __tablename__ = "customer_price_groups"
    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    description: Mapped[str] = mapped_column(String(100), default="")


class Currency(Tracked, Base):
    """A foreign currency (the local currency is not one, as in Business Central)."""

    __tablename__ = "currencies"
    code: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO 4217
    description: Mapped[str] = mapped_column(String(30), default="")
    symbol: Mapped[str] = mapped_column(String(10), default="")
    # Units of this currency per one unit of the local currency.
    exchange_rate: Mapped[Decimal] = mapped_column(Numeric(18, 6), default=Decimal(1))
    decimals: Mapped[int] = mapped_column(Integer, default=2)


class Contact(Base):
    """A person (or, with a company name only, a company) in the CRM: email logging
    finds contacts by their address, and the CONTACT mapping syncs them with
    Dataverse contacts, linked to the account of their customer."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_email", "email"),
        Index("ix_contacts_modified_at", "modified_at"),
    )

    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")  # the full name
    email: Mapped[str] = mapped_column(String(80), default="")
    company_name: Mapped[str] = mapped_column(String(100), default="")
    first_name: Mapped[str] = mapped_column(String(30), default="")
    surname: Mapped[str] = mapped_column(String(30), default="")
    phone_no: Mapped[str] = mapped_column(String(30), default="")
    job_title: Mapped[str] = mapped_column(String(30), default="")
    customer_no: Mapped[str] = mapped_column(String(20), default="")
    salesperson_code: Mapped[str] = mapped_column(String(20), default="")
    # Stamped as the other tables the sync reads (set here too for contacts that email
    # logging and the sandbox add without saying when). Nullable in the database only
    # because SQLite cannot make an added column NOT NULL without copying the table.
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=_now, nullable=True)
    modified_by: Mapped[str] = mapped_column(String(50), default="")


class OpportunityStatus(StrEnum):
    NOT_STARTED = "Not Started"
    IN_PROGRESS = "In Progress"
    WON = "Won"
    LOST = "Lost"


class Opportunity(Base):
    """A sales opportunity with a contact: made from a logged email, or here, and synced
    with Dataverse opportunities by the OPPORTUNITY mapping."""

    __tablename__ = "opportunities"
    __table_args__ = (Index("ix_opportunities_modified_at", "modified_at"),)

    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    description: Mapped[str] = mapped_column(String(250), default="")
    contact_no: Mapped[str] = mapped_column(String(20), ForeignKey("contacts.no"))
    salesperson_code: Mapped[str] = mapped_column(String(20), ForeignKey("salespersons.code"))
    status: Mapped[OpportunityStatus] = mapped_column(
        enum_type(OpportunityStatus, "opportunity_status", length=20),
        default=OpportunityStatus.NOT_STARTED,
    )
    estimated_value: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    estimated_close_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    # The logged email it was made from, if it was.
    interaction_entry_no: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("interaction_log_entries.entry_no"), unique=True, nullable=True
    )
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=_now, nullable=True)
    modified_by: Mapped[str] = mapped_column(String(50), default="")


class Customer(Tracked, Base):
    __tablename__ = "customers"
    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(80), default="")
    phone_no: Mapped[str] = mapped_column(String(30), default="")
    city: Mapped[str] = mapped_column(String(30), default="")
    salesperson_code: Mapped[str] = mapped_column(String(20), default="")
    customer_price_group: Mapped[str] = mapped_column(String(10), default="")
    credit_limit: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Figures the Customer Statistics job sends; they change with postings.
    balance: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    outstanding_orders: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    shipped_not_invoiced: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total_sales: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    statistics_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SalesPrice(Tracked, Base):
    __tablename__ = "sales_prices"
    __table_args__ = (
        UniqueConstraint(
            "sales_type",
            "sales_code",
            "item_no",
            "unit_of_measure_code",
            "minimum_quantity",
            "starting_date",
            name="uq_sales_prices_key",
        ),
        Index("ix_sales_prices_modified_at", "modified_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sales_type: Mapped[str] = mapped_column(String(30))  # Customer, Customer Price Group, ...
    sales_code: Mapped[str] = mapped_column(String(20), default="")
    item_no: Mapped[str] = mapped_column(String(20))
    unit_of_measure_code: Mapped[str] = mapped_column(String(10), default="")
    minimum_quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    starting_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    ending_date: Mapped[date | None] = mapped_column(Date, nullable=True)


class SalesInvoiceHeader(Tracked, Base):
    """A posted sales invoice."""

    __tablename__ = "sales_invoice_headers"
    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_no: Mapped[str] = mapped_column(String(20))
    salesperson_code: Mapped[str] = mapped_column(String(20), default="")
    customer_price_group: Mapped[str] = mapped_column(String(10), default="")
    posting_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    currency_code: Mapped[str] = mapped_column(String(10), default="")
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    amount_including_vat: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class SalesInvoiceLine(Base):
    """Lines change only with their header, whose modification time they share."""

    __tablename__ = "sales_invoice_lines"
    document_no: Mapped[str] = mapped_column(
        ForeignKey("sales_invoice_headers.no", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(20))  # Item, Resource
    no: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(100), default="")
    quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unit_of_measure_code: Mapped[str] = mapped_column(String(10), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    line_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class DocumentType(StrEnum):
    QUOTE = "Quote"
    ORDER = "Order"


class DocumentStatus(StrEnum):
    OPEN = "Open"
    RELEASED = "Released"


class SalesHeader(Tracked, Base):
    """A sales quote or order (not yet posted)."""

    __tablename__ = "sales_headers"
    __table_args__ = (
        # The Dataverse quote or order it came from: read twice, it is still one document.
        UniqueConstraint("document_type", "dataverse_id", name="uq_sales_headers_dataverse"),
        Index("ix_sales_headers_modified_at", "modified_at"),
    )
    # The number first: a mapping's record key (orders and quotes have their own series).
    no: Mapped[str] = mapped_column(String(20), primary_key=True)
    document_type: Mapped[DocumentType] = mapped_column(
        enum_type(DocumentType, "sales_document_type", 10), primary_key=True
    )
    customer_no: Mapped[str] = mapped_column(String(20))
    salesperson_code: Mapped[str] = mapped_column(String(20), default="")
    order_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    currency_code: Mapped[str] = mapped_column(String(10), default="")
    status: Mapped[DocumentStatus] = mapped_column(
        enum_type(DocumentStatus, "sales_document_status", 10), default=DocumentStatus.OPEN
    )
    your_reference: Mapped[str] = mapped_column(String(100), default="")
    dataverse_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class SalesLine(Base):
    __tablename__ = "sales_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["document_type", "document_no"],
            ["sales_headers.document_type", "sales_headers.no"],
            ondelete="CASCADE",
        ),
    )
    document_type: Mapped[DocumentType] = mapped_column(
        enum_type(DocumentType, "sales_line_document_type", 10), primary_key=True
    )
    document_no: Mapped[str] = mapped_column(String(20), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(20), default="")  # Item, Resource; "" = text
    no: Mapped[str] = mapped_column(String(20), default="")
    description: Mapped[str] = mapped_column(String(100), default="")
    quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unit_of_measure_code: Mapped[str] = mapped_column(String(10), default="")
    unit_price: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    line_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class SalesNote(Base):
    """A note on a sales order or quote, synced with the Dataverse document's notes
    (annotations) both ways."""

    __tablename__ = "sales_notes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["document_type", "document_no"],
            ["sales_headers.document_type", "sales_headers.no"],
            ondelete="CASCADE",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_type: Mapped[DocumentType] = mapped_column(
        enum_type(DocumentType, "sales_note_document_type", 10)
    )
    document_no: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    # The annotation it is (read from Sales, or reserved before sending it there), and
    # when Sales had it for sure (None: to be sent, or sent without an answer).
    dataverse_id: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)
    in_dataverse_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


LOCAL_MODELS: dict[str, type[Base]] = {
    m.__tablename__: m
    for m in (
        UnitOfMeasure,
        Item,
        Resource,
        Salesperson,
        CustomerPriceGroup,
        Currency,
        Customer,
        Contact,
        Opportunity,
        SalesPrice,
        SalesInvoiceHeader,
        SalesHeader,
    )
}
