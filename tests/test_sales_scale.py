"""Issue 15: the sales sync in bulk (bulk messages, $batch), with change tracking and
set-based bookkeeping, against the Dataverse emulator on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from domain.clock import utcnow
from domain.sales.integration import (
    Coupling,
    IntegrationTableMapping,
    SyncError,
    SyncResult,
)
from domain.sales.models import SalesPrice
from jobs.dataverse.client import is_deleted
from jobs.sales.books import Books
from runtime.settings import Settings
from tests.sales_fixtures import ORDER, Sandbox, sync

BULK = r"/Microsoft\.Dynamics\.CRM\.UpsertMultiple"


def requests_to(dv: Any, fragment: str) -> int:
    return sum(1 for _method, path in dv.requests if fragment in path)


def test_one_bad_record_in_a_bulk_request_fails_alone(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    sync(engine, company, settings.tz, "SALESPEOPLE", "CUSTOMER", "UNITOFMEASURE")
    theirs = "5c6a1f5e-0000-4000-8000-000000000001"
    with dv.lock:  # a person made a product with item 1001's number in Dataverse
        row = {"productid": theirs, "name": "Theirs", "productnumber": "1001"}
        dv._store("products", theirs, dv._stamp("products", row, dv.administrator, created=True))
    result = sync(engine, company, settings.tz, "ITEM-PRODUCT")["ITEM-PRODUCT"]
    assert (result.inserted, result.failed) == (1, 1)
    # the chunk's create refused as a whole, then its records one by one in a $batch;
    # then the created product's price list (not valid for create) by a second upsert
    assert requests_to(dv, "products/Microsoft.Dynamics.CRM.UpsertMultiple") == 2
    assert requests_to(dv, "$batch") == 1
    with sessions() as session:
        [error] = session.execute(select(SyncError)).scalars().all()
        assert error.local_id == "1001"
        assert error.message.startswith("creating products(")
        assert "productnumber '1001' already exists" in error.message
        couplings = session.execute(select(Coupling).where(Coupling.local_id == "1000")).scalars()
        assert {c.last_result for c in couplings} == {SyncResult.SUCCESS}


def test_a_crash_between_a_bulk_request_and_its_bookkeeping_duplicates_nothing(
    settings: Settings,
    engine: Any,
    sessions: Any,
    company: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dv = company.dataverse
    sync(engine, company, settings.tz, "UNITOFMEASURE")
    real = Books.record

    def crash(self: Books, results: list[Any]) -> None:
        raise SystemExit("the worker died after the write, before its bookkeeping")

    monkeypatch.setattr(Books, "record", crash)
    with pytest.raises(SystemExit):
        sync(engine, company, settings.tz, "ITEM-PRODUCT")
    assert len(dv.rows("products")) == 2  # the bulk request landed
    with sessions() as session:  # its ids were reserved before it was sent
        reserved = (
            session.execute(select(Coupling).where(Coupling.dataverse_table == "products"))
            .scalars()
            .all()
        )
        assert {c.last_result for c in reserved} == {SyncResult.CREATING}
    monkeypatch.setattr(Books, "record", real)
    again = sync(engine, company, settings.tz, "ITEM-PRODUCT")["ITEM-PRODUCT"]
    assert again.inserted == 2 and again.failed == 0
    assert sorted(p["productnumber"] for p in dv.rows("products")) == ["1000", "1001"]
    with sessions() as session:
        rows = (
            session.execute(select(Coupling).where(Coupling.dataverse_table == "products"))
            .scalars()
            .all()
        )
        assert {c.last_result for c in rows} == {SyncResult.SUCCESS}
        assert {c.dataverse_id for c in rows} == {p["productid"] for p in dv.rows("products")}


def test_a_429_in_the_middle_of_bulk_requests_waits_for_retry_after(
    settings: Settings, engine: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    sync(engine, company, settings.tz, "SALESPEOPLE", "CUSTOMER", "UNITOFMEASURE")
    dv.inject(r"/productpricelevels/Microsoft\.Dynamics\.CRM\.UpsertMultiple", 429,
              retry_after=11, method="POST")  # fmt: skip
    waits: list[float] = []
    result = sync(engine, company, settings.tz, "ITEM-PRODUCT", waits=waits)["ITEM-PRODUCT"]
    assert waits == [11.0]
    assert result.inserted == 2 and result.failed == 0
    assert len(dv.rows("productpricelevels")) == 2


def test_a_deletion_seen_through_change_tracking_follows_the_deletion_rule(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    from domain.sales.integration import RecordSyncState
    from domain.sales.models import Customer

    dv = company.dataverse
    sync(engine, company, settings.tz)
    month_ago = utcnow() - timedelta(days=30)
    with sessions.begin() as session:  # the customer last changed long before the sync
        session.execute(update(Customer).values(modified_at=month_ago))
        session.execute(update(RecordSyncState).values(last_local_modified=month_ago))
        session.execute(update(IntegrationTableMapping).values(local_watermark=utcnow()))
    [account] = dv.rows("accounts")
    dv.delete("accounts", account["accountid"])
    result = sync(engine, company, settings.tz, "CUSTOMER")["CUSTOMER"]
    # CUSTOMER restores records deleted in Dataverse: the same run creates it again.
    assert (result.deleted, result.inserted) == (1, 1)
    [restored] = dv.rows("accounts")
    assert restored["accountnumber"] == "C1" and restored["accountid"] != account["accountid"]
    with sessions.begin() as session:
        session.execute(
            update(IntegrationTableMapping)
            .where(IntegrationTableMapping.name == "CUSTOMER")
            .values(deletion_conflict="Remove coupling")
        )
    dv.delete("accounts", restored["accountid"])
    removed = sync(engine, company, settings.tz, "CUSTOMER")["CUSTOMER"]
    assert removed.deleted == 1 and dv.rows("accounts") == []
    with sessions() as session:
        assert (
            session.execute(select(Coupling).where(Coupling.dataverse_table == "accounts")).first()
            is None
        )


def test_an_expired_delta_link_reads_everything_once_and_a_table_without_tracking_uses_the_watermark(  # noqa: E501
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, capsys: Any
) -> None:
    dv = company.dataverse
    sync(engine, company, settings.tz)
    dv.expire_delta_tokens()
    capsys.readouterr()
    result = sync(engine, company, settings.tz, "CUSTOMER")["CUSTOMER"]
    assert not result.activity and len(dv.rows("accounts")) == 1
    out = capsys.readouterr().out
    assert out.count('"sales.delta_link_refused"') == 1
    assert "Version stamp associated with the client has expired" in out
    with sessions() as session:
        link = session.get(IntegrationTableMapping, "CUSTOMER").dataverse_delta_link
        assert link and "deltatoken=" in link

    dv.untracked.add("accounts")  # change tracking switched off for the table
    with sessions.begin() as session:
        session.execute(
            update(IntegrationTableMapping)
            .where(IntegrationTableMapping.name == "CUSTOMER")
            .values(dataverse_delta_link=None)
        )
    sync(engine, company, settings.tz, "CUSTOMER")
    with sessions() as session:
        assert session.get(IntegrationTableMapping, "CUSTOMER").dataverse_delta_link == ""
    [account] = dv.rows("accounts")
    person = dv.add_user("Susan Sales", "susan@cronus.com")
    dv.edit("accounts", account["accountid"], {"telephone1": "+1 555 0199"}, by=person)
    changed = sync(engine, company, settings.tz, "CUSTOMER")["CUSTOMER"]
    assert changed.modified == 1  # read by its modifiedon watermark


def test_an_expired_sales_price_removes_its_price_list_line(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    sync(engine, company, settings.tz)
    retail = next(p for p in dv.rows("pricelevels") if p["name"] == "RETAIL")["pricelevelid"]
    assert [p["amount"] for p in dv.rows("productpricelevels")
            if p["_pricelevelid_value"] == retail] == [3800.0]  # fmt: skip
    with sessions.begin() as session:  # it ended yesterday; nothing else marks it changed
        session.execute(
            update(SalesPrice)
            .where(SalesPrice.sales_code == "RETAIL")
            .values(ending_date=(utcnow() - timedelta(days=1)).date())
        )
    result = sync(engine, company, settings.tz, "SALESPRC-PRODPRICE")["SALESPRC-PRODPRICE"]
    assert result.deleted == 1
    assert [p for p in dv.rows("productpricelevels") if p["_pricelevelid_value"] == retail] == []
    again = sync(engine, company, settings.tz, "SALESPRC-PRODPRICE")["SALESPRC-PRODPRICE"]
    assert not again.activity


def test_an_idle_run_costs_at_most_two_requests_and_ten_statements_per_mapping(
    settings: Settings, engine: Any, company: Sandbox
) -> None:
    from jobs.sales.connection import connect
    from jobs.sales.engine import SyncEngine

    dv = company.dataverse
    sync(engine, company, settings.tz)
    connected = connect(engine, company.box, company.bundle)
    runner = SyncEngine(engine, connected.client, connected.integration_user_id, tz=settings.tz)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        if not args[2].startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE is no query
            statements.append(args[2])

    event.listen(engine, "before_cursor_execute", seen)
    for name in ORDER:
        before_requests, before_sql = len(dv.requests), len(statements)
        counters = runner.run(name)
        assert not counters.activity, name
        assert len(dv.requests) - before_requests <= 2, name
        assert len(statements) - before_sql <= 10, (name, statements[before_sql:])
    connected.client.close()


def test_many_invoices_go_in_one_batch_and_a_refused_one_fails_alone(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    from jobs.sales.local import save
    from tests.sales_fixtures import invoice

    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "customers", {"no": "C2", "name": "Selangorian Ltd."}, user="ADMIN",
             tz=settings.tz)  # fmt: skip
    sync(engine, company, settings.tz, *ORDER[: ORDER.index("POSTEDSALESINV-INV")])  # before
    for n in range(2, 7):
        invoice(sessions, settings.tz, str(103000 + n), "C1")
    invoice(sessions, settings.tz, "103007", "C2")
    account = next(a for a in dv.rows("accounts") if a["accountnumber"] == "C2")
    with dv.lock:  # deleted in Dataverse by hand, unseen yet: its invoice is refused
        dv._remove("accounts", account["accountid"])
    before = requests_to(dv, "$batch")
    result = sync(engine, company, settings.tz, "POSTEDSALESINV-INV")["POSTEDSALESINV-INV"]
    assert (result.inserted, result.failed) == (6, 1)
    assert requests_to(dv, "$batch") - before == 1  # seven change sets, one request
    assert sorted(i["name"] for i in dv.rows("invoices")) == [str(103001 + n) for n in range(6)]
    assert len(dv.rows("invoicedetails")) == 12  # the refused invoice left no line behind
    with sessions() as session:
        [error] = session.execute(select(SyncError)).scalars().all()
        assert error.local_id == "103007" and "Does Not Exist" in error.message


# https://learn.microsoft.com/power-apps/developer/data-platform/webapi/use-change-tracking-synchronize-data-external-systems
# ("Retrieve changes in tables using the Web API": the answer after a row was deleted)
DOCUMENTED_DELTA = """{
  "@odata.context":"[Organization URI]/api/data/v9.2/$metadata#accounts(name,accountnumber,telephone1,fax)/$delta",
  "@odata.deltaLink":"[Organization URI]/api/data/v9.2/accounts?$select=name,accountnumber,telephone1,fax&$deltatoken=919058%2108%2f22%2f2017%2008%3a21%3a20",
  "value":[
    {
      "@odata.context":"[Organization URI]/api/data/v9.2/$metadata#accounts/$deletedEntity",
      "id":"60c4e274-0d87-e711-80e5-00155db19e6d",
      "reason":"deleted"
    }
  ]
}"""  # noqa: E501


def test_deleted_rows_are_read_as_microsoft_documents_them(
    settings: Settings, engine: Any, company: Sandbox
) -> None:
    documented = json.loads(DOCUMENTED_DELTA)["value"][0]
    assert is_deleted(documented)
    assert not is_deleted({"@odata.etag": 'W/"915244"', "name": "Monte Orton"})
    dv = company.dataverse
    sync(engine, company, settings.tz, "SALESPEOPLE")
    user = dv.add_user("Pat Leaving", "pat@cronus.com")
    sync(engine, company, settings.tz, "SALESPEOPLE")
    dv.delete("systemusers", user)
    from jobs.sales.connection import connect

    connected = connect(engine, company.box, company.bundle)
    with engine.connect() as conn:
        link = conn.execute(
            select(IntegrationTableMapping.dataverse_delta_link).where(
                IntegrationTableMapping.name == "SALESPEOPLE"
            )
        ).scalar_one()
    changes = connected.client.changes("systemusers", ["fullname"], link)
    rows = list(changes.rows)
    connected.client.close()
    [gone] = [r for r in rows if is_deleted(r)]
    assert set(gone) == set(documented) and gone["id"] == user
    result = sync(engine, company, settings.tz, "SALESPEOPLE")["SALESPEOPLE"]
    assert result.deleted == 1  # a mapping that only reads removes the coupling


def test_a_plain_sql_change_by_another_program_wakes_the_sleeping_entry(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    from dramatiq.brokers.stub import StubBroker

    from domain.queue.models import JobQueueEntry
    from domain.queue.status import EntryStatus
    from domain.sales.models import Item
    from scheduler.service import SchedulerService
    from tests.helpers import entry
    from workers.app import create_app

    sync(engine, company, settings.tz)
    app = create_app(settings, broker=StubBroker(middleware=[]), engine=engine)
    service = SchedulerService(settings, engine, app.broker)
    assert service.lease.acquire_or_renew(utcnow())
    assert service.probe_changes() == []  # nothing sleeps: one statement, no wake-up
    with sessions.begin() as session:
        session.execute(
            update(JobQueueEntry)
            .where(JobQueueEntry.code.in_(["ITEM-PRODUCT", "CUSTOMER"]))
            .values(status=EntryStatus.ON_HOLD_INACTIVITY)
        )
    assert service.probe_changes() == []  # asleep, and nothing changed since the sync
    with engine.begin() as conn:  # another program writes the item table in plain SQL
        conn.execute(
            update(Item)
            .where(Item.no == "1000")
            .values(description="Bicycle (plain SQL)", modified_at=utcnow() + timedelta(seconds=1))
        )
    assert service.probe_changes() == ["ITEM-PRODUCT"]
    assert entry(sessions, "ITEM-PRODUCT").status == EntryStatus.READY
    assert entry(sessions, "CUSTOMER").status == EntryStatus.ON_HOLD_INACTIVITY
