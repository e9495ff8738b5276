"""Dynamics 365 Sales sync benchmark: 5,000 items, 500 customers with a contact each, two
currencies, 2,000 posted invoice lines (1,000 invoices, half in a foreign currency), and
with sales order integration switched on 200 released orders (2 lines and a note each)
going to Sales while Sales submits 200 orders and activates 100 quotes (2 lines each),
on PostgreSQL, against the Dataverse emulator over HTTPS on loopback. Prints, for the
full first sync, an incremental sync after changing 1 % of the items, and an idle run:
HTTP requests, requests per record, SQL statements per record, wall time and records
per second; then creates measured side by side per table, UpsertMultiple against one
`$batch` of single creates.

Targets: full sync <= 1 request per 50 records and <= 15 s; incremental < 5 % of the full
run's time; idle <= 2 requests and <= 10 SQL statements per mapping.

    python -m bench.sync [--items 5000] [--customers 500] [--invoices 1000] [--orders 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, event, insert, update

from bench.email import _database, _drop
from domain.clock import utcnow
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.sales.defaults import DEFAULTS
from domain.sales.models import (
    Contact,
    Currency,
    Customer,
    DocumentStatus,
    DocumentType,
    Item,
    Resource,
    SalesHeader,
    SalesInvoiceHeader,
    SalesInvoiceLine,
    SalesLine,
    SalesNote,
    Salesperson,
    UnitOfMeasure,
    table,
)
from jobs.sales import writes
from jobs.sales.connection import connect, save_connection, set_switches
from jobs.sales.engine import SyncEngine
from jobs.sales.setup import setup_defaults
from runtime.logs import configure_logging
from runtime.secrets import Secret, SecretBox
from sandbox.dataverse import DataverseEmulator
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = "bench.onmicrosoft.com", "00000000-0000-4000-8000-00000000be02", "s"
# Every mapping, in dependency order: the bench switches sales order integration on.
ORDER = [m.name for m in DEFAULTS]
UTC_TZ = datetime.now().astimezone().tzinfo


@dataclass
class Phase:
    name: str
    requests: int
    statements: int
    records: int
    seconds: float
    per_mapping: dict[str, tuple[int, int]]

    def line(self) -> str:
        per = max(self.records, 1)
        return (
            f"{self.name:<12} {self.records:>6} records  {self.requests:>6} requests "
            f"({self.requests / per:.3f}/record, 1 per {per / max(self.requests, 1):.0f})  "
            f"{self.statements:>6} SQL ({self.statements / per:.3f}/record)  "
            f"{self.seconds:6.2f} s  {per / self.seconds:8.0f} records/s"
        )


class Statements:
    """Counts the SQL statements an engine sends (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def _seed(engine: Engine, items: int, customers: int, invoices: int) -> None:
    now = utcnow()
    stamp = {"modified_at": now, "modified_by": "ADMIN"}
    with engine.begin() as conn:
        conn.execute(
            insert(table(UnitOfMeasure)),
            [
                {"code": "PCS", "description": "Pieces", **stamp},
                {"code": "HOUR", "description": "Hour", **stamp},
            ],
        )
        conn.execute(
            insert(table(Item)),
            [
                {
                    "no": f"I{n:06d}",
                    "description": f"Item {n}",
                    "base_unit_of_measure": "PCS",
                    "unit_price": Decimal(10 + n % 90),
                    **stamp,
                }
                for n in range(items)
            ],
        )
        conn.execute(
            insert(table(Resource)),
            [{"no": "LIFT", "name": "Lift", "base_unit_of_measure": "HOUR", **stamp}],
        )
        conn.execute(
            insert(table(Salesperson)),
            [{"code": "JO", "name": "Jim Olive", "email": "jim@cronus.com", **stamp}],
        )
        conn.execute(
            insert(table(Customer)),
            [
                {"no": f"C{n:05d}", "name": f"Customer {n}", "salesperson_code": "JO", **stamp}
                for n in range(customers)
            ],
        )
        conn.execute(
            insert(table(Contact)),  # a contact person per customer
            [
                {"no": f"K{n:05d}", "first_name": "Pat", "surname": f"Buyer {n}",
                 "email": f"buyer{n}@example.com", "customer_no": f"C{n:05d}", **stamp}
                for n in range(customers)
            ],
        )  # fmt: skip
        conn.execute(
            insert(table(Currency)),
            [
                {"code": "USD", "description": "US Dollar", "symbol": "$", **stamp},
                {"code": "GBP", "description": "Pound Sterling", "symbol": "£", **stamp},
            ],
        )
        conn.execute(
            insert(table(SalesInvoiceHeader)),
            [
                {
                    "no": f"S{n:06d}",
                    "customer_no": f"C{n % customers:05d}",
                    "salesperson_code": "JO",
                    "posting_date": date(2026, 11, 20),
                    "currency_code": ("", "USD", "", "GBP")[n % 4],
                    "amount": Decimal(100),
                    **stamp,
                }
                for n in range(invoices)
            ],
        )
        conn.execute(
            insert(table(SalesInvoiceLine)),
            [
                {
                    "document_no": f"S{n:06d}",
                    "line_no": line * 10000,
                    "type": "Item",
                    "no": f"I{(n * 2 + line) % items:06d}",
                    "quantity": Decimal(1),
                    "unit_of_measure_code": "PCS",
                    "unit_price": Decimal(50),
                }
                for n in range(invoices)
                for line in (1, 2)
            ],
        )


def _seed_orders(engine: Engine, orders: int, items: int, customers: int) -> None:
    """Released orders made here (two item lines and a note each), for Sales."""
    now = utcnow()
    numbers = [f"SO{n:06d}" for n in range(orders)]
    with engine.begin() as conn:
        conn.execute(
            insert(table(SalesHeader)),
            [
                {"no": no, "document_type": DocumentType.ORDER, "customer_no":
                 f"C{n % customers:05d}", "salesperson_code": "JO",
                 "order_date": date(2026, 11, 20),
                 "status": DocumentStatus.RELEASED, "modified_at": now, "modified_by": "ADMIN"}
                for n, no in enumerate(numbers)
            ],
        )  # fmt: skip
        conn.execute(
            insert(table(SalesLine)),
            [
                {"document_type": DocumentType.ORDER, "document_no": no, "line_no": line * 10000,
                 "type": "Item", "no": f"I{(n * 3 + line) % items:06d}", "quantity": Decimal(2),
                 "unit_of_measure_code": "PCS", "unit_price": Decimal(30),
                 "line_amount": Decimal(60)}
                for n, no in enumerate(numbers)
                for line in (1, 2)
            ],
        )  # fmt: skip
        conn.execute(
            insert(table(SalesNote)),
            [
                {"document_type": DocumentType.ORDER, "document_no": no,
                 "text": f"Deliver {no} to the back door", "created_by": "ADMIN",
                 "created_at": now}
                for no in numbers
            ],
        )  # fmt: skip


def _sell_in_sales(dv: DataverseEmulator, orders: int, quotes: int) -> None:
    """Salespeople submit orders and activate quotes in Sales (two product lines each),
    once the accounts and products are there: made inside the emulator, no request."""
    accounts = [a["accountid"] for a in dv.rows("accounts")]
    products = [p["productid"] for p in dv.rows("products")]
    unit = next(u["uomid"] for u in dv.rows("uoms") if u["name"] == "PCS")
    prices = dv.rows("pricelevels")[0]["pricelevelid"]
    for entity, details, parent, count, state in (
        ("salesorders", "salesorderdetails", "salesorderid", orders, (1, 3)),
        ("quotes", "quotedetails", "quoteid", quotes, (1, 2)),
    ):
        for n in range(count):
            header = {"name": f"{entity} {n}",
                      "customerid_account@odata.bind": f"/accounts({accounts[n % len(accounts)]})",
                      "pricelevelid@odata.bind": f"/pricelevels({prices})"}  # fmt: skip
            row = dv.add(entity, header)
            for line in (1, 2):
                product = products[(n * 7 + line) % len(products)]
                dv.add(details, {f"{parent}@odata.bind": f"/{entity}({row})", "quantity": line,
                                 "priceperunit": 12.5,
                                 "productid@odata.bind": f"/products({product})",
                                 "uomid@odata.bind": f"/uoms({unit})"})  # fmt: skip
            dv.edit(entity, row, {"statecode": state[0], "statuscode": state[1]},
                    by=dv.administrator)  # fmt: skip


@contextmanager
def _sandbox(folder: Path) -> Iterator[tuple[IdentityEmulator, DataverseEmulator, str]]:
    with (
        IdentityEmulator(folder, TENANT, CLIENT_ID, SECRET) as identity,
        DataverseEmulator(folder, identity, CLIENT_ID) as dataverse,
    ):
        bundle = folder / "ca.pem"
        bundle.write_text(Path(identity.ca_file).read_text() + Path(dataverse.ca_file).read_text())
        yield identity, dataverse, str(bundle)


def _phase(
    name: str,
    engine: Engine,
    sql: Statements,
    dv: DataverseEmulator,
    sync: SyncEngine,
    before: dict[str, Callable[[], None]] | None = None,
) -> Phase:
    """Every mapping once; `before` prepares the emulator ahead of a mapping (untimed)."""
    total_requests, total_sql, records = 0, 0, 0
    per_mapping: dict[str, tuple[int, int]] = {}
    elapsed = 0.0
    for mapping in ORDER:
        if before and mapping in before:
            before[mapping]()
        started = time.perf_counter()
        before_requests, before_sql = len(dv.requests), sql.count
        counters = sync.run(mapping)
        elapsed += time.perf_counter() - started
        used = (len(dv.requests) - before_requests, sql.count - before_sql)
        per_mapping[mapping] = used
        total_requests += used[0]
        total_sql += used[1]
        records += counters.inserted + counters.modified + counters.deleted
    return Phase(name, total_requests, total_sql, records, elapsed, per_mapping)


def run_sync(items: int, customers: int, invoices: int, orders: int) -> list[Phase]:
    name, url = _database()
    try:
        engine = make_engine(url)
        upgrade(engine)
        _seed(engine, items, customers, invoices)
        _seed_orders(engine, orders, items, customers)
        with tempfile.TemporaryDirectory() as tmp, _sandbox(Path(tmp)) as (identity, dv, bundle):
            dv.add_user("Jim Olive", "jim@cronus.com")
            box = SecretBox(Fernet.generate_key())
            sessions = make_session_factory(engine)
            with sessions.begin() as session:
                save_connection(
                    session,
                    box,
                    url=dv.url,
                    tenant=TENANT,
                    client_id=CLIENT_ID,
                    client_secret=Secret(SECRET),
                    authority_host=identity.base,
                )
                setup_defaults(session, utcnow(), UTC_TZ)  # type: ignore[arg-type]
                set_switches(session, UTC_TZ, sales_order_integration=True,  # type: ignore[arg-type]
                             auto_create_sales_orders=True, auto_process_quotes=True)  # fmt: skip
            connected = connect(engine, box, bundle)
            sql = Statements(engine)
            sync = SyncEngine(engine, connected.client, connected.integration_user_id, tz=UTC_TZ)  # type: ignore[arg-type]
            selling = {"SALESORDER-ORDER": lambda: _sell_in_sales(dv, orders, orders // 2)}
            full = _phase("full", engine, sql, dv, sync, before=selling)
            changed = max(1, items // 100)
            later = utcnow() + timedelta(seconds=1)
            with engine.begin() as conn:
                item = table(Item)
                conn.execute(
                    update(item)
                    .where(item.c.no.in_([f"I{n:06d}" for n in range(0, items, items // changed)]))
                    .values(description=item.c.description + " (new)", modified_at=later)
                )
            incremental = _phase("incremental", engine, sql, dv, sync)
            idle = _phase("idle", engine, sql, dv, sync)
            connected.client.close()
        engine.dispose()
        return [full, incremental, idle]
    finally:
        _drop(name)


def creates_side_by_side(count: int, rounds: int) -> dict[str, tuple[float, float, int, int]]:
    """Seconds (median of `rounds`) and requests to create `count` rows per table with
    UpsertMultiple and with a `$batch` of single creates."""
    from jobs.dataverse.client import DataverseClient
    from jobs.microsoft.identity import ClientCredentialsTokens

    out = {}
    with tempfile.TemporaryDirectory() as tmp, _sandbox(Path(tmp)) as (identity, dv, bundle):
        tokens = ClientCredentialsTokens(
            TENANT, CLIENT_ID, Secret(SECRET), scope=f"{dv.url}/.default",
            authority_host=identity.base, verify=bundle,
        )  # fmt: skip
        client = DataverseClient(dv.url, tokens, verify=bundle)
        currency = f"/transactioncurrencies({dv.base_currency})"  # a price list needs one
        tables: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
            ("accounts", lambda n: {"name": f"Account {n}"}),
            (
                "pricelevels",
                lambda n: {
                    "name": f"List {uuid.uuid4()}",
                    "transactioncurrencyid@odata.bind": currency,
                },
            ),
        ]
        for entity_set, body in tables:
            timings: dict[str, list[float]] = {"bulk": [], "batch": []}
            requests = {}
            for _ in range(rounds):
                for way in ("bulk", "batch"):
                    records = {str(uuid.uuid4()): body(n) for n in range(count)}
                    before = len(dv.requests)
                    started = time.perf_counter()
                    if way == "bulk":
                        writes.create_all(client, entity_set, records)
                    else:
                        for chunk in writes.chunks(list(records.items())):
                            writes.create_each(client, entity_set, chunk)
                    timings[way].append(time.perf_counter() - started)
                    requests[way] = len(dv.requests) - before
            out[entity_set] = (
                statistics.median(timings["bulk"]),
                statistics.median(timings["batch"]),
                requests["bulk"],
                requests["batch"],
            )
        client.close()
    return out


def _median(phases: list[Phase]) -> Phase:
    """The run of median wall time (its counts with it: they hardly vary)."""
    ordered = sorted(phases, key=lambda p: p.seconds)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING")
    runs = [
        run_sync(args.items, args.customers, args.invoices, args.orders) for _ in range(args.rounds)
    ]
    phases = [_median([run[i] for run in runs]) for i in range(3)]
    full, incremental, idle = phases
    print(f"sales sync, {args.items} items, {args.customers} customers, {args.invoices * 2} "
          f"invoice lines, {args.orders} orders each way, {args.orders // 2} quotes; "
          f"medians of {args.rounds} runs; load average "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    for phase in phases:
        print("  " + phase.line())
    print(
        f"  targets: full {full.requests / max(full.records, 1):.3f} requests/record "
        f"(<= 0.020), {full.seconds:.1f} s (<= 15); incremental "
        f"{incremental.seconds / full.seconds:.1%} of full (< 5%); idle worst mapping "
        f"{max(r for r, _ in idle.per_mapping.values())} requests (<= 2), "
        f"{max(s for _, s in idle.per_mapping.values())} SQL (<= 10)"
    )
    print("  idle per mapping (requests, SQL): " + ", ".join(
        f"{name} {r}/{s}" for name, (r, s) in idle.per_mapping.items()))  # fmt: skip
    for entity_set, (bulk, batch, bulk_requests, batch_requests) in creates_side_by_side(
        2000, args.rounds
    ).items():
        print(
            f"  creating 2,000 {entity_set}: UpsertMultiple {bulk:.2f} s ({bulk_requests} "
            f"requests) vs $batch {batch:.2f} s ({batch_requests}); ratio {batch / bulk:.2f}"
        )


if __name__ == "__main__":
    main()
