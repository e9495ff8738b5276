"""Dynamics 365 Sales sync benchmark: 5,000 items, 500 customers with a contact each, two
currencies and 2,000 posted invoice lines (1,000 invoices, half in a foreign currency) on
PostgreSQL, against the Dataverse emulator over HTTPS on
loopback. Prints, for the full first sync, an incremental sync after changing 1 % of the
items, and an idle run: HTTP requests, requests per record, SQL statements per record,
wall time and records per second; then creates measured side by side per table,
UpsertMultiple against one `$batch` of single creates.

Targets: full sync <= 1 request per 50 records and <= 15 s; incremental < 5 % of the full
run's time; idle <= 2 requests and <= 10 SQL statements per mapping.

    python -m bench.sync [--items 5000] [--customers 500] [--invoices 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
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
    Item,
    Resource,
    SalesInvoiceHeader,
    SalesInvoiceLine,
    Salesperson,
    UnitOfMeasure,
    table,
)
from jobs.sales import writes
from jobs.sales.connection import SWITCHED_ENTRIES, connect, save_connection
from jobs.sales.engine import SyncEngine
from jobs.sales.setup import setup_defaults
from runtime.logs import configure_logging
from runtime.secrets import Secret, SecretBox
from sandbox.dataverse import DataverseEmulator
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = "bench.onmicrosoft.com", "00000000-0000-4000-8000-00000000be02", "s"
# The mappings whose entries run: as in the job queue, those of sales order integration
# are on hold while it is switched off (the default; the bench does not switch it on).
ORDER = [m.name for m in DEFAULTS if m.entry_code not in SWITCHED_ENTRIES]
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
    name: str, engine: Engine, sql: Statements, dv: DataverseEmulator, sync: SyncEngine
) -> Phase:
    total_requests, total_sql, records = 0, 0, 0
    per_mapping: dict[str, tuple[int, int]] = {}
    started = time.perf_counter()
    for mapping in ORDER:
        before_requests, before_sql = len(dv.requests), sql.count
        counters = sync.run(mapping)
        used = (len(dv.requests) - before_requests, sql.count - before_sql)
        per_mapping[mapping] = used
        total_requests += used[0]
        total_sql += used[1]
        records += counters.inserted + counters.modified + counters.deleted
    elapsed = time.perf_counter() - started
    return Phase(name, total_requests, total_sql, records, elapsed, per_mapping)


def run_sync(items: int, customers: int, invoices: int) -> list[Phase]:
    name, url = _database()
    try:
        engine = make_engine(url)
        upgrade(engine)
        _seed(engine, items, customers, invoices)
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
            connected = connect(engine, box, bundle)
            sql = Statements(engine)
            sync = SyncEngine(engine, connected.client, connected.integration_user_id, tz=UTC_TZ)  # type: ignore[arg-type]
            full = _phase("full", engine, sql, dv, sync)
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
        for entity_set, body in (
            ("accounts", lambda n: {"name": f"Account {n}"}),
            (
                "pricelevels",
                lambda n: {
                    "name": f"List {uuid.uuid4()}",
                    "transactioncurrencyid@odata.bind": currency,
                },
            ),
        ):
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING")
    runs = [run_sync(args.items, args.customers, args.invoices) for _ in range(args.rounds)]
    phases = [_median([run[i] for run in runs]) for i in range(3)]
    full, incremental, idle = phases
    print(f"sales sync, {args.items} items, {args.customers} customers, {args.invoices * 2} "
          f"invoice lines; medians of {args.rounds} runs; load average "
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
