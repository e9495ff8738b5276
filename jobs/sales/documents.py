"""Sales order integration: orders submitted in Dynamics 365 Sales become sales orders
here, and activated quotes become sales quotes, with their lines, when the connection's
switches say so (BC's "automatically create sales orders" and "automatically process
sales quotes").

Each document is made once, whatever repeats or crashes: the local document keeps the
Dataverse id (unique per document type), and the document, its lines and its coupling
are written in one transaction; a row read again finds its document and only restores
a missing coupling. A row that refers to something not coupled yet (the account, a
product) fails alone, naming it, and is read again by the next runs (jobs.sales.rereads)
until it comes in; otherwise a run reads only what changed since the last one
(jobs.sales.delta).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, insert, select

from domain.sales.integration import (
    Coupling,
    DataverseConnection,
    SyncResult,
)
from domain.sales.models import DocumentType, SalesHeader, SalesLine, table
from domain.sales.outcome import Counters, Outcome
from domain.sales.payload import RecordError
from jobs.dataverse.client import is_deleted, parse_datetime, primary_key
from jobs.sales import delta, rereads, writes
from jobs.sales.books import Books, Result
from jobs.sales.context import SyncContext
from jobs.sales.couplings import by_dataverse
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")
H, L, DC = table(SalesHeader), table(SalesLine), table(DataverseConnection)
C = table(Coupling)
INTEGRATION = "INTEGRATION"
CHUNK = 50  # documents whose lines are read in one request


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
            "statecode",
        ]
        state = f"statecode eq {kind.state}"
        read = delta.read_changes(self.ctx.client, self.mapping, attrs)
        rows = [r for r in read.rows if not is_deleted(r) and r.get("statecode") == kind.state]
        # Documents that failed to come in (a reference not coupled yet), read again.
        waiting = rereads.waiting(self.ctx.db, self.mapping)
        seen = {str(r[pk]).lower() for r in rows}
        again: set[str] = set()
        gone: list[str] = []
        for found, missing in rereads.read_again(
            self.ctx.client, kind.entity_set, attrs, sorted(set(waiting) - seen), also=state
        ):
            rows += found
            again |= {str(r[pk]).lower() for r in found}
            gone += missing  # no longer submitted or active, or deleted: waited for no more
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
        results: list[Result] = []
        fresh = [r for r in rows if (kind.entity_set, str(r[pk])) not in self.coupled]
        for chunk in writes.chunks(fresh, CHUNK):
            results += self._take(chunk, made)
        rereads.no_news(results, waiting)
        self.books.record(results, rows_read=[i for i in [*seen, *again, *gone] if i in waiting])
        delta.save(self.ctx.db, self.mapping, read)
        for r in results:
            counters.count(r.outcome)
        return counters

    def _take(self, rows: list[dict[str, Any]], made: set[str]) -> list[Result]:
        """A chunk of documents: their lines read in one request, then every document
        that can be made written with its lines and coupling in one transaction."""
        pk = primary_key(self.kind.entity_set)
        results: list[Result] = []
        restored = [str(r[pk]) for r in rows if str(r[pk]) in made]
        lines_of = self._details([str(r[pk]) for r in rows if str(r[pk]) not in made])
        ready: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
        for row in rows:
            row_id = str(row[pk])
            if row_id in made:
                continue  # made by a run that lost its coupling: restored below
            try:
                document = self._document(row)
                details = lines_of.get(row_id.lower(), [])
                lines = [self._line(n, d) for n, d in enumerate(details, 1)]
            except RecordError as exc:
                results.append(Result("", Outcome.FAILED, str(exc), row_id, retry=False))
                continue
            ready.append((row_id, document, lines))
        numbers = self._write(ready, restored)
        for row_id, _, lines in ready:
            no = numbers[row_id]
            results.append(Result(no, Outcome.INSERTED, dataverse_id=row_id))
            log.info(
                "sales.document_created",
                type=self.kind.document_type.value,
                no=no,
                dataverse_id=row_id,
                lines=len(lines),
            )
        return results

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

    def _document(self, row: dict[str, Any]) -> dict[str, Any]:
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
        return document

    def _details(self, row_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The lines of these documents (one request), by document, in the order they were
        made; their products and units found among the couplings in one query."""
        if not row_ids:
            return {}
        kind, line_key = self.kind, primary_key(self.kind.details)
        wanted = " or ".join(f"{kind.parent} eq {row_id}" for row_id in row_ids)
        details = list(
            self.ctx.client.query(
                kind.details,
                [line_key, kind.parent, *LINE_FIELDS],
                f"({wanted})",
                key=line_key,
                orderby="createdon asc",
            )
        )
        with self.ctx.db.connect() as conn:
            self.coupled |= by_dataverse(conn, {
                "products": {str(d.get("_productid_value") or "") for d in details},
                "uoms": {str(d.get("_uomid_value") or "") for d in details},
            })  # fmt: skip
        lines_of: dict[str, list[dict[str, Any]]] = {}
        for d in details:
            lines_of.setdefault(str(d.get(kind.parent) or "").lower(), []).append(d)
        return lines_of

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

    def _write(
        self,
        ready: list[tuple[str, dict[str, Any], list[dict[str, Any]]]],
        restored: list[str],
    ) -> dict[str, str]:
        """The documents, their lines and their couplings in one transaction (a document
        is never half made); returns the numbers given. A document made by a run that
        lost its coupling only gets the coupling back."""
        kind, now = self.kind, self.ctx.now()
        if not ready and not restored:
            return {}
        with self.ctx.db.begin() as conn:
            couplings: dict[str, str] = {}  # row id -> document number
            if restored:
                found = conn.execute(
                    select(H.c.no, H.c.dataverse_id).where(
                        H.c.document_type == kind.document_type, H.c.dataverse_id.in_(restored)
                    )
                )
                couplings |= {str(r.dataverse_id): str(r.no) for r in found}
            numbers = dict(zip([r for r, _, _ in ready], self._next_nos(conn, len(ready)),
                               strict=True))  # fmt: skip
            if ready:
                conn.execute(
                    insert(H),
                    [
                        {"document_type": kind.document_type, "no": numbers[row_id],
                         "dataverse_id": row_id, "modified_at": now,
                         "modified_by": INTEGRATION, **document}
                        for row_id, document, _ in ready
                    ],
                )  # fmt: skip
            lines = [
                {"document_type": kind.document_type, "document_no": numbers[row_id], **line}
                for row_id, _, document_lines in ready
                for line in document_lines
            ]
            if lines:
                conn.execute(insert(L), lines)
            couplings |= {row_id: numbers[row_id] for row_id, _, _ in ready}
            if couplings:
                conn.execute(
                    insert(C),
                    [
                        {"local_table": "sales_headers", "local_id": no,
                         "dataverse_table": kind.entity_set, "dataverse_id": row_id,
                         "dataverse_etag": None, "last_result": SyncResult.SUCCESS,
                         "last_synced_at": now}
                        for row_id, no in couplings.items()
                    ],
                )  # fmt: skip
        return numbers

    def _next_nos(self, conn: Connection, count: int) -> list[str]:
        """The next `count` numbers of the document type's series."""
        if not count:
            return []
        prefix = self.kind.prefix
        last = conn.execute(
            select(func.max(H.c.no)).where(
                H.c.document_type == self.kind.document_type, H.c.no.like(f"{prefix}%")
            )
        ).scalar_one_or_none()
        number = int(last[len(prefix) :]) if last and last[len(prefix) :].isdigit() else 0
        return [f"{prefix}{n:06d}" for n in range(number + 1, number + 1 + count)]
