"""Issue 18, point 3: sales order integration. An order submitted in Sales becomes one
sales order here with its lines, however often it is read, submitted again, or after a
run that lost its coupling; an activated quote becomes one sales quote; the connection's
switches decide; a document that refers to something not coupled fails alone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from domain.clock import utcnow
from domain.sales.integration import Coupling, IntegrationTableMapping, SyncError
from domain.sales.models import DocumentType, SalesHeader, SalesLine, table
from jobs.sales import matching
from jobs.sales.connection import connect, set_switches
from jobs.sales.local import save
from runtime.settings import Settings
from tests.sales_fixtures import Sandbox, sync

ORDERS, QUOTES = "SALESORDER-ORDER", "QUOTE-SALESQUOTE"


def documents(sessions: Any, kind: DocumentType) -> list[SalesHeader]:
    with sessions() as session:
        stmt = select(SalesHeader).where(SalesHeader.document_type == kind)
        return list(session.execute(stmt).scalars())


def lines(sessions: Any, no: str) -> list[SalesLine]:
    with sessions() as session:
        stmt = select(SalesLine).where(SalesLine.document_no == no).order_by(SalesLine.line_no)
        return list(session.execute(stmt).scalars())


@pytest.fixture
def synced(settings: Settings, engine: Any, sessions: Any, company: Sandbox) -> dict[str, str]:
    """The company in Sales, the switches on; ids of what a person in Sales refers to."""
    sync(engine, company, settings.tz)
    with sessions.begin() as session:
        on = {"sales_order_integration": True, "auto_create_sales_orders": True,
              "auto_process_quotes": True}  # fmt: skip
        set_switches(session, settings.tz, **on)
    dv = company.dataverse
    products = {p["productnumber"]: p for p in dv.rows("products")}
    pcs = next(u for u in dv.rows("uoms") if u["name"] == "PCS")
    return {
        "account": dv.rows("accounts")[0]["accountid"],
        "price_list": next(
            p["pricelevelid"] for p in dv.rows("pricelevels") if p["name"] != "RETAIL"
        ),
        "bicycle": products["1000"]["productid"],
        "pcs": pcs["uomid"],
    }


def made_in_sales(dv: Any, ids: dict[str, str], entity: str, name: str, **extra: Any) -> str:
    """A document with a bicycle line and a write-in line, as a salesperson makes it."""
    details, parent = {"salesorders": ("salesorderdetails", "salesorderid"),
                       "quotes": ("quotedetails", "quoteid")}[entity]  # fmt: skip
    account, prices = f"/accounts({ids['account']})", f"/pricelevels({ids['price_list']})"
    row_id = dv.add(entity, {"name": name, **extra, "customerid_account@odata.bind": account,
                             "pricelevelid@odata.bind": prices})  # fmt: skip
    dv.add(details, {f"{parent}@odata.bind": f"/{entity}({row_id})", "quantity": 2,
                     "priceperunit": 3900.0, "productid@odata.bind": f"/products({ids['bicycle']})",
                     "uomid@odata.bind": f"/uoms({ids['pcs']})"})  # fmt: skip
    dv.add(details, {f"{parent}@odata.bind": f"/{entity}({row_id})", "quantity": 1,
                     "priceperunit": 5.0, "productdescription": "Gift wrap"})  # fmt: skip
    return row_id


def test_a_submitted_order_becomes_one_sales_order_with_its_lines(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    dv = company.dataverse
    order = made_in_sales(dv, synced, "salesorders", "Web order 17")
    assert sync(engine, company, settings.tz, ORDERS)[ORDERS].inserted == 0  # not submitted yet
    dv.edit("salesorders", order, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    assert sync(engine, company, settings.tz, ORDERS)[ORDERS].inserted == 1
    [made] = documents(sessions, DocumentType.ORDER)
    assert (made.no, made.customer_no, made.your_reference) == ("SO000001", "C1", "Web order 17")
    assert made.dataverse_id == order and made.currency_code == ""
    bicycle, wrap = lines(sessions, made.no)
    assert (bicycle.type, bicycle.no, bicycle.unit_of_measure_code) == ("Item", "1000", "PCS")
    assert (bicycle.quantity, bicycle.line_amount) == (Decimal(2), Decimal(7800))
    assert (wrap.type, wrap.description, wrap.unit_price) == ("", "Gift wrap", Decimal(5))

    assert not sync(engine, company, settings.tz, ORDERS)[ORDERS].activity  # read again
    dv.edit("salesorders", order, {"statecode": 0, "statuscode": 1}, by=dv.administrator)
    dv.edit("salesorders", order, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    mapping = table(IntegrationTableMapping)
    with engine.connect() as conn:
        link = conn.execute(select(mapping.c.dataverse_delta_link).where(
            mapping.c.name == ORDERS)).scalar_one()  # fmt: skip
    sync(engine, company, settings.tz, ORDERS)  # submitted twice
    with engine.begin() as conn:  # a crash: the run's reads are read again, coupling lost
        conn.execute(update(mapping).where(mapping.c.name == ORDERS)
                     .values(dataverse_delta_link=link))  # fmt: skip
        conn.execute(delete(Coupling).where(Coupling.dataverse_id == order))
    sync(engine, company, settings.tz, ORDERS)
    assert [d.no for d in documents(sessions, DocumentType.ORDER)] == ["SO000001"]
    assert len(lines(sessions, "SO000001")) == 2
    with sessions() as session:
        [coupling] = session.execute(
            select(Coupling).where(Coupling.dataverse_id == order)
        ).scalars()
    assert coupling.local_id == "SO000001"  # restored


def test_an_activated_quote_becomes_one_sales_quote(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    dv = company.dataverse
    quote = made_in_sales(dv, synced, "quotes", "Fleet of 20")
    dv.edit("quotes", quote, {"statecode": 1, "statuscode": 2}, by=dv.administrator)
    for _ in range(2):
        sync(engine, company, settings.tz, QUOTES)
    [made] = documents(sessions, DocumentType.QUOTE)
    assert (made.no, made.your_reference) == ("SQ000001", "Fleet of 20")
    assert len(lines(sessions, made.no)) == 2
    assert documents(sessions, DocumentType.ORDER) == []


def test_the_switches_decide_and_a_document_fails_alone_naming_what_is_missing(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    dv = company.dataverse
    stranger = dv.add("accounts", {"name": "Walk-in customer"})  # not coupled to a customer
    lost = made_in_sales(dv, synced | {"account": stranger}, "salesorders", "Counter sale")
    good = made_in_sales(dv, synced, "salesorders", "Web order 18")
    for row in (lost, good):
        dv.edit("salesorders", row, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    with sessions.begin() as session:
        set_switches(session, settings.tz, auto_create_sales_orders=False)
    assert sync(engine, company, settings.tz, ORDERS)[ORDERS].inserted == 0
    assert documents(sessions, DocumentType.ORDER) == []
    with sessions.begin() as session:
        set_switches(session, settings.tz, auto_create_sales_orders=True)
    result = sync(engine, company, settings.tz, ORDERS)[ORDERS]
    assert (result.inserted, result.failed) == (1, 1)
    assert [d.your_reference for d in documents(sessions, DocumentType.ORDER)] == ["Web order 18"]
    with sessions() as session:
        [error] = session.execute(select(SyncError).where(SyncError.dataverse_id == lost)).scalars()
    assert f"account (accounts({stranger})) is not coupled here yet" in error.message
    again = sync(engine, company, settings.tz, ORDERS)[ORDERS]  # read again, no news
    assert (again.inserted, again.failed, again.failed_again, again.activity) == (0, 0, 1, False)
    with sessions.begin() as session:  # the walk-in customer is made here and coupled
        save(session, "customers", {"no": "C9", "name": "Walk-in customer"}, user="ADMIN",
             tz=settings.tz)  # fmt: skip
    with connect(engine, company.box, company.bundle).client as client:
        matching.couple(engine, client, "CUSTOMER", "C9", stranger, utcnow())
    later = sync(engine, company, settings.tz, ORDERS)[ORDERS]
    assert (later.inserted, later.failed_again) == (1, 0)
    made = {d.your_reference: d.customer_no for d in documents(sessions, DocumentType.ORDER)}
    assert made == {"Web order 18": made["Web order 18"], "Counter sale": "C9"}


def test_order_notes_go_both_ways_and_never_come_back(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    from domain.sales.models import SalesNote

    dv = company.dataverse
    order = made_in_sales(dv, synced, "salesorders", "Web order 19")
    dv.edit("salesorders", order, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    sync(engine, company, settings.tz, ORDERS)
    dv.add("annotations", {"subject": "Delivery", "notetext": "Deliver to the back door",
                           "objectid_salesorder@odata.bind": f"/salesorders({order})"})  # fmt: skip
    with sessions.begin() as session:
        session.add(SalesNote(document_type=DocumentType.ORDER, document_no="SO000001",
                              text="Customer pays on delivery", created_by="ANN"))  # fmt: skip
    first = sync(engine, company, settings.tz, "SALESORDER-NOTES")["SALESORDER-NOTES"]
    assert (first.inserted, first.modified) == (1, 1)  # one came, one went
    with sessions() as session:
        here = {n.text for n in session.execute(select(SalesNote)).scalars()}
    assert here == {"Deliver to the back door", "Customer pays on delivery"}
    there = {a["notetext"] for a in dv.rows("annotations") if a["_objectid_value"] == order}
    assert there == {"Deliver to the back door", "Customer pays on delivery"}
    for _ in range(2):  # read again, neither note comes back as a copy
        assert not sync(engine, company, settings.tz, "SALESORDER-NOTES")[
            "SALESORDER-NOTES"
        ].activity
    with sessions() as session:
        assert len(list(session.execute(select(SalesNote)).scalars())) == 2
    assert len(dv.rows("annotations")) == 2


def test_a_note_on_an_order_not_here_yet_waits_for_it_and_then_comes(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    """A note written in Sales on an order that could not come in yet is not lost when
    the notes' read moves past it: it waits, and comes once its order is here."""
    from domain.sales.models import SalesNote

    dv = company.dataverse
    stranger = dv.add("accounts", {"name": "Walk-in customer"})  # not coupled yet
    order = made_in_sales(dv, synced | {"account": stranger}, "salesorders", "Counter sale")
    dv.edit("salesorders", order, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    dv.add("annotations", {"subject": "Gate", "notetext": "Ring twice",
                           "objectid_salesorder@odata.bind": f"/salesorders({order})"})  # fmt: skip
    assert sync(engine, company, settings.tz, ORDERS)[ORDERS].failed == 1
    notes = "SALESORDER-NOTES"
    first = sync(engine, company, settings.tz, notes)[notes]
    assert (first.inserted, first.failed) == (0, 1)
    with sessions() as session:
        error = session.execute(select(SyncError.message).where(
            SyncError.mapping_name == notes)).scalars().first()  # fmt: skip
    assert error is not None and f"its order (salesorders({order})) is not here yet" in error
    again = sync(engine, company, settings.tz, notes)[notes]
    assert (again.failed, again.failed_again, again.activity) == (0, 1, False)
    with sessions.begin() as session:
        save(session, "customers", {"no": "C9", "name": "Walk-in customer"}, user="ADMIN",
             tz=settings.tz)  # fmt: skip
    with connect(engine, company.box, company.bundle).client as client:
        matching.couple(engine, client, "CUSTOMER", "C9", stranger, utcnow())
    assert sync(engine, company, settings.tz, ORDERS)[ORDERS].inserted == 1
    later = sync(engine, company, settings.tz, notes)[notes]
    assert (later.inserted, later.failed_again) == (1, 0)
    with sessions() as session:
        [note] = session.execute(select(SalesNote)).scalars()
    assert (note.document_no, note.text) == ("SO000001", "Ring twice")


def test_a_note_whose_answer_was_lost_is_sent_again_as_the_same_note(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    import uuid

    from domain.sales.models import SalesNote

    dv = company.dataverse
    order = made_in_sales(dv, synced, "salesorders", "Web order 20")
    dv.edit("salesorders", order, {"statecode": 1, "statuscode": 3}, by=dv.administrator)
    sync(engine, company, settings.tz, ORDERS)
    reserved = str(uuid.uuid4())
    with dv.lock:  # the last run sent it, and the answer never came back
        dv._create("annotations", reserved, {"notetext": "Fragile",
                   "objectid_salesorder@odata.bind": f"/salesorders({order})"},
                   dv.integration_user)  # fmt: skip
    with sessions.begin() as session:
        session.add(SalesNote(document_type=DocumentType.ORDER, document_no="SO000001",
                              text="Fragile", dataverse_id=reserved))  # fmt: skip
    sync(engine, company, settings.tz, "SALESORDER-NOTES")
    assert [a["annotationid"] for a in dv.rows("annotations")] == [reserved]
    with sessions() as session:
        [note] = session.execute(select(SalesNote)).scalars()
    assert note.in_dataverse_at is not None  # settled, not sent a third time


def test_a_released_sales_order_goes_to_sales_once_with_its_lines_and_does_not_come_back(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, synced: dict[str, str]
) -> None:
    from jobs.sales.local import save

    dv = company.dataverse
    with sessions.begin() as session:
        for no, status in (("SO9001", "Released"), ("SO9002", "Open")):
            save(session, "sales_headers", {"no": no, "document_type": DocumentType.ORDER,
                 "customer_no": "C1", "status": status}, user="ANN", tz=settings.tz)  # fmt: skip
        session.add_all([
            SalesLine(document_type=DocumentType.ORDER, document_no="SO9001", line_no=10000,
                      type="Item", no="1000", quantity=Decimal(3), unit_of_measure_code="PCS",
                      unit_price=Decimal(3900), line_amount=Decimal(11700)),
            SalesLine(document_type=DocumentType.ORDER, document_no="SO9001", line_no=20000,
                      description="Assembly included", quantity=Decimal(1)),
        ])  # fmt: skip
    released = "SALESORDER-RELEASED"
    assert sync(engine, company, settings.tz, released)[released].inserted == 1
    [order] = dv.rows("salesorders")
    assert (order["name"], order["statecode"]) == ("Order SO9001", 1)  # sent as submitted
    assert order["_customerid_value"] == synced["account"]
    details = sorted(dv.rows("salesorderdetails"), key=lambda d: d.get("productdescription") or "")
    assert [d.get("productdescription") for d in details] == [None, "Assembly included"]
    assert details[0]["_productid_value"] == synced["bicycle"] and details[0]["quantity"] == 3.0
    for name in (released, ORDERS):  # sent again, read back: neither makes a copy
        sync(engine, company, settings.tz, name)
    assert len(dv.rows("salesorders")) == 1 and len(dv.rows("salesorderdetails")) == 2
    assert sorted(d.no for d in documents(sessions, DocumentType.ORDER)) == ["SO9001", "SO9002"]


def test_the_switches_hold_or_ready_the_entries_of_sales_order_integration(
    settings: Settings, sessions: Any, company: Sandbox
) -> None:
    from domain.queue.status import EntryStatus
    from jobs.sales import rerun
    from jobs.sales.connection import SWITCHED_ENTRIES
    from tests.helpers import entry

    def statuses() -> dict[str, EntryStatus]:
        return {code: entry(sessions, code).status for code in SWITCHED_ENTRIES}

    assert set(statuses().values()) == {EntryStatus.ON_HOLD}  # off after set-up: not idling
    with sessions.begin() as session:
        set_switches(session, settings.tz, sales_order_integration=True,
                     auto_process_quotes=True)  # fmt: skip
    assert statuses() == {"SALESORDER-ORDER": EntryStatus.ON_HOLD,  # its own switch is off
                          "QUOTE-SALESQUOTE": EntryStatus.READY,
                          "SALESORDER-RELEASED": EntryStatus.READY,
                          "SALESORDER-NOTES": EntryStatus.READY}  # fmt: skip
    with sessions.begin() as session:
        codes = rerun.full_sync(session, utcnow())
    assert "SALESORDER-ORDER" not in codes and "QUOTE-SALESQUOTE" in codes
    assert entry(sessions, "SALESORDER-ORDER").status == EntryStatus.ON_HOLD
    with sessions.begin() as session:
        set_switches(session, settings.tz, sales_order_integration=False)
    assert set(statuses().values()) == {EntryStatus.ON_HOLD}
