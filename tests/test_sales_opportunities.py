"""Issue 18, point 2: opportunities both ways. Opportunities made here (or from a logged
email) go to Dataverse with their contact and the salesperson as owner; changes made to
a coupled opportunity in Sales come back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from domain.clock import utcnow
from domain.sales.integration import Coupling, PendingRow, SyncError
from domain.sales.models import Opportunity
from jobs.sales import matching
from jobs.sales.connection import connect
from jobs.sales.local import save
from runtime.settings import Settings
from tests.sales_fixtures import Sandbox, sync


def test_opportunities_go_to_sales_with_their_contact_and_come_back_changed(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    from admin.email_logging import to_opportunity
    from domain.interactions.models import InformationFlow, InteractionLogEntry

    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "contacts", {"no": "CT1", "first_name": "Ann", "surname": "Lee",
             "customer_no": "C1"}, user="ADMIN", tz=settings.tz)  # fmt: skip
        save(session, "contacts", {"no": "CT9", "surname": "Later"}, user="ADMIN", tz=settings.tz)
        save(session, "opportunities", {"no": "OP1", "description": "20 bicycles",
             "contact_no": "CT1", "salesperson_code": "JO", "estimated_value": Decimal(5000),
             "estimated_close_date": date(2026, 12, 31)}, user="ADMIN", tz=settings.tz)  # fmt: skip
        entry = InteractionLogEntry(contact_no="CT1", salesperson_code="JO",
                                    information_flow=InformationFlow.INBOUND, subject="Fleet offer",
                                    occurred_at=utcnow(), logged_at=utcnow(), message_id="<m1@x>",
                                    message_key="k1")  # fmt: skip
        session.add(entry)
        session.flush()
        from_email = to_opportunity(session, entry.entry_no)  # made from a logged email
    sync(engine, company, settings.tz, "SALESPEOPLE", "CUSTOMER")
    first = sync(engine, company, settings.tz, "CONTACT", "OPPORTUNITY")
    assert first["OPPORTUNITY"].inserted == 2
    contacts = {c["lastname"]: c for c in dv.rows("contacts")}
    deals = {o["name"]: o for o in dv.rows("opportunities")}
    deal = deals["20 bicycles"]
    jim = next(u for u in dv.rows("systemusers") if u["internalemailaddress"] == "jim@cronus.com")
    assert deal["_parentcontactid_value"] == contacts["Lee"]["contactid"]
    assert deal["_ownerid_value"] == jim["systemuserid"]
    assert (deal["estimatedvalue"], deal["estimatedclosedate"]) == (5000.0, "2026-12-31")
    assert deals["Fleet offer"]["_parentcontactid_value"] == contacts["Lee"]["contactid"]
    assert from_email.no != "OP1"

    dv.edit("opportunities", deal["opportunityid"],
            {"name": "25 bicycles", "estimatedvalue": 6250.0, "estimatedclosedate": "2027-01-15"},
            by=dv.administrator)  # fmt: skip
    back = sync(engine, company, settings.tz, "OPPORTUNITY")
    assert back["OPPORTUNITY"].modified == 1
    with sessions() as session:
        op1 = session.get(Opportunity, "OP1")
        assert op1 is not None
        assert (op1.description, op1.estimated_value) == ("25 bicycles", Decimal(6250))
        assert op1.estimated_close_date == date(2027, 1, 15)
    assert not sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"].activity


def test_an_opportunity_whose_contact_is_not_in_sales_waits_naming_it(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    with sessions.begin() as session:
        save(session, "contacts", {"no": "CT2", "surname": ""}, user="ADMIN", tz=settings.tz)
        save(session, "opportunities", {"no": "OP2", "description": "Spare parts",
             "contact_no": "CT2", "salesperson_code": "JO"},
             user="ADMIN", tz=settings.tz)  # fmt: skip
    results = sync(engine, company, settings.tz)
    assert results["OPPORTUNITY"].skipped == 1
    with sessions() as session:
        reasons = [e.message for e in session.execute(
            select(SyncError).where(SyncError.local_id == "OP2")).scalars()]  # fmt: skip
    assert any("contact 'CT2' is not coupled to Dataverse yet" in r for r in reasons), reasons
    assert any("surname and name are blank" in r for r in reasons), reasons  # its own reason


def test_an_opportunity_made_in_sales_comes_here_with_its_contact_and_salesperson(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "contacts", {"no": "CT1", "first_name": "Ann", "surname": "Lee",
             "customer_no": "C1"}, user="ADMIN", tz=settings.tz)  # fmt: skip
    sync(engine, company, settings.tz, "SALESPEOPLE", "CUSTOMER", "CONTACT")
    ann = next(c for c in dv.rows("contacts") if c["lastname"] == "Lee")["contactid"]
    jim = next(u for u in dv.rows("systemusers") if u["internalemailaddress"] == "jim@cronus.com")
    stranger = dv.add("contacts", {"lastname": "Unknown"})  # never coupled here
    owner = f"/systemusers({jim['systemuserid']})"
    deal = dv.add("opportunities", {"name": "Service contract", "estimatedvalue": 1200.0,
                                    "parentcontactid@odata.bind": f"/contacts({ann})",
                                    "ownerid@odata.bind": owner})  # fmt: skip
    dv.add("opportunities", {"name": "Cold lead", "ownerid@odata.bind": owner,
                             "parentcontactid@odata.bind": f"/contacts({stranger})"})  # fmt: skip
    result = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (result.inserted, result.failed) == (1, 1)
    with sessions() as session:
        [made] = session.execute(select(Opportunity)).scalars()
        assert (made.no, made.description, made.contact_no, made.salesperson_code) == (
            "OP000001", "Service contract", "CT1", "JO")  # fmt: skip
        assert made.estimated_value == Decimal(1200) and made.interaction_entry_no is None
        [error] = session.execute(select(SyncError).where(SyncError.dataverse_id != deal)).scalars()
    assert f"its contact (contacts({stranger})) is not coupled here" in error.message
    again = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert again.inserted == 0 and len(dv.rows("opportunities")) == 2  # no echo either way


def test_a_row_read_that_failed_is_read_again_by_later_runs_until_it_comes_in(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    """A row from Sales that could not come in (its contact is not coupled here) is not
    forgotten until someone edits it: every run reads it again (no activity while it
    fails as before), and once its contact is coupled it comes in."""
    dv = company.dataverse
    sync(engine, company, settings.tz, "SALESPEOPLE", "CUSTOMER", "CONTACT")
    jim = next(u for u in dv.rows("systemusers") if u["internalemailaddress"] == "jim@cronus.com")
    stranger = dv.add("contacts", {"lastname": "Stranger"})  # made after CONTACT ran
    owner, contact = f"/systemusers({jim['systemuserid']})", f"/contacts({stranger})"
    lead = dv.add("opportunities", {"name": "Cold lead", "ownerid@odata.bind": owner,
                                    "parentcontactid@odata.bind": contact})  # fmt: skip
    first = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (first.inserted, first.failed, first.activity) == (0, 1, True)
    again = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (again.failed, again.failed_again, again.activity) == (0, 1, False)  # may sleep
    with sessions.begin() as session:  # a run that writes reads its echo: the lead once
        save(session, "contacts", {"no": "CT5", "surname": "Buyer", "customer_no": "C1"},
             user="ADMIN", tz=settings.tz)  # fmt: skip
        save(session, "opportunities", {"no": "OP7", "description": "Helmets", "contact_no": "CT5",
             "salesperson_code": "JO"}, user="ADMIN", tz=settings.tz)  # fmt: skip
    sync(engine, company, settings.tz, "CONTACT")
    writing = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (writing.inserted, writing.failed_again) == (1, 1)
    doomed = dv.add("opportunities", {"name": "Doomed", "ownerid@odata.bind": owner,
                                      "parentcontactid@odata.bind": contact})  # fmt: skip
    sync(engine, company, settings.tz, "OPPORTUNITY")
    dv.delete("opportunities", doomed)  # deleted in Sales while it waited: waited for no more
    with sessions.begin() as session:  # the stranger becomes a contact here, coupled
        save(session, "contacts", {"no": "CT9", "surname": "Stranger", "customer_no": "C1"},
             user="ADMIN", tz=settings.tz)  # fmt: skip
    with connect(engine, company.box, company.bundle).client as client:
        matching.couple(engine, client, "CONTACT", "CT9", stranger, utcnow())
    later = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (later.inserted, later.failed, later.failed_again) == (1, 0, 0)
    with sessions() as session:
        [made] = session.execute(select(Opportunity).where(Opportunity.no != "OP7")).scalars()
        assert made.description == "Cold lead" and made.contact_no == "CT9"
        coupled = session.execute(select(Coupling.dataverse_id).where(
            Coupling.local_table == "opportunities")).scalars().all()  # fmt: skip
    assert lead in coupled and len(coupled) == 2
    with sessions() as session:
        assert session.execute(select(PendingRow)).first() is None
    idle = sync(engine, company, settings.tz, "OPPORTUNITY")["OPPORTUNITY"]
    assert (idle.inserted, idle.failed_again, idle.activity) == (0, 0, False)
