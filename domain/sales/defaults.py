"""The default Dynamics 365 Sales setup: table mappings, their field mappings, and the
job-queue entries that run them, in dependency order (SPEC.md section 2).

Transforms name how a local value becomes a Dataverse value:
  lookup:<local table>:<entity set>  the coupled row of that record (a dependency: a record
                                     whose dependency is not coupled yet is skipped)
  owner                              the Dataverse user coupled to the salesperson code
                                     (left out when there is none)
  state                              blocked -> statecode 1 (retired), else 0
  currency                           the coupled currency of the code; blank (the local
                                     currency) is the organization's base currency
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.sales.integration import DeletionConflict, Direction, UpdateConflict

CATEGORY = "SALES-SYNC"
INTEGRATION_USER = "INTEGRATION"  # modified_by of local records the sync jobs wrote
TO, FROM, BOTH = Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE, Direction.BIDIRECTIONAL


@dataclass(frozen=True)
class FieldDef:
    local_field: str
    attribute: str
    direction: Direction = TO
    constant: str | None = None  # JSON text
    transform: str | None = None
    validate: bool = False


@dataclass(frozen=True)
class MappingDef:
    name: str
    local_table: str
    dataverse_table: str
    direction: Direction
    fields: tuple[FieldDef, ...]
    entry_code: str
    description: str
    minutes_between_runs: int = 30
    inactivity_timeout: int = 1440
    local_filter: dict[str, object] = field(default_factory=dict)
    dataverse_filter: str = ""
    only_coupled: bool = False
    dependencies: tuple[str, ...] = ()
    update_conflict: UpdateConflict = UpdateConflict.NONE
    deletion_conflict: DeletionConflict = DeletionConflict.RESTORE
    modified_field: str = "modified_at"  # the local watermark column
    creates: bool = True  # couples new records (False: updates coupled rows only)

    @property
    def dependency_tables(self) -> frozenset[str]:
        lookups = {
            f.transform.split(":")[1]
            for f in self.fields
            if f.transform and f.transform.startswith("lookup:")
        }
        currencies = {
            "currencies" for f in self.fields if f.transform == "currency" and f.local_field
        }
        return frozenset(lookups | currencies)


def _documents(name: str, entity_set: str, description: str) -> MappingDef:
    """Sales order integration: documents made in Sales come here (jobs.sales.documents)."""
    return MappingDef(
        name,
        "sales_headers",
        entity_set,
        FROM,
        (FieldDef("your_reference", "name", FROM),),
        name,
        f"{description} (sales order integration)",
        minutes_between_runs=5,
        inactivity_timeout=30,
        dependencies=("CURRENCY", "CUSTOMER", "ITEM-PRODUCT", "RESOURCE-PRODUCT"),
    )


# A sales document's customer (its account), owner (the salesperson) and currency.
SALES_DOCUMENT = (
    FieldDef(
        "customer_no",
        "customerid_account@odata.bind",
        transform="lookup:customers:accounts",
        validate=True,
    ),
    FieldDef("salesperson_code", "ownerid@odata.bind", transform="owner"),
    FieldDef("currency_code", "transactioncurrencyid@odata.bind", transform="currency"),
)
UOM_LOOKUP = "lookup:units_of_measure:uoms"
UOM_GROUP_LOOKUP = "lookup:units_of_measure:uomschedules"

DEFAULTS: tuple[MappingDef, ...] = (
    MappingDef(
        "SALESPEOPLE",
        "salespersons",
        "systemusers",
        FROM,
        (
            FieldDef("name", "fullname", FROM, validate=True),
            FieldDef("email", "internalemailaddress", FROM),
        ),
        "SALESPEOPLE",
        "Salespeople from Dataverse users",
        inactivity_timeout=720,
        dataverse_filter="isdisabled eq false and applicationid eq null",
    ),
    MappingDef(
        "CURRENCY",
        "currencies",
        "transactioncurrencies",
        TO,
        (
            FieldDef("code", "isocurrencycode", validate=True),
            FieldDef("description", "currencyname", validate=True),
            FieldDef("symbol", "currencysymbol", validate=True),
            FieldDef("exchange_rate", "exchangerate"),
            FieldDef("decimals", "currencyprecision"),
        ),
        "CURRENCY",
        "Currencies to transaction currencies",
        inactivity_timeout=720,
    ),
    MappingDef(
        "CUSTOMER",
        "customers",
        "accounts",
        BOTH,
        (
            FieldDef("name", "name", BOTH, validate=True),
            FieldDef("no", "accountnumber"),
            FieldDef("email", "emailaddress1", BOTH),
            FieldDef("phone_no", "telephone1", BOTH),
            FieldDef("city", "address1_city", BOTH),
            FieldDef("credit_limit", "creditlimit"),
            FieldDef("", "customertypecode", constant="3"),
            FieldDef("salesperson_code", "ownerid@odata.bind", transform="owner"),
        ),
        "CUSTOMER",
        "Customers and accounts",
        inactivity_timeout=720,
        only_coupled=True,
        update_conflict=UpdateConflict.SEND_LOCAL,
    ),
    MappingDef(
        "CONTACT",
        "contacts",
        "contacts",
        BOTH,
        (
            FieldDef("first_name", "firstname", BOTH),
            FieldDef("surname", "lastname", BOTH),  # blank: from the full name (behaviour)
            FieldDef("email", "emailaddress1", BOTH),
            FieldDef("phone_no", "telephone1", BOTH),
            FieldDef("job_title", "jobtitle", BOTH),
            FieldDef(
                "customer_no",
                "parentcustomerid_account@odata.bind",
                transform="lookup:customers:accounts",
            ),
            FieldDef("salesperson_code", "ownerid@odata.bind", transform="owner"),
        ),
        "CONTACT",
        "Contacts and contacts, linked to their company's account",
        inactivity_timeout=720,
        only_coupled=True,
        dependencies=("CUSTOMER",),
        update_conflict=UpdateConflict.SEND_LOCAL,
    ),
    MappingDef(
        "OPPORTUNITY",
        "opportunities",
        "opportunities",
        BOTH,
        (
            FieldDef("description", "name", BOTH, validate=True),
            FieldDef(
                "contact_no",
                "parentcontactid@odata.bind",
                transform="lookup:contacts:contacts",
                validate=True,
            ),
            FieldDef("salesperson_code", "ownerid@odata.bind", transform="owner"),
            FieldDef("estimated_value", "estimatedvalue", BOTH),
            FieldDef("estimated_close_date", "estimatedclosedate", BOTH),
        ),
        "OPPORTUNITY",
        "Opportunities and opportunities, with their contact; the salesperson is the owner",
        inactivity_timeout=720,
        dependencies=("CONTACT",),
        update_conflict=UpdateConflict.SEND_LOCAL,
    ),
    MappingDef(
        "UNITOFMEASURE",
        "units_of_measure",
        "uomschedules",
        TO,
        (
            FieldDef("code", "name", validate=True),
            FieldDef("code", "baseuomname", validate=True),
            FieldDef("description", "description"),
        ),
        "UNITOFMEASURE",
        "Units of measure to unit groups (one unit each)",
        inactivity_timeout=720,
    ),
    MappingDef(
        "RESOURCE-PRODUCT",
        "resources",
        "products",
        TO,
        (
            FieldDef("name", "name", validate=True),
            FieldDef("no", "productnumber", validate=True),
            FieldDef("", "producttypecode", constant="3"),  # Services
            FieldDef("", "productstructure", constant="1"),
            FieldDef("", "quantitydecimal", constant="2"),
            FieldDef("unit_price", "price"),
            FieldDef("blocked", "statecode", transform="state"),
            FieldDef(
                "base_unit_of_measure",
                "defaultuomscheduleid@odata.bind",
                transform=UOM_GROUP_LOOKUP,
                validate=True,
            ),
            FieldDef(
                "base_unit_of_measure",
                "defaultuomid@odata.bind",
                transform=UOM_LOOKUP,
                validate=True,
            ),
        ),
        "RESOURCE-PRODUCT",
        "Resources to products of type Service",
        inactivity_timeout=720,
        dependencies=("UNITOFMEASURE",),
    ),
    MappingDef(
        "ITEM-PRODUCT",
        "items",
        "products",
        TO,
        (
            FieldDef("description", "name", validate=True),
            FieldDef("no", "productnumber", validate=True),
            FieldDef("", "producttypecode", constant="1"),  # Sales Inventory
            FieldDef("", "productstructure", constant="1"),
            FieldDef("", "quantitydecimal", constant="2"),
            FieldDef("unit_price", "price"),
            FieldDef("blocked", "statecode", transform="state"),
            FieldDef(
                "base_unit_of_measure",
                "defaultuomscheduleid@odata.bind",
                transform=UOM_GROUP_LOOKUP,
                validate=True,
            ),
            FieldDef(
                "base_unit_of_measure",
                "defaultuomid@odata.bind",
                transform=UOM_LOOKUP,
                validate=True,
            ),
        ),
        "ITEM-PRODUCT",
        "Items to products, with their price in the integration price list",
        dependencies=("UNITOFMEASURE",),
    ),
    MappingDef(
        "CUSTPRCGRP-PRICE",
        "customer_price_groups",
        "pricelevels",
        TO,
        (
            FieldDef("code", "name", validate=True),
            FieldDef("description", "description"),
            FieldDef("", "transactioncurrencyid@odata.bind", transform="currency"),
        ),
        "CUSTPRCGRP-PRICE",
        "Customer price groups to price lists",
    ),
    MappingDef(
        "SALESPRC-PRODPRICE",
        "sales_prices",
        "productpricelevels",
        TO,
        (
            FieldDef(
                "sales_code",
                "pricelevelid@odata.bind",
                transform="lookup:customer_price_groups:pricelevels",
                validate=True,
            ),
            FieldDef(
                "item_no", "productid@odata.bind", transform="lookup:items:products", validate=True
            ),
            FieldDef(
                "unit_of_measure_code", "uomid@odata.bind", transform=UOM_LOOKUP, validate=True
            ),
            FieldDef("unit_price", "amount"),
            FieldDef("", "pricingmethodcode", constant="1"),  # Currency Amount
        ),
        "SALESPRC-PRODPRICE",
        "Sales prices of customer price groups to price list lines",
        local_filter={"sales_type": "Customer Price Group", "sales_code": {"ne": ""}},
        dependencies=("CUSTPRCGRP-PRICE", "ITEM-PRODUCT"),
    ),
    MappingDef(
        "POSTEDSALESINV-INV",
        "sales_invoice_headers",
        "invoices",
        TO,
        (
            FieldDef("no", "name", validate=True),
            FieldDef("no", "invoicenumber"),
            *SALES_DOCUMENT,
            FieldDef("due_date", "duedate"),
            FieldDef("amount", "totalamountlessfreight"),
            FieldDef("amount_including_vat", "totalamount"),
        ),
        "POSTEDSALESINV-INV",
        "Posted sales invoices and their lines to invoices and invoice products",
        dependencies=(
            "CURRENCY",
            "CUSTOMER",
            "ITEM-PRODUCT",
            "RESOURCE-PRODUCT",
            "CUSTPRCGRP-PRICE",
        ),
    ),
    _documents("SALESORDER-ORDER", "salesorders", "Orders submitted in Sales become sales orders"),
    _documents("QUOTE-SALESQUOTE", "quotes", "Quotes activated in Sales become sales quotes"),
    MappingDef(
        "SALESORDER-RELEASED",
        "sales_headers",
        "salesorders",
        TO,
        (*SALES_DOCUMENT,),
        "SALESORDER-RELEASED",
        "Released sales orders to Sales orders with their lines (sales order integration)",
        minutes_between_runs=5,
        inactivity_timeout=30,
        local_filter={"document_type": "Order", "status": "Released"},
        dependencies=("SALESORDER-ORDER",),
    ),
    MappingDef(
        "SALESORDER-NOTES",
        "sales_notes",
        "annotations",
        BOTH,
        (FieldDef("text", "notetext", BOTH),),
        "SALESORDER-NOTES",
        "Sales order notes both ways (sales order integration)",
        minutes_between_runs=5,
        inactivity_timeout=30,
        dependencies=("SALESORDER-ORDER",),
    ),
    MappingDef(
        "CUSTOMER-STATISTICS",
        "customers",
        "accounts",
        TO,
        (
            FieldDef("balance", "nav_balance"),
            FieldDef("outstanding_orders", "nav_outstandingorders"),
            FieldDef("shipped_not_invoiced", "nav_shippednotinvoiced"),
            FieldDef("total_sales", "nav_totalsales"),
        ),
        "CUSTOMER-STATISTICS",
        "Customer figures to the statistics of coupled accounts",
        inactivity_timeout=0,
        dependencies=("CUSTOMER",),
        update_conflict=UpdateConflict.SEND_LOCAL,  # figures belong to this side only
        modified_field="statistics_modified_at",
        creates=False,
    ),
)

BY_NAME = {m.name: m for m in DEFAULTS}
