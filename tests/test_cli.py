"""The admin command line: edits, listings, and bad input that exits 2 and changes nothing."""

from __future__ import annotations

import pytest

from admin.cli import main
from domain.db import make_engine, make_session_factory
from runtime.settings import Settings
from tests.helpers import cli_runner, entry


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JOBQUEUE_TIMEZONE", "Europe/Amsterdam")

    return cli_runner(capsys)


@pytest.fixture
def sessions(settings: Settings):
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def snapshot(sessions, code: str) -> dict[str, object]:
    e = entry(sessions, code)
    return {c.key: getattr(e, c.key) for c in e.__table__.columns}


def test_add_set_show_list_and_log(cli, sessions) -> None:
    assert cli("categories", "add", "SYNC")[0] == 0
    code, out, _ = cli(
        "entries",
        "add",
        "ITEM-PRODUCT",
        "--job",
        "idle",
        "--recurring",
        "--minutes-between-runs",
        "30",
        "--inactivity-timeout",
        "1440",
        "--category",
        "SYNC",
        "--parameter",
        "watch=item",
        "--description",
        "Dynamics 365 Sales synchronization job",
    )
    assert code == 0 and "added ITEM-PRODUCT" in out
    code, out, _ = cli(
        "entries",
        "set",
        "ITEM-PRODUCT",
        "--minutes-between-runs",
        "15",
        "--window",
        "08:00-18:00",
        "--weekdays",
        "mon-fri",
    )
    assert code == 0
    e = entry(sessions, "ITEM-PRODUCT")
    assert e.minutes_between_runs == 15 and not e.run_on_saturdays and e.run_on_fridays
    code, out, _ = cli("entries", "show", "ITEM-PRODUCT")
    assert "08:00-18:00" in out and "mon,tue,wed,thu,fri" in out and "Europe/Amsterdam" in out
    code, out, _ = cli("entries", "list")
    assert code == 0 and "ITEM-PRODUCT" in out and "Ready" in out
    assert cli("hold", "ITEM-PRODUCT")[0] == 0
    assert entry(sessions, "ITEM-PRODUCT").status.value == "On Hold"
    assert cli("entries", "ready", "ITEM-PRODUCT")[0] == 0
    assert entry(sessions, "ITEM-PRODUCT").status.value == "Ready"
    assert cli("run-now", "ITEM-PRODUCT")[0] == 0
    code, out, _ = cli("log", "ITEM-PRODUCT")
    assert code == 0 and "status" in out
    assert cli("entries", "delete", "ITEM-PRODUCT")[0] == 0
    assert cli("entries", "show", "ITEM-PRODUCT")[0] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["entries", "set", "NOPE", "--priority", "1"], "no job queue entry with code 'NOPE'"),
        (
            ["entries", "set", "E1", "--minutes-between-runs", "-5"],
            "under the minimum of 0 minutes",
        ),
        (["entries", "set", "E1", "--window", "18:00-08:00"], "+1"),
        (["entries", "set", "E1", "--weekdays", "mon-funday"], "unknown weekday"),
        (["entries", "set", "E1", "--weekdays", "none"], "at least one weekday"),
        (["entries", "set", "E1", "--job", "nosuchjob"], "unknown job 'nosuchjob'"),
        (["entries", "set", "E1", "--parameter", "colour=blue"], "unknown parameter 'colour'"),
        (["entries", "set", "E1", "--expiration", "next tuesday"], "not a date-time"),
        (["entries", "set", "E1", "--category", "NOCAT"], "no job queue category"),
        (["entries", "set", "E1"], "nothing to change"),
        (["entries", "set", "E1", "--expiration", "2020-01-01T00:00"], "no moment to run"),
        (["entries", "add", "E1", "--job", "noop"], "exists already"),
        (["entries", "list", "--status", "Sleeping"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, sessions, argv, message) -> None:
    assert (
        cli(
            "entries",
            "add",
            "E1",
            "--job",
            "sleep",
            "--recurring",
            "--minutes-between-runs",
            "10",
            "--parameter",
            "seconds=1",
        )[0]
        == 0
    )
    before = snapshot(sessions, "E1")
    code, _out, err = cli(*argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(sessions, "E1") == before


def test_jobs_lists_the_registered_jobs(cli) -> None:
    code, out, _ = cli("jobs")
    assert code == 0 and "noop" in out and "idle" in out


def test_a_bad_time_zone_setting_is_refused(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQUEUE_TIMEZONE", "Mars/Olympus")
    code, _, err = cli("entries", "list")
    assert code == 2 and "Mars/Olympus" in err


def test_an_unmigrated_database_gets_a_clear_error(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SystemExit) as exited:
        main(["entries", "list"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no such table" in err and "jobqueue migrate" in err
    main(["migrate"])
    main(["entries", "list"])
    assert "code" in capsys.readouterr().out
