"""Issue 18, point 6: a way in for the back office's data. `jobqueue data import TABLE
FILE` (CSV or JSON lines) upserts by business key, checks every row first (a line per
bad row, nothing written), and wakes the entries that sync the table."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from domain.sales.models import Item, SalesPrice
from domain.sales.records import FieldValueError, check_record, local_table
from jobs.sales.data_import import ImportRefused, import_rows, rows_of_text
from runtime.settings import Settings
from tests.helpers import cli_runner


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_USER", "ANNA")
    return cli_runner(capsys)


def items(sessions: Any) -> dict[str, Item]:
    with sessions() as session:
        return {i.no: i for i in session.execute(select(Item)).scalars()}


def test_a_csv_and_then_json_lines_add_and_update_items_by_their_number(
    cli: Any, sessions: Any, tmp_path: Path
) -> None:
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("no,description,base_unit_of_measure,unit_price,blocked\n"
                        "1000,Bicycle,PCS,4000.50,no\n"
                        "1001,\"Wheel, front\",PCS,120,yes\n")  # fmt: skip
    code, out, err = cli("data", "import", "items", str(csv_file))
    assert code == 0 and out.strip() == "items: 2 added, 0 updated", err
    lines = tmp_path / "items.jsonl"
    lines.write_text(
        '{"no": "1000", "unit_price": 3999}\n\n{"no": "1002", "description": "Bell"}\n'
    )
    code, out, err = cli("data", "import", "items", str(lines))
    assert code == 0 and out.strip() == "items: 1 added, 1 updated", err
    stored = items(sessions)
    assert stored["1000"].description == "Bicycle" and stored["1000"].unit_price == Decimal(3999)
    assert stored["1001"].description == "Wheel, front" and stored["1001"].blocked
    assert stored["1002"].base_unit_of_measure == "" and stored["1000"].modified_by == "ANNA"


def test_bad_rows_are_a_line_each_and_nothing_is_written(
    cli: Any, sessions: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "items.csv"
    bad.write_text("no,description,unit_price,colour\n1000,Bicycle,1,red\n")
    code, _out, err = cli("data", "import", "items", str(bad))
    assert code == 2 and "line 2: colour: no such field" in err
    bad.write_text("no,description,unit_price\n1000,Bicycle,1\n1001,Wheel,cheap\n"
                   f"1002,{'x' * 101},1\n,Nameless,1\n1000,Again,2\n"
                   "1003,Extra,1,surplus\n")  # fmt: skip
    code, _out, err = cli("data", "import", "items", str(bad))
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == "jobqueue: nothing was imported"
    assert lines[:-1] == [
        "jobqueue: error: line 3: unit_price: 'cheap' is not a number (use a point: 12.50)",
        "jobqueue: error: line 4: description: 101 characters is over the maximum of 100",
        "jobqueue: error: line 5: no: must not be empty; it identifies the record",
        "jobqueue: error: line 6: the same record as line 2 (1000)",
        "jobqueue: error: line 7: row: has more cells than the header row",
    ]
    assert items(sessions) == {}  # the good first row was not written either
    broken = tmp_path / "items.jsonl"
    broken.write_text('{"no": "1"}\n{"no": \n["not", "an", "object"]\n')
    code, _out, err = cli("data", "import", "items", str(broken))
    assert code == 2 and "line 2: row: not JSON" in err and "line 3: row: must be an object" in err
    code, _out, err = cli("data", "import", "items", str(tmp_path / "missing.csv"))
    assert code == 2 and "No such file" in err


def test_prices_are_keyed_by_their_business_key_even_without_a_starting_date(
    settings: Settings, sessions: Any
) -> None:
    row = {"sales_type": "Customer Price Group", "sales_code": "RETAIL", "item_no": "1000",
           "unit_of_measure_code": "PCS", "unit_price": "10"}  # fmt: skip
    for price in ("10", "12.5"):
        with sessions.begin() as session:
            import_rows(session, "sales_prices", [(1, row | {"unit_price": price})], user="ANNA",
                        tz=settings.tz)  # fmt: skip
    with sessions() as session:
        [only] = session.execute(select(SalesPrice)).scalars()
    assert only.unit_price == Decimal("12.5") and only.starting_date is None


def test_invoice_lines_need_their_posted_invoice(settings: Settings, sessions: Any) -> None:
    line = {"document_no": "103001", "line_no": 10000, "type": "Item", "no": "1000"}
    with (
        pytest.raises(ImportRefused, match="line 1: document_no: no sales invoice header '103001'"),
        sessions.begin() as session,
    ):
        import_rows(session, "sales_invoice_lines", [(1, line)], user="A", tz=settings.tz)


def test_an_import_wakes_the_entry_that_syncs_the_table(settings: Settings, sessions: Any) -> None:
    from domain.clock import utcnow
    from domain.queue.status import EntryStatus
    from jobs.sales.setup import setup_defaults
    from tests.helpers import entry

    with sessions.begin() as session:
        setup_defaults(session, utcnow(), settings.tz)
    with sessions.begin() as session:
        e = session.merge(entry(sessions, "ITEM-PRODUCT"))
        e.status = EntryStatus.ON_HOLD_INACTIVITY
    with sessions.begin() as session:
        import_rows(session, "items", [(1, {"no": "1000", "description": "Bicycle"})],
                    user="ANNA", tz=settings.tz)  # fmt: skip
    assert entry(sessions, "ITEM-PRODUCT").status == EntryStatus.READY


TABLE = local_table("items")
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                   st.text(max_size=120), st.lists(st.integers(), max_size=2))  # fmt: skip


SLOW_BOX = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]  # a loaded 2-core CI


@hsettings(max_examples=300, deadline=None, suppress_health_check=SLOW_BOX)
@given(st.dictionaries(st.sampled_from([*TABLE.fields, "colour", "modified_at"]), VALUES,
                       max_size=6))  # fmt: skip
def test_any_row_is_either_stored_as_checked_or_refused_naming_a_field(
    row: dict[str, Any],
) -> None:
    """Generated rows: the check never raises anything but FieldValueError, and what it
    passes fits the columns (text within its length, numbers within Numeric(18, 4))."""
    try:
        checked = check_record(TABLE, row)
    except FieldValueError as exc:
        assert exc.field in row or exc.field in TABLE.key
        return
    assert set(checked) == set(row) and checked["no"] != ""
    for name, value in checked.items():
        column = TABLE.table.c[name]
        if isinstance(value, str):
            assert len(value) <= column.type.length  # type: ignore[attr-defined]
        if isinstance(value, Decimal):
            assert abs(value) < Decimal(10) ** 14


def test_json_lines_and_csv_read_the_same_rows() -> None:
    csv_rows = list(rows_of_text("no,description\n1000,Bike\n", "csv"))
    json_rows = list(
        rows_of_text(json.dumps({"no": "1000", "description": "Bike"}) + "\n", "jsonl")
    )
    assert [r for _, r in csv_rows] == [r for _, r in json_rows]
    assert [n for n, _ in csv_rows] == [2] and [n for n, _ in json_rows] == [1]


def test_a_large_import_is_a_few_statements_per_thousand_rows(
    settings: Settings, sessions: Any, engine: Any
) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    rows = [
        (n, {"no": f"{n:05d}", "description": f"Item {n}", "unit_price": n}) for n in range(2500)
    ]
    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions.begin() as session:
            saved = import_rows(session, "items", rows, user="A", tz=settings.tz)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (saved.inserted, saved.updated) == (2500, 0)
    assert len(statements) < 20  # 3 chunks: a read and an insert each, and the wake-up
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(Item)).scalar_one() == 2500


def test_an_opportunity_needs_its_contact_and_salesperson(
    settings: Settings, sessions: Any
) -> None:
    row = {"no": "OP1", "description": "Deal", "contact_no": "CT404", "salesperson_code": "NOBODY",
           "status": "Won"}  # fmt: skip
    with pytest.raises(ImportRefused) as refused, sessions.begin() as session:
        rows = [(1, row), (2, row | {"no": "OP2", "status": "Maybe"})]
        import_rows(session, "opportunities", rows, user="A", tz=settings.tz)
    assert refused.value.errors == [
        "line 2: status: 'Maybe' is not one of Not Started, In Progress, Won, Lost",
        "line 1: contact_no: no contact 'CT404'",
        "line 1: salesperson_code: no salesperson 'NOBODY'",
    ]


def test_sales_lines_need_their_document_of_the_same_type(
    settings: Settings, sessions: Any
) -> None:
    header = {"no": "SO1", "document_type": "Order", "customer_no": "C1"}
    with sessions.begin() as session:
        import_rows(session, "sales_headers", [(1, header)], user="A", tz=settings.tz)
    lines = [(1, {"document_type": "Order", "document_no": "SO1", "line_no": 10000, "no": "1000",
                  "type": "Item", "quantity": "2"}),
             (2, {"document_type": "Quote", "document_no": "SO1", "line_no": 10000})]  # fmt: skip
    with pytest.raises(ImportRefused) as refused, sessions.begin() as session:
        import_rows(session, "sales_lines", lines, user="A", tz=settings.tz)
    assert refused.value.errors == [
        "line 2: document_type, document_no: no sales header 'Quote SO1'"
    ]
    with sessions.begin() as session:
        saved = import_rows(session, "sales_lines", lines[:1], user="A", tz=settings.tz)
    assert saved.inserted == 1
