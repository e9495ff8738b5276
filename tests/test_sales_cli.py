"""`jobqueue sales`: setup writes the connection (secret encrypted), the mappings and the
entries; bad input exits 2 and changes nothing; the listings show what the sync did."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from domain.queue.models import JobQueueEntry
from domain.sales.defaults import DEFAULTS
from domain.sales.integration import DataverseConnection, IntegrationTableMapping
from runtime.settings import Settings
from tests.helpers import cli_runner
from tests.sales_fixtures import CLIENT_ID, SECRET, TENANT, Sandbox, seed, sync


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("DV_SECRET", SECRET)

    return cli_runner(capsys)


def setup_args(url: str, authority: str) -> list[str]:
    return [
        "sales",
        "setup",
        "--url",
        url,
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT_ID,
        "--client-secret-env",
        "DV_SECRET",
        "--authority-host",
        authority,
    ]


def test_setup_creates_the_connection_mappings_and_entries(
    cli, sessions, sandbox: Sandbox, settings: Settings, engine, monkeypatch
) -> None:
    code, _, err = cli(*setup_args(sandbox.dataverse.url, sandbox.identity.base))
    assert code == 0, err
    with sessions() as session:
        connection = session.get(DataverseConnection, 1)
        assert connection is not None and SECRET not in connection.client_secret_encrypted
        assert session.execute(
            select(func.count()).select_from(IntegrationTableMapping)
        ).scalar() == len(DEFAULTS)
        entries = {e.code: e for e in session.execute(select(JobQueueEntry)).scalars()}
    assert entries["ITEM-PRODUCT"].inactivity_timeout_minutes == 1440
    assert entries["UNITOFMEASURE"].inactivity_timeout_minutes == 720
    assert entries["ITEM-PRODUCT"].minutes_between_runs == 30
    assert {e.category_code for e in entries.values()} == {"SALES-SYNC"}
    priorities = [entries[m.entry_code].priority for m in DEFAULTS]
    assert priorities == sorted(priorities, reverse=True)  # dependency order
    # The CLI's secret key encrypted the secret: the sync can use it with the same key.
    from runtime.secrets import SecretBox

    sandbox.box = SecretBox.from_env()
    seed(sessions, settings.tz)
    sync(engine, sandbox, settings.tz)
    code, out, _ = cli("sales", "runs", "--limit", "20")
    assert code == 0 and "POSTEDSALESINV-INV" in out
    code, out, _ = cli("sales", "couplings", "--table", "items")
    assert code == 0 and "products" in out and "productpricelevels" in out
    from sqlalchemy import update

    from domain.clock import utcnow
    from domain.sales.models import Item

    with sessions.begin() as session:  # a record that fails, named by its business key
        session.execute(
            update(Item).where(Item.no == "1000").values(description="", modified_at=utcnow())
        )
    sync(engine, sandbox, settings.tz, "ITEM-PRODUCT")
    code, out, _ = cli("sales", "errors")
    [line] = [x for x in out.splitlines() if "must not be blank" in x and x[:1].isdigit()]
    assert "ITEM-PRODUCT" in line and " 1000 " in f" {line} "
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)  # when, in JOBQUEUE_TIMEZONE


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://cronus.crm.dynamics.com"], "https address"),
        (["--url", "https://cronus.crm.dynamics.com/api/data"], "https address"),
        (["--client-secret-env", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE is empty"),
        (["--tenant", " "], "tenant"),
    ],
)
def test_bad_setup_input_exits_2_and_changes_nothing(cli, sessions, argv, message) -> None:
    base = setup_args("https://cronus.crm.dynamics.com", "https://login.microsoftonline.com")
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[base.index(flag) + 1] = value
    code, _, err = cli(*base)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert SECRET not in err
    with sessions() as session:
        assert session.get(DataverseConnection, 1) is None
        assert session.execute(select(func.count()).select_from(JobQueueEntry)).scalar() == 0


def test_resolving_a_conflict_that_is_not_there_exits_2(cli, sandbox: Sandbox) -> None:
    code, _, err = cli(*setup_args(sandbox.dataverse.url, sandbox.identity.base))
    assert code == 0, err
    code, _, err = cli("sales", "resolve", "ITEM-PRODUCT", "9999", "--keep", "local")
    assert code == 2 and "no recorded conflict" in err
    code, _, err = cli("sales", "resolve", "NO-SUCH-MAPPING", "1", "--keep", "local")
    assert code == 2 and "no integration table mapping named 'NO-SUCH-MAPPING'" in err
