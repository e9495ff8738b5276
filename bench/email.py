"""Email benchmark: 5,000 queued messages through two SMTP accounts (a real aiosmtpd
server on loopback, STARTTLS + AUTH, two dispatchers in parallel) on PostgreSQL; then the
default 30 per minute per account on a compressed clock, which must reach at least 95%
of the allowed rate and never exceed it in any minute.

    python -m bench.email [--messages 5000] [--limited 900]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from cryptography.fernet import Fernet
from sqlalchemy import select

from domain.db import make_engine, make_session_factory
from domain.mail.kinds import Connector
from domain.mail.models import SentEmail
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


def _run(
    messages: int, limit: int, smtp: SmtpServer, clock: CompressedClock | None
) -> dict[str, float]:
    name, url = _database()
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_session_factory(engine)
        secrets = SecretBox(Fernet.generate_key())
        start = clock.start if clock else datetime.now(UTC)
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
        factory = connector_factory(engine, secrets, ssl_context=smtp.client_tls)
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
        per_minute = Counter((a, s.replace(second=0, microsecond=0)) for a, s in sent)
        result = {
            "sent": float(len(sent)),
            "per_s": len(sent) / elapsed,
            "max_per_minute": float(max(per_minute.values())),
        }
        if clock:  # the allowed rate over the minutes from the first send to the last one's end
            last = max(s for _, s in sent).replace(second=0, microsecond=0) + timedelta(minutes=1)
            minutes = (last - start).total_seconds() / 60
            result["fraction"] = len(sent) / (2 * limit * minutes)
            result["sim_minutes"] = minutes
        return result
    finally:
        engine.dispose()
        _drop(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--limited", type=int, default=900, help="messages for the 30/min run")
    args = parser.parse_args()
    configure_logging("WARNING", process="bench")
    with tempfile.TemporaryDirectory() as folder, SmtpServer(Path(folder)) as smtp:
        fast = _run(args.messages, 0, smtp, None)
        accepted_fast = len(smtp.handler.accepted)
        clock = CompressedClock(datetime.now(UTC).replace(second=0, microsecond=0))
        limited = _run(args.limited, 30, smtp, clock)
    rows = [
        ("no limit: messages sent", f"{fast['sent']:.0f}", f"server accepted {accepted_fast}"),
        ("no limit: messages per second", f"{fast['per_s']:.1f}", ""),
        (
            "30/min each: messages sent",
            f"{limited['sent']:.0f}",
            f"over {limited['sim_minutes']:.1f} simulated minutes",
        ),
        ("30/min each: fraction of allowed rate", f"{limited['fraction']:.3f}", "target >= 0.95"),
        ("30/min each: busiest account-minute", f"{limited['max_per_minute']:.0f}", "never > 30"),
    ]
    print("email: 2 SMTP accounts (STARTTLS + AUTH, aiosmtpd), 2 dispatchers, PostgreSQL")
    for label, value, note in rows:
        print(f"{label:<40}{value:>10}  {note}")


if __name__ == "__main__":
    main()
