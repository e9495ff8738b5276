"""`jobqueue demo` in this process: its checks, bad options, a stop signal mid-run and
--keep-running; the README's main command itself runs in test_first_run."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from admin.demo import DemoOptions, run_demo
from admin.demo_report import SYNC_ORDER, EntrySummary, Summary, _problems
from admin.demo_setup import Expected
from runtime.settings import Settings
from tests.helpers import cli_runner

EXPECTED = Expected(customers=2, emails=4, smtp_emails=2, interactions=4, messages=6, rate_limit=20)


def _summary(**changes: object) -> Summary:
    good = Summary(
        entries=[
            EntrySummary("EMAIL-OUTBOX", "email-dispatch", "Ready", 2, 0, 0, 4, 0, False, 60, "")
        ],
        sync_order=list(SYNC_ORDER),
        emails_queued=4,
        emails_sent=4,
        smtp_received=2,
        graph_sent=2,
        rate_limit=20,
        busiest_minute=2,
        messages=6,
        inbox_left=0,
        archived=6,
        interactions=4,
        interactions_expected=4,
        dataverse={},
        orders_from_sales=["SO000001"],
        quotes_from_sales=["SQ000001"],
    )
    return replace(good, **changes)  # type: ignore[arg-type]


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", Fernet.generate_key().decode())


def test_the_summary_checks_catch_what_went_wrong() -> None:
    assert _problems(_summary(), EXPECTED) == []
    assert _problems(_summary(busiest_minute=21), EXPECTED) == [
        "21 emails in one minute over the limit"
    ]
    assert _problems(_summary(sync_order=list(reversed(SYNC_ORDER))), EXPECTED)
    assert _problems(_summary(emails_sent=3), EXPECTED) == ["3 of 4 emails sent"]
    assert _problems(_summary(smtp_received=1), EXPECTED) == ["the SMTP server received 1 emails"]
    assert _problems(_summary(interactions=3, inbox_left=1), EXPECTED) == [
        "3 of 4 interactions logged",
        "1 messages left in the shared mailbox's Inbox",
    ]
    assert _problems(_summary(orders_from_sales=[]), EXPECTED) == [
        "0 of 1 orders made in Sales arrived"
    ]
    failed = EntrySummary("X", "noop", "Error", 3, 3, 0, 0, 0, False, 0, "")
    assert _problems(_summary(entries=[failed]), EXPECTED) == ["X is in Error"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--customers", "0"], "customers must be at least 1"),
        (["--customers", "501"], "--customers must be 1 to 500"),
        (["--rate-limit", "-1"], "rate limit must be at least 0"),
        (["--timeout", "abc"], "timeout must be a whole number"),
    ],
)
def test_bad_demo_options_exit_2_before_anything_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = cli_runner(capsys)("demo", *args)
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []  # no database, no key file


def test_the_demo_on_one_customer_passes_its_checks_and_writes_json(
    tmp_path: Path, secret_key: None
) -> None:
    out = io.StringIO()
    options = DemoOptions(
        database=tmp_path / "demo.db", customers=1, summary_json=tmp_path / "summary.json"
    )
    assert run_demo(Settings(), options, out=out) == 0, out.getvalue()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["sync_order"] == SYNC_ORDER
    assert summary["emails_sent"] == 2 and summary["smtp_received"] == 1
    assert summary["graph_sent"] == 1 and summary["interactions"] == 2
    assert summary["dataverse"]["invoices"] == 1 and summary["dataverse"]["accounts"] == 1
    sleeping = {e["code"] for e in summary["entries"] if e["sleeping"]}
    assert {"EMAIL-OUTBOX", "EMAIL-LOGGING", "ITEM-PRODUCT"} <= sleeping
    assert "CUSTOMER-STATISTICS" not in sleeping  # its inactivity timeout is 0: never sleeps
    text = out.getvalue()
    assert "POSTEDSALESINV-INV   started" in text and "Every check passed." in text
    assert "sleeping (inactivity timeout 60 min)" in text


def test_a_stop_signal_ends_the_demo_at_once_and_keep_running_waits_for_it(
    tmp_path: Path, secret_key: None
) -> None:
    stop = threading.Event()
    out = io.StringIO()
    options = DemoOptions(database=tmp_path / "demo.db", customers=1, keep_running=True)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(run_demo(Settings(), options, stop, out)))
    runner.start()
    deadline = time.monotonic() + 60
    while "Still running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Still running" in out.getvalue()
    assert runner.is_alive()  # it keeps running until told to stop
    stop.set()
    runner.join(timeout=30)
    assert codes == [0]

    stopped = threading.Event()
    stopped.set()  # a signal before the first pass finished
    out = io.StringIO()
    began = time.monotonic()
    assert run_demo(Settings(), replace(options, keep_running=False), stopped, out) == 1
    assert time.monotonic() - began < 30
    assert "The demo was interrupted." in out.getvalue()
