"""Email logging benchmark: 20,000 messages in the emulated shared mailbox's Inbox
(Microsoft Graph over HTTPS on loopback), 2,000 contacts, 50 salespeople, PostgreSQL.
Runs the logger with moves in JSON $batch requests of 20, again with 1 % of Graph
requests throttled (429 with Retry-After, inside batches too; the waits are skipped),
and with one request per move, and prints messages per second and Graph requests per
message side by side (target: at most 0.1 requests per message with throttling on,
moves included, and no failed move).

    python -m bench.email_logging [--messages 20000] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.email import _database, _drop
from domain.clock import utcnow
from domain.db import make_engine
from domain.interactions.models import Contact, InteractionLogEntry
from domain.migrations import upgrade
from domain.sales.models import Salesperson
from jobs.email_logging.graph import GraphSharedMailbox
from jobs.email_logging.logger import EmailLogger
from jobs.microsoft.identity import ClientCredentialsTokens
from runtime.logs import configure_logging
from runtime.secrets import Secret
from sandbox.graph import GraphEmulator
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = "bench.onmicrosoft.com", "00000000-0000-4000-8000-00000000be01", "b"
MAILBOX = "emaillogging@cronus.example"


def _fill(graph: GraphEmulator, messages: int, contacts: int, people: int) -> None:
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(messages):
        person = f"sp{rng.randrange(people)}@cronus.example"
        c = rng.randrange(contacts)
        contact = f"contact{c}@customer{c % 50}.example"
        if n % 10 == 9:  # some mail matches nobody
            sender, to = "news@vendor.example", [person]
        elif n % 2:
            sender, to = person, [contact]
        else:
            sender, to = contact, [person]
        graph.deliver(MAILBOX, sender=sender, to=to, subject=f"message {n}",
                      received=start + timedelta(seconds=n))  # fmt: skip


def _run(
    url: str, graph: GraphEmulator, ca_file: str, moves_per_batch: int, batch: int
) -> dict[str, float]:
    waits: list[float] = []
    engine = make_engine(url)
    tokens = ClientCredentialsTokens(
        TENANT, CLIENT_ID, Secret(SECRET), authority_host=graph.identity.base, verify=ca_file
    )
    box = GraphSharedMailbox(
        MAILBOX,
        tokens,
        graph_url=graph.graph_url,
        verify=ca_file,
        moves_per_batch=moves_per_batch,
        sleep=waits.append,  # a throttled request is counted, its wait not spent
    )
    started = time.perf_counter()
    counters = EmailLogger(engine, box, batch_size=batch).run()
    elapsed = time.perf_counter() - started
    box.close()
    with engine.connect() as conn:
        logged = conn.execute(select(func.count()).select_from(InteractionLogEntry)).scalar_one()
    engine.dispose()
    return {
        "read": counters.read,
        "moved": counters.moved,
        "move_failed": counters.move_failed,
        "waits": len(waits),
        "logged": logged,
        "per_s": counters.read / elapsed,
        "requests_per_message": box.requests / max(counters.read, 1),
    }


def _database_with_directory(contacts: int, people: int) -> tuple[str, str]:
    name, url = _database()
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        now = utcnow()
        conn.execute(
            Salesperson.__table__.insert(),  # type: ignore[arg-type]
            [{"code": f"SP{i}", "name": f"SP{i}", "email": f"SP{i}@cronus.example",
              "modified_at": now, "modified_by": "bench"} for i in range(people)],
        )  # fmt: skip
        conn.execute(
            Contact.__table__.insert(),  # type: ignore[arg-type]
            [{"no": f"CT{i}", "name": f"Contact {i}", "company_name": f"Customer {i % 50}",
              "email": f"contact{i}@customer{j}.example"}
             for i in range(contacts) for j in [i % 50]],
        )  # fmt: skip
    engine.dispose()
    return name, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--salespeople", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    configure_logging("WARNING", process="bench")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        modes = (
            ("$batch of 20 moves", 20, 0.0),
            ("$batch, 1 % throttled", 20, 0.01),
            ("one request per move", 1, 0.0),
        )
        for label, moves, throttled in modes:
            with (
                IdentityEmulator(Path(folder), TENANT, CLIENT_ID, SECRET) as identity,
                GraphEmulator(Path(folder), identity) as graph,
            ):
                graph.add_mailbox(MAILBOX)
                graph.throttle(throttled)
                _fill(graph, args.messages, args.contacts, args.salespeople)
                name, url = _database_with_directory(args.contacts, args.salespeople)
                try:
                    results[label] = _run(url, graph, graph.ca_file, moves, args.batch_size)
                finally:
                    _drop(name)
    print(
        f"email logging: {args.messages} messages, {args.contacts} contacts, "
        f"{args.salespeople} salespeople, Graph emulator (HTTPS, loopback), PostgreSQL, "
        f"{args.batch_size} per page"
    )
    labels = list(results)
    print(f"{'':<32}" + "".join(f"{label:>24}" for label in labels))
    for key, title in (
        ("read", "messages read"),
        ("moved", "messages moved to archive"),
        ("move_failed", "moves failed"),
        ("waits", "throttled waits"),
        ("logged", "interaction log entries"),
        ("per_s", "messages per second"),
        ("requests_per_message", "Graph requests per message"),
    ):
        print(f"{title:<32}" + "".join(f"{results[label][key]:>24.3f}" for label in labels))
    first, throttled, second = labels
    print(
        f"{'ratio ($batch / one per move)':<32}"
        f"{results[first]['per_s'] / results[second]['per_s']:>24.2f}x faster, "
        f"{results[first]['requests_per_message'] / results[second]['requests_per_message']:.3f}"
        " of the requests"
    )
    print(
        f"{'throttled 1 %':<32}{results[throttled]['requests_per_message']:>24.3f} requests "
        f"per message (target <= 0.1), {results[throttled]['move_failed']:.0f} moves failed"
    )


if __name__ == "__main__":
    main()
