"""Sales order integration: orders submitted in Dynamics 365 Sales become sales orders
here, and activated quotes become sales quotes, with their lines, when the connection's
switches say so (BC's "automatically create sales orders" and "automatically process
sales quotes").

Each document is made once, whatever repeats or crashes: the local document keeps the
Dataverse id (unique per document type), and the document, its lines and its coupling
are written in one transaction; a row read again finds its document and only restores
a missing coupling. A row that refers to something not coupled yet (the account, a
product) fails alone, naming it, and is tried again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select

from domain.sales.integration import DataverseConnection
from domain.sales.models import DocumentType, SalesHeader, SalesLine, table
from domain.sales.outcome import Counters, Outcome
from domain.sales.payload import RecordError
from jobs.dataverse.client import parse_datetime, primary_key
from jobs.sales.books import Books, Result
from jobs.sales.context import SyncContext
from jobs.sales.couplings import by_dataverse, couple, find
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")
H, L, DC = table(SalesHeader), table(SalesLine), table(DataverseConnection)
INTEGRATION = "INTEGRATION"


@dataclass(frozen=True)
class Kind:
    document_type: DocumentType
    entity_set: str
    details: str  # the lines' entity set
    parent: str  # a line's lookup to its document
    state: int  # the statecode of rows to take: Submitted (orders), Active (quotes)
    switch: str  # the connection's switch for automatic processing
    prefix: str  # of the local document numbers


ORDERS = Kind(
    DocumentType.ORDER,
    "salesorders",
    "salesorderdetails",
    "_salesorderid_value",
    1,
    "auto_create_sales_orders",
    "SO",
)
QUOTES = Kind(
    DocumentType.QUOTE, "quotes", "quotedetails", "_quoteid_value", 1, "auto_process_quotes", "SQ"
)
LINE_FIELDS = ["_productid_value", "productdescription", "quantity", "priceperunit", "_uomid_value"]


class DocumentIntake:
    def __init__(self, ctx: SyncContext, mapping: Mapping, books: Books, kind: Kind) -> None:
        self.ctx, self.mapping, self.books, self.kind = ctx, mapping, books, kind
        # (entity set, row id) -> coupling, for the rows this run reads and what they name
        self.coupled: dict[tuple[str, str], Any] = {}

    def pull(self) -> Counters:
        counters = Counters()
        if not self._switched_on():
            return counters
        kind, pk = self.kind, primary_key(self.kind.entity_set)
        attrs = [
            pk,
            "name",
            "_customerid_value",
            "_ownerid_value",
            "_transactioncurrencyid_value",
            "modifiedon",
        ]
        rows = list(
            self.ctx.client.query(kind.entity_set, attrs, f"statecode eq {kind.state}", key=pk)
        )
        ids = [str(r[pk]) for r in rows]
        with self.ctx.db.connect() as conn:  # what the rows refer to, read once
            made = set(
                conn.execute(
                    select(H.c.dataverse_id).where(
                        H.c.document_type == kind.document_type, H.c.dataverse_id.in_(ids)
                    )
                ).scalars()
            )
            self.coupled = by_dataverse(conn, {
                kind.entity_set: set(ids),
                "accounts": {str(r.get("_customerid_value") or "") for r in rows},
                "systemusers": {str(r.get("_ownerid_value") or "") for r in rows},
                "transactioncurrencies": {
                    str(r.get("_transactioncurrencyid_value") or "") for r in rows
                },
            })  # fmt: skip
        results = []
        for row in rows:
            row_id = str(row[pk])
            if (kind.entity_set, row_id) in self.coupled:
                continue  # made here by an earlier run, or sent from here
            try:
                if row_id in made:  # made by a run that lost its coupling: restored
                    self._write(row_id, {}, [])
                    continue
                document, lines = self._document(row)
                no = self._write(row_id, document, lines)
            except RecordError as exc:
                results.append(Result("", Outcome.FAILED, str(exc), row_id, retry=False))
                continue
            results.append(Result(no, Outcome.INSERTED, dataverse_id=row_id))
            log.info(
                "sales.document_created",
                type=kind.document_type.value,
                no=no,
                dataverse_id=row_id,
                lines=len(lines),
            )
        self.books.record(results)
        for r in results:
            counters.count(r.outcome)
        return counters

    def _switched_on(self) -> bool:
        with self.ctx.db.connect() as conn:
            row = conn.execute(select(DC)).one_or_none()
        return bool(row and row.sales_order_integration and getattr(row, self.kind.switch))

    def _local(self, entity_set: str, row_id: str | None, what: str) -> str:
        found = self.coupled.get((entity_set, str(row_id))) if row_id else None
        if found is None:
            state = "missing" if not row_id else f"({entity_set}({row_id})) is not coupled here yet"
            raise RecordError(f"its {what} {state}")
        return str(found.local_id)

    def _document(self, row: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        kind, pk = self.kind, primary_key(self.kind.entity_set)
        customer = self._local("accounts", row.get("_customerid_value"), "account")
        person = self.coupled.get(("systemusers", str(row.get("_ownerid_value"))))
        currency = row.get("_transactioncurrencyid_value")
        base = self.ctx.lookups.currency("", "transactioncurrencyid")
        code = (
            ""
            if not currency or base.endswith(f"({currency})")
            else self._local("transactioncurrencies", currency, "currency")
        )
        modified = parse_datetime(row.get("modifiedon"))
        document = {
            "customer_no": customer,
            "salesperson_code": str(person.local_id) if person else "",
            "currency_code": code,
            "your_reference": str(row.get("name") or "")[:100],
            "order_date": modified.date() if modified else None,
        }
        line_key = primary_key(kind.details)
        found = self.ctx.client.query(
            kind.details,
            [line_key, *LINE_FIELDS],
            f"{kind.parent} eq {row[pk]}",
            key=line_key,
            orderby="createdon asc",
        )
        details = list(found)
        with self.ctx.db.connect() as conn:  # the lines' products and units, read once
            self.coupled |= by_dataverse(conn, {
                "products": {str(d.get("_productid_value") or "") for d in details},
                "uoms": {str(d.get("_uomid_value") or "") for d in details},
            })  # fmt: skip
        lines = [self._line(n, d) for n, d in enumerate(details, start=1)]
        return document, lines

    def _line(self, number: int, detail: dict[str, Any]) -> dict[str, Any]:
        quantity = Decimal(str(detail.get("quantity") or 0))
        price = Decimal(str(detail.get("priceperunit") or 0))
        line: dict[str, Any] = {
            "line_no": number * 10000,
            "type": "",
            "no": "",
            "description": "",
            "unit_of_measure_code": "",
            "quantity": quantity,
            "unit_price": price,
            "line_amount": quantity * price,
        }
        product = detail.get("_productid_value")
        if not product:  # a write-in product: a line of text and amounts
            line |= {"type": "", "description": str(detail.get("productdescription") or "")[:100]}
            return line
        found = self.coupled.get(("products", str(product)))
        unit = self.coupled.get(("uoms", str(detail.get("_uomid_value"))))
        if found is None:
            raise RecordError(
                f"its product products({product}) is not coupled to an item or resource"
            )
        line["type"] = "Item" if found.local_table == "items" else "Resource"
        line["no"] = str(found.local_id)
        line["unit_of_measure_code"] = str(unit.local_id) if unit else ""
        return line

    def _write(self, row_id: str, document: dict[str, Any], lines: list[dict[str, Any]]) -> str:
        """The document, its lines and its coupling in one transaction."""
        kind, now = self.kind, self.ctx.now()
        with self.ctx.db.begin() as conn:
            existing = conn.execute(
                select(H.c.no).where(
                    H.c.document_type == kind.document_type, H.c.dataverse_id == row_id
                )
            ).scalar_one_or_none()
            if existing is not None:  # made by a run that lost its coupling
                self._couple(conn, existing, row_id)
                return str(existing)
            no = self._next_no(conn)
            conn.execute(
                insert(H).values(
                    document_type=kind.document_type,
                    no=no,
                    dataverse_id=row_id,
                    modified_at=now,
                    modified_by=INTEGRATION,
                    **document,
                )
            )
            if lines:
                conn.execute(
                    insert(L),
                    [
                        {"document_type": kind.document_type, "document_no": no, **line}
                        for line in lines
                    ],
                )
            self._couple(conn, no, row_id)
        return no

    def _couple(self, conn: Connection, no: str, row_id: str) -> None:
        if find(conn, "sales_headers", no, self.kind.entity_set) is None:
            couple(conn, "sales_headers", no, self.kind.entity_set, row_id, None, self.ctx.now())

    def _next_no(self, conn: Connection) -> str:
        prefix = self.kind.prefix
        last = conn.execute(
            select(func.max(H.c.no)).where(
                H.c.document_type == self.kind.document_type, H.c.no.like(f"{prefix}%")
            )
        ).scalar_one_or_none()
        number = int(last[len(prefix) :]) + 1 if last and last[len(prefix) :].isdigit() else 1
        return f"{prefix}{number:06d}"
