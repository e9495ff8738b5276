"""What some mappings do beyond their field mappings (the documented rules):

- UNITOFMEASURE: a unit group holds exactly one unit, its base unit, which is coupled
  too (products refer to it).
- ITEM-PRODUCT: item sync keeps a price list in Dataverse and the item's price in it.
- POSTEDSALESINV-INV: the invoice and its lines are created in one $batch change set
  (all or nothing); every line's product and unit must be coupled first.
- SALESPEOPLE: a Dataverse user is coupled to the salesperson with the same email, or
  becomes a new salesperson.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from domain.sales.integration import DataverseConnection
from domain.sales.models import SalesInvoiceLine, Salesperson, table
from jobs.dataverse.batch import BatchOperation
from jobs.dataverse.client import MalformedResponse, PreconditionFailed, Written, written
from jobs.sales import couplings

if TYPE_CHECKING:
    from jobs.sales.engine import SyncContext

DEFAULT_PRICE_LIST = "Business Central (integration, do not edit)"
LINES = table(SalesInvoiceLine)
SP = table(Salesperson)
DC = table(DataverseConnection)


class Behaviour:
    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        return {}

    def create(
        self, ctx: SyncContext, entity_set: str, row_id: str, payload: dict[str, Any], row: Any
    ) -> Written:
        return ctx.client.create(entity_set, row_id, payload)

    def after_write(self, ctx: SyncContext, row: Any, result: Written, created: bool) -> None:
        return None

    def match_local(
        self, conn: Connection, dv_row: dict[str, Any], values: dict[str, Any]
    ) -> str | None:
        return None

    def new_local_key(
        self, conn: Connection, dv_row: dict[str, Any], values: dict[str, Any]
    ) -> str | None:
        """The key of a new local record for an uncoupled Dataverse row; None: this
        mapping does not create local records (the row stays uncoupled, reported)."""
        return None


class UnitGroup(Behaviour):
    def after_write(self, ctx: SyncContext, row: Any, result: Written, created: bool) -> None:
        code = str(row.code)
        if ctx.coupled("units_of_measure", code, "uoms") is not None:
            return
        units = list(
            ctx.client.query(
                "uoms",
                ["uomid", "name"],
                f"_uomscheduleid_value eq {result.id}",
                key="uomid",
                orderby="name asc",
            )
        )
        if len(units) != 1:
            raise MalformedResponse(
                f"unit group {code} has {len(units)} units in Dataverse; it must have exactly one"
            )
        with ctx.db.begin() as conn:
            couplings.couple(
                conn,
                "units_of_measure",
                code,
                "uoms",
                units[0]["uomid"],
                units[0].get("@odata.etag"),
                ctx.now(),
            )


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
        ctx.client.create("pricelevels", price_list, {"name": DEFAULT_PRICE_LIST})
    ctx.cache["price_list"] = price_list
    return str(price_list)


class ItemProduct(Behaviour):
    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        return {"pricelevelid@odata.bind": f"/pricelevels({default_price_list(ctx)})"}

    def create(
        self, ctx: SyncContext, entity_set: str, row_id: str, payload: dict[str, Any], row: Any
    ) -> Written:
        """The product's default price list is not valid for create (the product table
        reference: Dataverse ignores it), so it is set by an update right after. A crash
        in between leaves the coupling reserved, and the next run repeats both."""
        price_list = payload.pop("pricelevelid@odata.bind", None)
        created = ctx.client.create(entity_set, row_id, payload)
        if price_list is None:
            return created
        return ctx.client.update(
            entity_set, row_id, {"pricelevelid@odata.bind": price_list}, created.etag
        )

    def after_write(self, ctx: SyncContext, row: Any, result: Written, created: bool) -> None:
        unit = ctx.coupled("units_of_measure", str(row.base_unit_of_measure), "uoms")
        price = {
            "pricelevelid@odata.bind": f"/pricelevels({default_price_list(ctx)})",
            "productid@odata.bind": f"/products({result.id})",
            "uomid@odata.bind": f"/uoms({unit})",
            "amount": float(row.unit_price),
            "pricingmethodcode": 1,
        }
        with ctx.db.connect() as conn:
            line = couplings.find(conn, "items", str(row.no), "productpricelevels")
        if line is not None:
            done = ctx.client.update("productpricelevels", str(line.dataverse_id), price, None)
        else:
            # Deterministic id: a repeated run finds the line instead of adding another.
            line_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"price:{result.id}"))
            done = ctx.client.create("productpricelevels", line_id, price)
        with ctx.db.begin() as conn:
            couplings.couple(
                conn, "items", str(row.no), "productpricelevels", done.id, done.etag, ctx.now()
            )


class PostedInvoice(Behaviour):
    def extra_payload(self, ctx: SyncContext, row: Any) -> dict[str, Any]:
        group = str(row.customer_price_group or "")
        price_list = ctx.coupled("customer_price_groups", group, "pricelevels") if group else None
        if group and price_list is None:
            ctx.lookup("lookup:customer_price_groups:pricelevels", group, "pricelevelid")
        return {"pricelevelid@odata.bind": f"/pricelevels({price_list or default_price_list(ctx)})"}

    def _lines(self, ctx: SyncContext, row: Any, invoice_id: str) -> list[BatchOperation]:
        with ctx.db.connect() as conn:
            lines = conn.execute(
                select(LINES).where(LINES.c.document_no == row.no).order_by(LINES.c.line_no)
            ).all()
        ops = []
        for line in lines:
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
        self, ctx: SyncContext, entity_set: str, row_id: str, payload: dict[str, Any], row: Any
    ) -> Written:
        header = BatchOperation(
            "PATCH", f"{ctx.client.api}invoices({row_id})", payload, {"If-None-Match": "*"}
        )
        lines = self._lines(ctx, row, row_id)
        try:
            ctx.client.changeset([header, *lines], f"creating invoice {row.no}")
        except PreconditionFailed:
            if ctx.client.get("invoices", row_id, ["modifiedon"]) is None:
                raise  # not ours: something else refused the change set
        current = ctx.client.get("invoices", row_id, ["modifiedon"])
        if current is None:
            raise MalformedResponse(
                f"invoice {row.no}: the change set succeeded but the row is missing"
            )
        return written("invoices", row_id, current, f"creating invoice {row.no}")


class Salespeople(Behaviour):
    def match_local(
        self, conn: Connection, dv_row: dict[str, Any], values: dict[str, Any]
    ) -> str | None:
        email = str(values.get("email") or "").lower()
        if not email:
            return None
        found = conn.execute(select(SP.c.code).where(func.lower(SP.c.email) == email)).first()
        return str(found.code) if found else None

    def new_local_key(
        self, conn: Connection, dv_row: dict[str, Any], values: dict[str, Any]
    ) -> str | None:
        words = re.findall(r"[A-Za-z0-9]+", str(values.get("name") or "")) or ["SP"]
        base = (
            "".join(w[0] for w in words).upper()[:16] if len(words) > 1 else words[0].upper()[:16]
        )
        code, n = base, 1
        while conn.execute(select(SP.c.code).where(SP.c.code == code)).first():
            n += 1
            code = f"{base}{n}"
        return code


_BEHAVIOURS: dict[str, Behaviour] = {
    "UNITOFMEASURE": UnitGroup(),
    "ITEM-PRODUCT": ItemProduct(),
    "POSTEDSALESINV-INV": PostedInvoice(),
    "SALESPEOPLE": Salespeople(),
}
_PLAIN = Behaviour()


def behaviour_for(mapping_name: str) -> Behaviour:
    return _BEHAVIOURS.get(mapping_name, _PLAIN)
