"""Issue 18, point 4: coupling tools. Match-based coupling couples exactly the pairs
it previewed (the plan is applied as saved, whatever changed since); coupling by hand
and uncoupling keep each side coupled at most once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from domain.clock import utcnow
from domain.sales.integration import Coupling, SyncResult
from domain.sales.models import Customer
from jobs.sales import matching
from jobs.sales.connection import connect
from jobs.sales.local import save
from runtime.settings import Settings
from tests.helpers import cli_runner
from tests.sales_fixtures import Sandbox, sync


def couplings(sessions: Any, table: str = "customers") -> dict[str, str]:
    with sessions() as session:
        rows = session.execute(select(Coupling).where(Coupling.local_table == table)).scalars()
        return {c.local_id: c.dataverse_id for c in rows}


@pytest.fixture
def crm(settings: Settings, sessions: Any, company: Sandbox) -> dict[str, str]:
    """Accounts someone made in Sales before the integration, and our customers."""
    dv = company.dataverse
    with sessions.begin() as session:
        for no, name in (("C2", "Contoso"), ("C3", "Northwind")):
            save(session, "customers", {"no": no, "name": name}, user="ADMIN", tz=settings.tz)
    with sessions() as session:
        c1 = session.get(Customer, "C1")  # the seeded customer
        assert c1 is not None
    return {
        "fabrikam": dv.add("accounts", {"name": f"  {c1.name.upper()} "}),
        "contoso-1": dv.add("accounts", {"name": "Contoso"}),
        "contoso-2": dv.add("accounts", {"name": "contoso"}),
    }


def test_match_based_coupling_couples_exactly_the_previewed_pairs(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox, crm: dict[str, str]
) -> None:
    dv = company.dataverse
    connected = connect(engine, company.box, company.bundle)
    with connected.client as client:
        plan = matching.preview(engine, client, "CUSTOMER", ["name"])
        assert [(p.local_id, p.row_id) for p in plan.pairs] == [("C1", crm["fabrikam"])]
        assert plan.ambiguous == {"C2": 2} and plan.unmatched == 1  # Northwind: no account
        assert couplings(sessions) == {}  # a preview writes nothing
        dv.add("accounts", {"name": "Northwind"})  # made after the preview: not in the plan
        saved = matching.Plan.from_json(plan.to_json())
        assert matching.apply(engine, client, saved, utcnow()) == []
    assert couplings(sessions) == {"C1": crm["fabrikam"]}
    accounts = len(dv.rows("accounts"))
    sync(engine, company, settings.tz, "CUSTOMER")
    assert couplings(sessions)["C1"] == crm["fabrikam"]
    fabrikam = next(a for a in dv.rows("accounts") if a["accountid"] == crm["fabrikam"])
    assert fabrikam["accountnumber"] == "C1"  # the coupled record was synchronized
    assert len(dv.rows("accounts")) == accounts + 2  # C2 and C3 created, C1 not again


def test_a_plan_changed_after_its_preview_or_gone_stale_is_refused_or_left_out(
    engine: Any, sessions: Any, company: Sandbox, crm: dict[str, str]
) -> None:
    connected = connect(engine, company.box, company.bundle)
    with connected.client as client:
        plan = matching.preview(engine, client, "CUSTOMER", ["name"])
        tampered = plan.to_json().replace(crm["fabrikam"], crm["contoso-1"])
        with pytest.raises(matching.CouplingError, match="changed after it was previewed"):
            matching.Plan.from_json(tampered)
        company.dataverse.edit("accounts", crm["fabrikam"], {"name": "Someone else"},
                               by=company.dataverse.administrator)  # fmt: skip
        left_out = matching.apply(engine, client, plan, utcnow())
    assert left_out == ["C1: the Dataverse row no longer matches"]
    assert couplings(sessions) == {}
    with (
        pytest.raises(matching.CouplingError, match="salesperson_code is not a plain field"),
        connect(engine, company.box, company.bundle).client as client,
    ):  # the owner comes through a transform: nothing to compare
        matching.preview(engine, client, "CUSTOMER", ["name", "salesperson_code"])


def test_coupling_by_hand_and_uncoupling_keep_each_side_coupled_once(
    engine: Any, sessions: Any, company: Sandbox, crm: dict[str, str]
) -> None:
    with connect(engine, company.box, company.bundle).client as client:
        matching.couple(engine, client, "CUSTOMER", "C2", crm["contoso-1"], utcnow())
        with pytest.raises(matching.CouplingError, match="coupled already to 'C2'"):
            matching.couple(engine, client, "CUSTOMER", "C3", crm["contoso-1"], utcnow())
        with pytest.raises(matching.CouplingError, match="'C2' is coupled already"):
            matching.couple(engine, client, "CUSTOMER", "C2", crm["contoso-2"], utcnow())
        with pytest.raises(matching.CouplingError, match="no accounts row"):
            matching.couple(engine, client, "CUSTOMER", "C3",
                            "00000000-0000-4000-8000-000000000000", utcnow())  # fmt: skip
        with pytest.raises(matching.CouplingError, match="no customers record 'C9'"):
            matching.couple(engine, client, "CUSTOMER", "C9", crm["contoso-2"], utcnow())
    assert couplings(sessions) == {"C2": crm["contoso-1"]}
    assert matching.uncouple(engine, "CUSTOMER", "C2") == crm["contoso-1"]
    assert couplings(sessions) == {}
    assert any(a["accountid"] == crm["contoso-1"] for a in company.dataverse.rows("accounts"))


def test_the_command_line_previews_saves_and_applies_a_plan(
    settings: Settings, sessions: Any, company: Sandbox, crm: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", company.key)
    monkeypatch.setenv("JOBQUEUE_CA_FILE", company.bundle)
    run = cli_runner(capsys)
    plan = tmp_path / "plan.json"
    code, out, err = run("sales", "match", "CUSTOMER", "--on", "name", "--save", str(plan))
    assert code == 0, err
    assert "1 to couple, 1 ambiguous (left alone), 1 without a match" in out
    code, out, err = run("sales", "match-apply", str(plan))
    assert code == 0 and "1 coupled" in out, err
    assert couplings(sessions) == {"C1": crm["fabrikam"]}
    code, _out, err = run("sales", "match", "CUSTOMER", "--on", "colour")
    assert code == 2 and "colour is not a plain field of CUSTOMER" in err
    code, out, _err = run("sales", "uncouple", "CUSTOMER", "C1")
    assert code == 0 and "uncoupled" in out


def test_sync_now_retry_and_full_sync_go_through_the_entries(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    from datetime import date

    from sqlalchemy import update

    from domain.queue.models import JobQueueEntry
    from domain.queue.status import EntryStatus
    from domain.sales.integration import IntegrationTableMapping, PendingRecord
    from jobs.sales import rerun
    from tests.helpers import entry

    dv = company.dataverse
    with sessions.begin() as session:
        save(session, "sales_invoice_headers", {"no": "103009", "customer_no": "C1",
             "posting_date": date(2026, 11, 21), "currency_code": "XXX"},
             user="ADMIN", tz=settings.tz)  # fmt: skip
    sync(engine, company, settings.tz)
    rows = {s: len(dv.rows(s)) for s in ("accounts", "products", "invoices", "contacts")}
    with sessions.begin() as session:  # the entries asleep, as after quiet runs
        session.execute(
            update(JobQueueEntry)
            .where(JobQueueEntry.code.in_(["CUSTOMER", "POSTEDSALESINV-INV"]))
            .values(status=EntryStatus.ON_HOLD_INACTIVITY)
        )

    with sessions.begin() as session:
        assert rerun.sync_record(session, "CUSTOMER", "C1", utcnow()) == "CUSTOMER"
    assert entry(sessions, "CUSTOMER").status == EntryStatus.READY
    with sessions() as session:
        assert session.get(PendingRecord, ("CUSTOMER", "C1")) is not None
    sync(engine, company, settings.tz, "CUSTOMER")
    with sessions() as session:
        assert session.get(PendingRecord, ("CUSTOMER", "C1")) is None  # it was synchronized
    with sessions.begin() as session, pytest.raises(rerun.RerunError, match="no customers record"):
        rerun.sync_record(session, "CUSTOMER", "C404", utcnow())

    with sessions.begin() as session:
        assert rerun.retry_failed(session, utcnow()) == {"POSTEDSALESINV-INV": 1}
    assert entry(sessions, "POSTEDSALESINV-INV").status == EntryStatus.READY

    with sessions.begin() as session:
        codes = rerun.full_sync(session, utcnow())
    assert codes[:3] == ["SALESPEOPLE", "CURRENCY", "CUSTOMER"]
    with sessions() as session:
        marks = session.execute(select(IntegrationTableMapping.local_watermark)).scalars()
        assert set(marks) == {None}
    again = sync(engine, company, settings.tz)
    assert again["ITEM-PRODUCT"].unchanged >= 2  # every record read and compared again
    assert {s: len(dv.rows(s)) for s in rows} == rows  # and nothing made twice


def test_applying_a_large_plan_reads_its_rows_a_chunk_at_a_time_and_leaves_out_only_the_stale(
    settings: Settings, engine: Any, sessions: Any, company: Sandbox
) -> None:
    dv = company.dataverse
    with sessions.begin() as session:
        for n in range(120):
            save(session, "customers", {"no": f"M{n:03d}", "name": f"Match {n}"}, user="ADMIN",
                 tz=settings.tz)  # fmt: skip
    rows = {f"M{n:03d}": dv.add("accounts", {"name": f"match {n}"}) for n in range(120)}
    connected = connect(engine, company.box, company.bundle)
    with connected.client as client:
        plan = matching.preview(engine, client, "CUSTOMER", ["name"])
        assert len(plan.pairs) == 120
        dv.delete("accounts", rows["M007"])  # gone since the preview
        with sessions.begin() as session:  # coupled by hand since the preview
            by_hand = Coupling(local_table="customers", local_id="M099",
                               dataverse_table="accounts", dataverse_id=rows["M099"],
                               last_result=SyncResult.SUCCESS, last_synced_at=utcnow())  # fmt: skip
            session.add(by_hand)
        before = len(dv.requests)
        left_out = matching.apply(engine, client, plan, utcnow())
        reads = [r for r in dv.requests[before:] if r[0] == "GET"]
    assert len(reads) == 3  # 120 pairs, 50 a read
    assert left_out == [
        f"M007: the Dataverse row {rows['M007']} is gone",
        "M099: customers 'M099' is coupled already",
    ]
    found = couplings(sessions)
    assert len(found) == 119 and found["M000"] == rows["M000"] and found["M119"] == rows["M119"]
