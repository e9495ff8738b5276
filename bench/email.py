"""Email benchmark: 5,000 queued messages through two SMTP accounts (a real aiosmtpd
server on loopback, STARTTLS + AUTH, two dispatchers in parallel) on PostgreSQL; then the
default 30 per minute per account on a compressed clock; then in real time with two
dispatch processes, measured by the arrival times at the SMTP server. The limit must
hold in every rolling 60 s and reach at least 95 % of the allowed rate.

    python -m bench.email [--messages 5000] [--limited 900] [--realtime 90]
"""

from __future__ import annotations

import argparse
import multiprocessing
import ssl
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from cryptography.fernet import Fernet
from sqlalchemy import select

from domain.db import make_engine, make_session_factory
from domain.mail.kinds import Connector
from domain.mail.models import SentEmail
from domain.mail.rate import busiest_window
from domain.migrations import upgrade
from jobs.mail import accounts
from jobs.mail.compose import compose
from jobs.mail.connectors import connector_factory
from jobs.mail.dispatch import MailDispatcher
from runtime.logs import configure_logging
from runtime.secrets import Secret, SecretBox
from sandbox.smtp_server import PASSWORD, USER, SmtpServer

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class CompressedClock:
    """Simulated time running FACTOR times faster than real time: a minute passes in a
    second, while every send still takes the real time it takes."""

    FACTOR = 60.0

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.real_start = time.perf_counter()

    def __call__(self) -> datetime:
        elapsed = (time.perf_counter() - self.real_start) * self.FACTOR
        return self.start + timedelta(seconds=elapsed)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / self.FACTOR)

    def restart(self) -> None:
        """Simulated time starts now, at the start of a minute."""
        self.real_start = time.perf_counter()


def _database() -> tuple[str, str]:
    name = f"jobqueue_mailbench_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name, f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _seed(
    url: str, key: bytes, messages: int, limit: int, smtp: SmtpServer, start: datetime
) -> None:
    """Two SMTP accounts with `limit` each, and `messages` queued between them."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_session_factory(engine)
        secrets = SecretBox(key)
        with sessions.begin() as session:
            for account, scenario in (("Sales", "Sales Invoice"), ("Purchase", "Purchase Order")):
                accounts.add_account(
                    session,
                    account,
                    f"{account.lower()}@cronus.com",
                    Connector.SMTP,
                    rate_limit=limit,
                    secrets=secrets,
                    smtp=accounts.SmtpOptions(
                        server="127.0.0.1",
                        port=smtp.port,
                        user_name=USER,
                        password=Secret(PASSWORD),
                    ),
                )
                accounts.assign_scenario(session, scenario, account)
        with sessions.begin() as session:
            for i in range(messages):
                compose(
                    session,
                    created_by="bench",
                    to=f"customer{i}@fabrikam.com",
                    scenario="Sales Invoice" if i % 2 else "Purchase Order",
                    subject=f"Document {i}",
                    body="Please find the document attached.",
                    now=start,
                )
    finally:
        engine.dispose()


def _run(
    messages: int, limit: int, smtp: SmtpServer, clock: CompressedClock | None
) -> dict[str, float]:
    name, url = _database()
    key = Fernet.generate_key()
    engine = make_engine(url)
    try:
        start = clock.start if clock else datetime.now(UTC)
        _seed(url, key, messages, limit, smtp, start)
        sessions = make_session_factory(engine)
        factory = connector_factory(engine, SecretBox(key), ssl_context=smtp.client_tls)
        now_fn = clock if clock else (lambda: datetime.now(UTC))
        sleep_fn = clock.sleep if clock else time.sleep
        workers = [MailDispatcher(engine, factory, clock=now_fn, sleep=sleep_fn) for _ in range(2)]
        if clock:
            clock.restart()
        began = time.perf_counter()
        threads = [threading.Thread(target=w.run, kwargs={"max_seconds": 10**6}) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        with sessions() as session:
            sent = session.execute(select(SentEmail.account_name, SentEmail.sent_at)).all()
        by_account: dict[str, list[datetime]] = {}
        for account_name, sent_at in sent:
            by_account.setdefault(account_name, []).append(sent_at)
        result = {
            "sent": float(len(sent)),
            "per_s": len(sent) / elapsed,
            "max_per_minute": float(max(busiest_window(m) for m in by_account.values())),
        }
        if clock:
            result["fraction"] = _fraction(by_account, limit)
            result["sim_minutes"] = max(
                (max(m) - min(m)).total_seconds() / 60 for m in by_account.values()
            )
        return result
    finally:
        engine.dispose()
        _drop(name)


def _fraction(moments: dict[str, list[datetime]], limit: int) -> float:
    """The least of the accounts' share of what a rolling limit allows between their
    first and last send: `limit` in the first window and `limit` more per 60 s after."""
    return min(
        len(m) / (limit * (1 + (max(m) - min(m)).total_seconds() / 60)) for m in moments.values()
    )


def _dispatch_process(url: str, key: bytes, ca_file: str) -> None:
    """One dispatch process, as a worker runs the email-dispatch entry, until the outbox
    is empty."""
    configure_logging("WARNING", process="bench")
    engine = make_engine(url)
    tls = ssl.create_default_context(cafile=ca_file)
    factory = connector_factory(engine, SecretBox(key), ssl_context=tls)
    MailDispatcher(engine, factory).run(max_seconds=900)
    engine.dispose()


def realtime(messages: int, limit: int, smtp: SmtpServer) -> dict[str, float]:
    """Two dispatch processes in real time; counted at the SMTP server as it received."""
    name, url = _database()
    key = Fernet.generate_key()
    try:
        _seed(url, key, messages, limit, smtp, datetime.now(UTC))
        smtp.handler.accepted.clear()
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_dispatch_process, args=(url, key, smtp.ca_file))
            for _ in range(2)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:
        _drop(name)
    by_sender: dict[str, list[datetime]] = {}
    for received in smtp.handler.accepted:
        by_sender.setdefault(received.mail_from, []).append(
            datetime.fromtimestamp(received.at, UTC)
        )
    busiest = max(busiest_window(m) for m in by_sender.values())
    return {
        "received": float(sum(len(m) for m in by_sender.values())),
        "busiest": float(busiest),
        "fraction": _fraction(by_sender, limit),
        "span_s": max((max(m) - min(m)).total_seconds() for m in by_sender.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--limited", type=int, default=900, help="messages for the 30/min run")
    parser.add_argument(
        "--realtime", type=int, default=180, help="messages for the real-time 30/min run"
    )
    args = parser.parse_args()
    configure_logging("WARNING", process="bench")
    with tempfile.TemporaryDirectory() as folder, SmtpServer(Path(folder)) as smtp:
        fast = _run(args.messages, 0, smtp, None)
        accepted_fast = len(smtp.handler.accepted)
        clock = CompressedClock(datetime.now(UTC).replace(second=0, microsecond=0))
        limited = _run(args.limited, 30, smtp, clock)
        real = realtime(args.realtime, 30, smtp)
    rows = [
        ("no limit: messages sent", f"{fast['sent']:.0f}", f"server accepted {accepted_fast}"),
        ("no limit: messages per second", f"{fast['per_s']:.1f}", ""),
        (
            "30/min each: messages sent",
            f"{limited['sent']:.0f}",
            f"over {limited['sim_minutes']:.1f} simulated minutes (first to last send)",
        ),
        ("30/min each: fraction of allowed rate", f"{limited['fraction']:.3f}", "target >= 0.95"),
        (
            "30/min each: busiest rolling 60 s",
            f"{limited['max_per_minute']:.0f}",
            "never > 30 (simulated send times)",
        ),
        (
            "real time, 2 processes: received",
            f"{real['received']:.0f}",
            f"over {real['span_s']:.0f} s at the SMTP server",
        ),
        (
            "real time: busiest rolling 60 s",
            f"{real['busiest']:.0f}",
            "never > 30 (server arrival times)",
        ),
        ("real time: fraction of allowed rate", f"{real['fraction']:.3f}", "target >= 0.95"),
    ]
    print("email: 2 SMTP accounts (STARTTLS + AUTH, aiosmtpd), 2 dispatchers, PostgreSQL")
    for label, value, note in rows:
        print(f"{label:<40}{value:>10}  {note}")


if __name__ == "__main__":
    main()
