"""Issue 18, point 1: contacts and currencies. CURRENCY sends currencies to
transaction currencies; price lists and invoices carry their currency (the local
currency is the organization's base currency); CONTACT syncs contacts both ways,
linked to the account of their customer."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from domain.sales.models import Contact
from jobs.sales.local import save
from runtime.settings import Settings
from tests.sales_fixtures import Sandbox, sync


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


def test_currencies_go_to_dataverse_and_documents_carry_theirs(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "sales_invoice_headers",
             {"no": "103002", "customer_no": "C1", "posting_date": date(2026, 11, 21),
              "currency_code": "USD", "amount": 100, "amount_including_vat": 121},
             user="ADMIN", tz=settings.tz)  # fmt: skip
    results = sync(engine, company, settings.tz)
    assert results["CURRENCY"].inserted == 1
    currencies = by(dv.rows("transactioncurrencies"), "isocurrencycode")
    usd = currencies["USD"]
    assert (usd["currencyname"], usd["currencysymbol"], usd["exchangerate"]) == (
        "US Dollar",
        "$",
        1.08,
    )
    assert usd["currencyprecision"] == 2
    base = dv.base_currency
    assert all(p["_transactioncurrencyid_value"] == base for p in dv.rows("pricelevels"))
    invoices = by(dv.rows("invoices"), "invoicenumber")
    assert invoices["103001"]["_transactioncurrencyid_value"] == base  # the local currency
    assert invoices["103002"]["_transactioncurrencyid_value"] == usd["transactioncurrencyid"]


def test_an_invoice_in_an_unknown_currency_fails_alone_naming_it(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    with sessions.begin() as session:
        save(session, "sales_invoice_headers",
             {"no": "103009", "customer_no": "C1", "posting_date": date(2026, 11, 21),
              "currency_code": "XXX"}, user="ADMIN", tz=settings.tz)  # fmt: skip
    results = sync(engine, company, settings.tz)
    assert results["POSTEDSALESINV-INV"].inserted == 1  # the other invoice went
    from domain.sales.integration import SyncError

    with sessions() as session:
        reasons = [e.message for e in session.execute(select(SyncError)).scalars()]
    assert any("currency 'XXX' does not exist" in r for r in reasons), reasons


def test_contacts_go_both_ways_linked_to_their_customers_account(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "contacts", {"no": "CT1", "first_name": "Ann", "surname": "Lee",
             "email": "ann@fabrikam.com", "customer_no": "C1", "job_title": "Buyer"},
             user="ADMIN", tz=settings.tz)  # fmt: skip
        session.add(Contact(no="CT2", name="Ben Okafor", email="ben@fabrikam.com"))
        session.add(Contact(no="CT3", name="Smith, Jo", customer_no="NOPE"))
    results = sync(engine, company, settings.tz)
    assert results["CONTACT"].inserted == 2 and results["CONTACT"].failed == 1
    people = by(dv.rows("contacts"), "emailaddress1")
    [account] = dv.rows("accounts")
    ann, ben = people["ann@fabrikam.com"], people["ben@fabrikam.com"]
    assert (ann["firstname"], ann["lastname"], ann["jobtitle"]) == ("Ann", "Lee", "Buyer")
    assert ann["_parentcustomerid_value"] == account["accountid"]
    assert (ben["firstname"], ben["lastname"]) == ("Ben", "Okafor")  # split from the name
    assert ben.get("_parentcustomerid_value") is None
    from domain.sales.integration import SyncError

    with sessions() as session:
        [error] = session.execute(select(SyncError).where(SyncError.local_id == "CT3")).scalars()
    assert "customer 'NOPE' does not exist" in error.message

    # Someone changes Ann's phone and title in Sales: it comes back here, and only that.
    dv.edit("contacts", ann["contactid"], {"telephone1": "+31 20 555 0101", "jobtitle": "CFO"},
            by=dv.administrator)  # fmt: skip
    again = sync(engine, company, settings.tz, "CONTACT")
    assert again["CONTACT"].modified == 1
    with sessions() as session:
        stored = session.get(Contact, "CT1")
        assert stored is not None
        assert (stored.phone_no, stored.job_title, stored.surname) == (
            "+31 20 555 0101",
            "CFO",
            "Lee",
        )
    quiet = sync(engine, company, settings.tz, "CONTACT")
    assert not quiet["CONTACT"].activity  # what came back does not go out again
