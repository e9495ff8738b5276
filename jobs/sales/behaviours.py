"""What some mappings do beyond their field mappings (the documented rules), a chunk
of records at a time:

- UNITOFMEASURE: a unit group holds exactly one unit, its base unit, which is coupled
  too (products refer to it).
- ITEM-PRODUCT: item sync keeps a price list in Dataverse and the item's price in it.
- SALESPRC-PRODPRICE: a sales price whose ending date has passed is no current price:
  its price-list line is removed (a product price level has no inactive state).
- POSTEDSALESINV-INV: each invoice and its lines are created in one change set (all or
  nothing), many invoices to a `$batch`; every line's product and unit must be coupled.
- SALESPEOPLE: a Dataverse user is coupled to the salesperson with the same email, or
  becomes a new salesperson.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Select, String, bindparam, cast, func, select, update

from domain.sales.integration import Coupling, DataverseConnection
from domain.sales.models import (
    Opportunity,
    SalesHeader,
    SalesInvoiceLine,
    SalesLine,
    Salesperson,
    SalesPrice,
    table,
)
from domain.sales.outcome import Counters
from domain.sales.payload import RecordError
from jobs.dataverse.batch import BatchItem, BatchOperation
from jobs.dataverse.client import MAX_PER_REQUEST, DataverseError, MalformedResponse, Written
from jobs.sales import couplings, documents, notes, writes
from jobs.sales.books import Books, Couple
from jobs.sales.candidates import Candidate
from jobs.sales.context import SyncContext
from jobs.sales.mapping import Mapping

DEFAULT_PRICE_LIST = "Business Central (integration, do not edit)"
LINES = table(SalesInvoiceLine)
SP = table(Salesperson)
PRICES = table(SalesPrice)
DC = table(DataverseConnection)
C = table(Coupling)
SH, SL, OP = table(SalesHeader), table(SalesLine), table(Opportunity)


@dataclass
class Done:
    """A record written in this run (etag None: to be read back)."""

    candidate: Candidate
    written: Written
    created: bool


@dataclass
class AfterWrite:
    failed: dict[str, str]  # local id -> reason: the record fails (retried next run)
    couples: list[Couple]  # further couplings to record (a unit group's unit)


class Behaviour:
    def prefetch(self, ctx: SyncContext, rows: list[Any]) -> None:
        """Loads what this chunk's extra payloads refer to, in a few statements."""

    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        return {}

    def extra_candidates(self, mapping: Mapping, today: date) -> Select[Any] | None:
        return None

    def retired(self, row: Any, today: date) -> bool:
        """Whether the record is no longer current: its coupled row is removed."""
        return False

    def create(
        self, ctx: SyncContext, entity_set: str, new: dict[str, tuple[Any, dict[str, Any]]]
    ) -> dict[str, writes.Write]:
        """Creates rows (row id -> (record, payload)) with the ids reserved for them."""
        return writes.create_all(ctx.client, entity_set, {i: p for i, (_, p) in new.items()})

    def check(self, ctx: SyncContext, row: Any, row_id: str) -> None:
        """Raises SkipRecord or RecordError for what the payload alone does not show."""

    def after_write(self, ctx: SyncContext, done: list[Done]) -> AfterWrite:
        return AfterWrite({}, [])

    def match_local(self, conn: Connection, values: list[dict[str, Any]]) -> list[str | None]:
        """The local records uncoupled Dataverse rows correspond to (None: no match)."""
        return [None] * len(values)

    def new_local_key(self, values: dict[str, Any], taken: set[str]) -> str | None:
        """The key of a new local record for an uncoupled Dataverse row; None: this
        mapping does not create local records (the row stays uncoupled, reported)."""
        return None

    def taken_keys(self, conn: Connection) -> set[str]:
        return set()

    # True: `intake` does the whole run, both ways (no generic push after it).
    whole_run = False
    # Attributes the pull reads besides the mapping's fields (for `new_local_values`).
    extra_attributes: tuple[str, ...] = ()

    def new_local_values(
        self, ctx: SyncContext, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any] | str]:
        """Per row, the values a new local record needs beyond the mapping's fields (its
        references, from the row's lookups), or why it cannot be made yet."""
        return [{} for _ in rows]

    def intake(self, ctx: SyncContext, mapping: Mapping, books: Books) -> Counters | None:
        """Reads from Dataverse its own way (quotes and orders with their lines); None:
        the generic pull reads the mapping's rows."""
        return None


class UnitGroup(Behaviour):
    def after_write(self, ctx: SyncContext, done: list[Done]) -> AfterWrite:
        failed: dict[str, str] = {}
        couples: list[Couple] = []
        for d in done:
            code = d.candidate.local_id
            if ctx.coupled("units_of_measure", code, "uoms") is not None:
                continue
            try:
                units = list(
                    ctx.client.query(
                        "uoms",
                        ["uomid", "name"],
                        f"_uomscheduleid_value eq {d.written.id}",
                        key="uomid",
                        orderby="name asc",
                    )
                )
                if len(units) != 1:
                    raise MalformedResponse(
                        f"unit group {code} has {len(units)} units in Dataverse; it must "
                        "have exactly one"
                    )
            except DataverseError as exc:
                failed[code] = str(exc)
                continue
            unit = str(units[0]["uomid"])
            couples.append(
                Couple("units_of_measure", code, "uoms", unit, units[0].get("@odata.etag"))
            )
            ctx.lookups.remember("units_of_measure", code, "uoms", unit)
        return AfterWrite(failed, couples)


def default_price_list(ctx: SyncContext) -> str:
    """The integration's own price list, created once (its id reserved first)."""
    if "price_list" in ctx.cache:
        return str(ctx.cache["price_list"])
    with ctx.db.begin() as conn:
        conn.execute(
            update(DC)
            .where(DC.c.id == 1, DC.c.default_price_list_id.is_(None))
            .values(default_price_list_id=str(uuid.uuid4()))
        )
        price_list = conn.execute(select(DC.c.default_price_list_id)).scalar_one()
    if ctx.client.get("pricelevels", price_list, ["name"]) is None:
        currency = ctx.currency("", "transactioncurrencyid@odata.bind")  # the local one
        body = {"name": DEFAULT_PRICE_LIST, "transactioncurrencyid@odata.bind": currency}
        ctx.client.create("pricelevels", price_list, body)
    ctx.cache["price_list"] = price_list
    return str(price_list)


class ItemProduct(Behaviour):
    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        return {"pricelevelid@odata.bind": f"/pricelevels({default_price_list(ctx)})"}

    def create(
        self, ctx: SyncContext, entity_set: str, new: dict[str, tuple[Any, dict[str, Any]]]
    ) -> dict[str, writes.Write]:
        """The product's default price list is not valid for create (the product table
        reference: Dataverse ignores it), so `after_write` sets it by an update. A crash
        in between leaves the couplings reserved, and the next run repeats both."""
        bodies = {
            i: {k: v for k, v in p.items() if k != "pricelevelid@odata.bind"}
            for i, (_, p) in new.items()
        }
        return writes.create_all(ctx.client, entity_set, bodies)

    def after_write(self, ctx: SyncContext, done: list[Done]) -> AfterWrite:
        price_list = f"/pricelevels({default_price_list(ctx)})"
        failed: dict[str, str] = {}
        created = {d.written.id: d for d in done if d.created}
        if created:
            answers = writes.upsert_all(
                ctx.client,
                "products",
                {i: {"pricelevelid@odata.bind": price_list} for i in created},
            )
            for row_id, error in answers.items():
                if error is not None:
                    failed[created[row_id].candidate.local_id] = str(error)
                else:  # changed again: its version is read back
                    created[row_id].written = Written(row_id, None, None)
        lines: dict[str, dict[str, Any]] = {}
        owners: dict[str, Done] = {}
        for d in done:
            if d.candidate.local_id in failed:
                continue
            row = d.candidate.row
            unit = ctx.coupled("units_of_measure", str(row.base_unit_of_measure), "uoms")
            # Deterministic id: a repeated run finds the line instead of adding another.
            line_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"price:{d.written.id}"))
            lines[line_id] = {
                "pricelevelid@odata.bind": price_list,
                "productid@odata.bind": f"/products({d.written.id})",
                "uomid@odata.bind": f"/uoms({unit})",
                "amount": float(row.unit_price),
                "pricingmethodcode": 1,
            }
            owners[line_id] = d
        couples = []
        for line_id, error in writes.upsert_all(ctx.client, "productpricelevels", lines).items():
            local_id = owners[line_id].candidate.local_id
            if error is not None:
                failed[local_id] = str(error)
            else:
                couples.append(Couple("items", local_id, "productpricelevels", line_id))
        return AfterWrite(failed, couples)


class SalesPrices(Behaviour):
    def extra_candidates(self, mapping: Mapping, today: date) -> Select[Any] | None:
        """Coupled prices whose ending date passed since: no change marks them."""
        coupled = select(C.c.local_id).where(
            C.c.local_table == "sales_prices", C.c.dataverse_table == mapping.entity_set
        )
        return select(PRICES).where(
            PRICES.c.ending_date < today,
            cast(PRICES.c.id, String).in_(coupled),
        )

    def retired(self, row: Any, today: date) -> bool:
        return row.ending_date is not None and row.ending_date < today


class PostedInvoice(Behaviour):
    def prefetch(self, ctx: SyncContext, rows: list[Any]) -> None:
        numbers = [str(r.no) for r in rows]
        lines: dict[str, list[Any]] = {n: [] for n in numbers}
        with ctx.db.connect() as conn:
            for start in range(0, len(numbers), 500):
                for line in conn.execute(
                    select(LINES)
                    .where(LINES.c.document_no.in_(numbers[start : start + 500]))
                    .order_by(LINES.c.document_no, LINES.c.line_no)
                ):
                    lines[str(line.document_no)].append(line)
        ctx.cache["invoice_lines"] = lines
        for source in ("items", "resources"):
            kind = source.removesuffix("s").capitalize()
            ctx.lookups.prefetch(
                source, "products", [ln.no for ls in lines.values() for ln in ls if ln.type == kind]
            )
        ctx.lookups.prefetch(
            "units_of_measure",
            "uoms",
            [ln.unit_of_measure_code for ls in lines.values() for ln in ls],
        )
        groups = [r.customer_price_group for r in rows if r.customer_price_group]
        ctx.lookups.prefetch("customer_price_groups", "pricelevels", groups)

    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        group = str(row.customer_price_group or "")
        price_list = ctx.coupled("customer_price_groups", group, "pricelevels") if group else None
        if group and price_list is None:
            ctx.lookup("lookup:customer_price_groups:pricelevels", group, "pricelevelid")
        return {"pricelevelid@odata.bind": f"/pricelevels({price_list or default_price_list(ctx)})"}

    def _lines(self, ctx: SyncContext, row: Any, invoice_id: str) -> list[BatchOperation]:
        ops = []
        for line in ctx.cache["invoice_lines"].get(str(row.no), []):
            source = {"Item": "items", "Resource": "resources"}.get(str(line.type))
            body: dict[str, Any] = {
                "invoiceid@odata.bind": f"/invoices({invoice_id})",
                "quantity": float(line.quantity),
                "priceperunit": float(line.unit_price),
                "ispriceoverridden": True,
                "lineitemnumber": int(line.line_no),
            }
            if source is None:
                body |= {"isproductoverridden": True, "productdescription": str(line.description)}
            else:
                body["productid@odata.bind"] = ctx.lookup(
                    f"lookup:{source}:products", line.no, "productid"
                )
                body["uomid@odata.bind"] = ctx.lookup(
                    "lookup:units_of_measure:uoms", line.unit_of_measure_code, "uomid"
                )
            line_id = uuid.uuid5(uuid.NAMESPACE_URL, f"invoice:{invoice_id}:{line.line_no}")
            ops.append(
                BatchOperation(
                    "PATCH",
                    f"{ctx.client.api}invoicedetails({line_id})",
                    body,
                    {"If-None-Match": "*"},
                )
            )
        return ops

    def create(
        self, ctx: SyncContext, entity_set: str, new: dict[str, tuple[Any, dict[str, Any]]]
    ) -> dict[str, writes.Write]:
        """Line lookups are resolved when the payloads are built (see `check`), so a
        line waiting for its item skips the invoice before anything is sent."""
        out: dict[str, writes.Write] = {}
        batch: list[BatchItem] = []
        ids: list[str] = []
        size = 0
        for row_id, (_row, payload) in new.items():
            header = writes.patch(ctx.client, "invoices", row_id, payload, {"If-None-Match": "*"})
            changeset = [header, *ctx.cache["invoice_ops"][row_id]]
            if size + len(changeset) > MAX_PER_REQUEST and batch:
                out |= self._send(ctx, batch, ids)
                batch, ids, size = [], [], 0
            batch.append(changeset)
            ids.append(row_id)
            size += len(changeset)
        if batch:
            out |= self._send(ctx, batch, ids)
        return out

    def _send(
        self, ctx: SyncContext, batch: list[BatchItem], ids: list[str]
    ) -> dict[str, writes.Write]:
        try:
            answers = ctx.client.batch(
                batch, f"creating {len(ids)} invoices", [f"creating invoice {i}" for i in ids]
            )
        except DataverseError as exc:
            return {i: writes.Write(error=exc) for i in ids}
        out: dict[str, writes.Write] = {}
        position = 0
        for row_id, item in zip(ids, batch, strict=True):
            header = answers[position]
            position += len(item) if isinstance(item, list) else 1
            out[row_id] = writes.created_of(row_id, header)
        return out

    def check(self, ctx: SyncContext, row: Any, row_id: str) -> None:
        """Builds the invoice's line requests (raising SkipRecord for a line waiting for
        its product or unit) before anything is sent."""
        ctx.cache.setdefault("invoice_ops", {})[row_id] = self._lines(ctx, row, row_id)


class Salespeople(Behaviour):
    def match_local(self, conn: Connection, values: list[dict[str, Any]]) -> list[str | None]:
        emails = {str(v.get("email") or "").lower() for v in values} - {""}
        by_email = {
            str(r.email).lower(): str(r.code)
            for r in conn.execute(
                select(SP.c.code, SP.c.email).where(func.lower(SP.c.email).in_(sorted(emails)))
            )
        }
        return [by_email.get(str(v.get("email") or "").lower()) for v in values]

    def taken_keys(self, conn: Connection) -> set[str]:
        return {str(c) for c in conn.execute(select(SP.c.code)).scalars()}

    def new_local_key(self, values: dict[str, Any], taken: set[str]) -> str | None:
        words = re.findall(r"[A-Za-z0-9]+", str(values.get("name") or "")) or ["SP"]
        base = (
            "".join(w[0] for w in words).upper()[:16] if len(words) > 1 else words[0].upper()[:16]
        )
        code, n = base, 1
        while code in taken:
            n += 1
            code = f"{base}{n}"
        taken.add(code)
        return code


class Contacts(Behaviour):
    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        """Dataverse needs a last name. A contact known by its full name only (as email
        logging adds them) is split as people write it: "Jo Smith", or "Smith, Jo"."""
        if row.surname:
            return {}
        name = " ".join(str(row.name or "").split())
        if not name:
            raise RecordError("surname and name are blank; Dataverse needs a last name")
        if "," in name:
            last, _, first = name.partition(",")
        else:
            first, _, last = name.rpartition(" ")
        return {"firstname": row.first_name or first.strip(), "lastname": last.strip()[:50]}


class Opportunities(Behaviour):
    """An opportunity made in Sales comes here with its contact and salesperson, both
    found through their couplings, numbered as those made from logged emails."""

    extra_attributes = ("_parentcontactid_value", "_ownerid_value")

    REFERENCES = (
        ("_parentcontactid_value", "contacts", "contact_no", "contact"),
        ("_ownerid_value", "systemusers", "salesperson_code", "owner"),
    )

    def new_local_values(
        self, ctx: SyncContext, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any] | str]:
        with ctx.db.connect() as conn:  # every row's references in one read
            known = couplings.by_dataverse(conn, {
                entity_set: {str(r.get(attribute) or "") for r in rows}
                for attribute, entity_set, _field, _what in self.REFERENCES
            })  # fmt: skip
        out: list[dict[str, Any] | str] = []
        for row in rows:
            values: dict[str, Any] = {}
            missing = ""
            for attribute, entity_set, field_name, what in self.REFERENCES:
                found = known.get((entity_set, str(row.get(attribute))))
                if found is None:
                    missing = f"its {what} ({entity_set}({row.get(attribute)})) is not coupled here"
                    break
                values[field_name] = str(found.local_id)
            out.append(missing or values)
        return out

    def taken_keys(self, conn: Connection) -> set[str]:
        return set(conn.execute(select(OP.c.no)).scalars())

    def new_local_key(self, values: dict[str, Any], taken: set[str]) -> str | None:
        numbers = [int(n[2:]) for n in taken if n.startswith("OP") and n[2:].isdigit()]
        key = f"OP{max(numbers, default=0) + 1:06d}"
        taken.add(key)
        return key


class Documents(Behaviour):
    """Quotes activated and orders submitted in Sales, made here (jobs.sales.documents)."""

    def __init__(self, kind: documents.Kind) -> None:
        self.kind = kind

    def intake(self, ctx: SyncContext, mapping: Mapping, books: Books) -> Counters | None:
        return documents.DocumentIntake(ctx, mapping, books, self.kind).pull()


class ReleasedOrders(Behaviour):
    """A released sales order goes to Sales as a submitted order with its lines. Line
    ids are derived from the order's id and line number, so a repeated run finds the
    lines it made instead of adding them again."""

    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        return {
            "name": row.your_reference or f"Order {row.no}",
            "pricelevelid@odata.bind": f"/pricelevels({default_price_list(ctx)})",
        }

    def after_write(self, ctx: SyncContext, done: list[Done]) -> AfterWrite:
        failed: dict[str, str] = {}
        created = [d for d in done if d.created]
        if not created:
            return AfterWrite(failed, [])
        with ctx.db.connect() as conn:
            numbers = [d.candidate.local_id for d in created]
            all_lines = conn.execute(
                select(SL)
                .where(SL.c.document_type == "Order", SL.c.document_no.in_(numbers))
                .order_by(SL.c.document_no, SL.c.line_no)
            ).all()
        for kind, local_table in (("Item", "items"), ("Resource", "resources")):
            nos = [x.no for x in all_lines if x.type == kind]
            ctx.lookups.prefetch(local_table, "products", nos)
        ctx.lookups.prefetch(
            "units_of_measure", "uoms", [x.unit_of_measure_code for x in all_lines]
        )
        lines_of: dict[str, list[Any]] = {}
        for x in all_lines:
            lines_of.setdefault(x.document_no, []).append(x)
        details: dict[str, dict[str, Any]] = {}
        owner: dict[str, str] = {}
        for d in created:
            order = d.written.id
            for line in lines_of.get(d.candidate.local_id, []):
                line_id = str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"salesorderdetail:{order}:{line.line_no}")
                )
                body: dict[str, Any] = {"salesorderid@odata.bind": f"/salesorders({order})",
                                        "quantity": float(line.quantity),
                                        "priceperunit": float(line.unit_price)}  # fmt: skip
                table_name = {"Item": "items", "Resource": "resources"}.get(line.type)
                product = ctx.coupled(table_name, line.no, "products") if table_name else None
                unit = ctx.coupled("units_of_measure", line.unit_of_measure_code, "uoms")
                if product and unit:
                    body |= {"productid@odata.bind": f"/products({product})",
                             "uomid@odata.bind": f"/uoms({unit})"}  # fmt: skip
                elif table_name:
                    failed[d.candidate.local_id] = (
                        f"line {line.line_no}: {line.type.lower()} {line.no!r} or its unit is "
                        "not coupled to Dataverse yet"
                    )
                    continue
                else:
                    body |= {"productdescription": line.description, "isproductoverridden": True}
                details[line_id] = body
                owner[line_id] = d.candidate.local_id
        for line_id, error in writes.upsert_all(ctx.client, "salesorderdetails", details).items():
            if error is not None:
                failed[owner[line_id]] = str(error)
        submitted = {d.written.id: {"statecode": 1, "statuscode": 3} for d in created
                     if d.candidate.local_id not in failed}  # fmt: skip
        writes.upsert_all(ctx.client, "salesorders", submitted)
        with ctx.db.begin() as conn:  # the order now has its Dataverse row (intake skips it)
            conn.execute(
                update(SH)
                .where(SH.c.document_type == "Order", SH.c.no == bindparam("b_no"))
                .values(dataverse_id=bindparam("b_id")),
                [{"b_no": d.candidate.local_id, "b_id": d.written.id} for d in created],
            )
        for d in created:
            d.written = Written(d.written.id, None, None)  # changed again: read back
        return AfterWrite(failed, [])


class SalesOrderNotes(Behaviour):
    """Order notes both ways (jobs.sales.notes), in one pass."""

    whole_run = True

    def intake(self, ctx: SyncContext, mapping: Mapping, books: Books) -> Counters | None:
        return notes.OrderNotes(ctx, mapping, books).run()


_BEHAVIOURS: dict[str, Behaviour] = {
    "SALESORDER-NOTES": SalesOrderNotes(),
    "OPPORTUNITY": Opportunities(),
    "SALESORDER-RELEASED": ReleasedOrders(),
    "SALESORDER-ORDER": Documents(documents.ORDERS),
    "QUOTE-SALESQUOTE": Documents(documents.QUOTES),
    "CONTACT": Contacts(),
    "UNITOFMEASURE": UnitGroup(),
    "ITEM-PRODUCT": ItemProduct(),
    "SALESPRC-PRODPRICE": SalesPrices(),
    "POSTEDSALESINV-INV": PostedInvoice(),
    "SALESPEOPLE": Salespeople(),
}
_PLAIN = Behaviour()


def behaviour_for(mapping_name: str) -> Behaviour:
    return _BEHAVIOURS.get(mapping_name, _PLAIN)
